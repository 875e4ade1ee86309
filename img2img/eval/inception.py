"""Inception features for FID, KID and IS: torch-fidelity's FID Inception with weights we load.

The network is torch-fidelity's ``FeatureExtractorInceptionV3`` (the TF-ported Inception of the
TTUR FID code, the one pytorch-fid uses too). torch-fidelity's constructor unpickles its weights
file (``torch.load(weights_only=False)``); here the file is read weights-only by
:mod:`img2img.eval.pretrained` and the tensors are handed to the constructor in place of its
download, so nothing in a weights file can run code.

Images are resized to 299x299 in one of two ways (``resize``):

- ``"tf1"`` (default): torch-fidelity's bilinear resize that reproduces TensorFlow 1.x's
  ``tf.image.resize_bilinear`` (what the original FID code did, inside the network, on uint8
  images) -- scores agree with torch-fidelity and pytorch-fid;
- ``"clean"``: clean-fid's resize: PIL bicubic on each channel in float, clipped to [0, 255],
  before any quantisation (Parmar et al., "On Aliased Resizing and Surprising Subtleties in GAN
  Evaluation", CVPR 2022) -- scores agree with clean-fid's "clean" mode.

Then ``(x - 128) / 128`` and the network, always in float32 whatever the precision of the
generator being evaluated, so that scores never depend on it.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image

from img2img.errors import UsageError, WeightsError
from img2img.eval._deps import require

RESIZE_MODES = ("tf1", "clean")
SIZE = 299
POOL_DIM = 2048  # the pool3 features FID and KID use
LOGITS_DIM = 1008  # the 2015 Inception's classes (1000 + 8 unused); IS uses them without bias

_LAYERS = (
    "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "MaxPool_1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
    "MaxPool_2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
    "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "AvgPool",
)  # fmt: skip
_HANDOVER = threading.Lock()


class FIDInception:
    """The FID Inception on a device, turning images into (pool3, unbiased logits) features.

    ``tensors``: the state dict in the standard file's layout (``Conv2d_1a_3x3.conv.weight`` ...
    ``fc.bias``). Raises WeightsError naming ``path`` when they do not fit."""

    def __init__(self, tensors: dict, *, path: Path | str, device: torch.device, resize: str = "tf1"):
        if resize not in RESIZE_MODES:
            raise UsageError(f"unknown resize {resize!r}; valid: {', '.join(RESIZE_MODES)}")
        module = require("torch_fidelity.feature_extractor_inceptionv3")
        try:
            with _HANDOVER, _patched(module, "load_state_dict_from_url", lambda *args, **kwargs: tensors):
                net = module.FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"])
        except RuntimeError as exc:  # load_state_dict: missing, unexpected or misshapen keys
            from img2img.runtime.devices import is_out_of_memory

            if is_out_of_memory(exc):
                raise  # not the weights' fault: the evaluator says so, with what to lower
            lines = str(exc).strip().splitlines()
            detail = " ".join(line.strip() for line in lines[1:3])[:300]
            raise WeightsError(f"{path}: not the FID Inception's layout ({detail})") from None
        # Channels-last runs oneDNN's and cuDNN's convolutions without layout conversions
        # (about 20% faster on a CPU, see benchmarks/bench_eval.py).
        self._memory_format = torch.channels_last if device.type in ("cpu", "cuda") else torch.contiguous_format
        self.net = net.to(device=device, dtype=torch.float32, memory_format=self._memory_format).eval()
        self.device = device
        self.resize = resize
        if resize == "tf1":
            self._tf1 = require(
                "torch_fidelity.interpolate_compat_tensorflow"
            ).interpolate_bilinear_2d_like_tensorflow1x

    def prepare(self, image: Image.Image) -> torch.Tensor:
        """A PIL image (any mode) -> what :meth:`features` takes: uint8 (3, H, W) for "tf1",
        float32 (3, 299, 299) in [0, 255] for "clean" (the CPU part of the resize, done where the
        images are decoded).

        The 8-bit RGB pixels come from the project's decoder (:func:`img2img.files.imageio.to_8bit`),
        so a 16-bit or float copy of an image gives the same features as its 8-bit copy (Pillow's
        own ``convert("RGB")`` clips 16-bit data to white and float data to black). Raises
        ImageError (without the file's name: the caller has it) for a mode that cannot be
        converted or NaN pixels."""
        from img2img.files.imageio import to_8bit

        rgb = np.array(to_8bit(image, 3))  # a writable copy
        if self.resize == "clean":
            return torch.from_numpy(clean_resize(rgb)).permute(2, 0, 1).contiguous()
        return torch.from_numpy(rgb).permute(2, 0, 1)

    @torch.inference_mode()
    def features(self, images: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Prepared images (any sizes) -> (N, 2048) pool3 features and (N, 1008) logits without
        the classifier's bias (torch-fidelity's ``logits_unbiased``, what its IS uses); float32
        on the CPU."""
        resized = []
        for image in images:
            x = image.to(self.device, non_blocking=True).unsqueeze(0).to(torch.float32)
            if self.resize == "tf1":
                x = self._tf1(x, size=(SIZE, SIZE), align_corners=False)
            resized.append(x)
        x = ((torch.cat(resized) - 128) / 128).contiguous(memory_format=self._memory_format)
        for name in _LAYERS:
            x = getattr(self.net, name)(x)
        pool = torch.flatten(x, 1)
        logits = pool.mm(self.net.fc.weight.T)
        return pool.float().cpu(), logits.float().cpu()


def clean_resize(rgb: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) -> float32 (299, 299, 3) in [0, 255]: each channel resized as a float
    ('F' mode) PIL image with bicubic filtering and clipped, as clean-fid's "clean" mode does."""
    channels = []
    for c in range(3):
        plane = Image.fromarray(rgb[:, :, c].astype(np.float32), mode="F")
        channels.append(np.asarray(plane.resize((SIZE, SIZE), resample=Image.BICUBIC)).clip(0, 255))
    return np.stack(channels, axis=2).astype(np.float32)


def standard_layout() -> dict[str, torch.Tensor]:
    """The standard weights file's key names and shapes, as a state dict of freshly initialised
    (random) tensors: torch-fidelity's network built without loading any weights."""
    module = require("torch_fidelity.feature_extractor_inceptionv3")
    cls = module.FeatureExtractorInceptionV3
    with (
        _HANDOVER,
        _patched(module, "load_state_dict_from_url", lambda *a, **k: {}),
        _patched(cls, "load_state_dict", lambda self, state_dict, *a, **k: None),
    ):
        net = cls("inception-v3-compat", ["2048"])
    return {k: v.clone() for k, v in net.state_dict().items()}


@contextlib.contextmanager
def _patched(owner, name: str, value) -> Iterator[None]:
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)
