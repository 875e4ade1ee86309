"""Evaluation of translation models: FID, KID and IS against a real set, and PSNR, SSIM and
LPIPS against paired targets (``img2img eval``, and validation during training).

Needs the optional extra: ``pip install "img2img[eval]"`` (torch-fidelity, torchmetrics,
scikit-image). Importing this package does not import them; using a metric does.
"""

from __future__ import annotations

from img2img.eval.run import EvalSettings, Evaluator, Hooks, folder_comparison

__all__ = ["EvalSettings", "Evaluator", "Hooks", "folder_comparison"]
