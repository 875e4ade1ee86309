"""GAN objectives (vanilla, lsgan, wgangp, hinge) and the WGAN-GP gradient penalty.

Losses are computed in float32 whatever the autocast dtype of the discriminator's output.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from img2img.errors import UsageError
from img2img.train.config import GAN_MODES


class GANLoss(nn.Module):
    """``loss(prediction, target_is_real, for_discriminator=False)``.

    - vanilla: binary cross-entropy on logits (the original GAN; the reference's default).
    - lsgan: mean squared error against 1 / 0.
    - wgangp: the Wasserstein critic: -mean for real, +mean for fake (pair with a gradient penalty).
    - hinge: relu(1 - D(real)) + relu(1 + D(fake)) for D; -D(fake) for G.
    """

    def __init__(self, gan_mode: str = "vanilla"):
        super().__init__()
        if gan_mode not in GAN_MODES:
            raise UsageError(f"unknown GAN mode {gan_mode!r}; valid: {', '.join(GAN_MODES)}")
        self.gan_mode = gan_mode

    def forward(self, prediction: torch.Tensor, target_is_real: bool, for_discriminator: bool = False) -> torch.Tensor:
        prediction = prediction.float()
        if self.gan_mode == "vanilla":
            target = torch.ones_like(prediction) if target_is_real else torch.zeros_like(prediction)
            return F.binary_cross_entropy_with_logits(prediction, target)
        if self.gan_mode == "lsgan":
            target = torch.ones_like(prediction) if target_is_real else torch.zeros_like(prediction)
            return F.mse_loss(prediction, target)
        if self.gan_mode == "wgangp":
            return -prediction.mean() if target_is_real else prediction.mean()
        # hinge
        if for_discriminator:
            return F.relu(1.0 - prediction).mean() if target_is_real else F.relu(1.0 + prediction).mean()
        if not target_is_real:
            raise ValueError("the hinge generator loss only has a 'real' target")
        return -prediction.mean()


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    weight: float = 10.0,
    constant: float = 1.0,
) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al.): ``weight * E[(||grad D(x_hat)||_2 - constant)^2]`` on random
    mixes ``x_hat`` of real and fake samples (the reference's ``cal_gradient_penalty``, 'mixed')."""
    fake = fake.detach()
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    mixed = (alpha * real.detach() + (1 - alpha) * fake).requires_grad_(True)
    scores = critic(mixed).float()
    (grads,) = torch.autograd.grad(scores, mixed, grad_outputs=torch.ones_like(scores), create_graph=True)
    norms = (grads.float().flatten(1) + 1e-16).norm(2, dim=1)
    return ((norms - constant) ** 2).mean() * weight


__all__ = ["GANLoss", "gradient_penalty"]
