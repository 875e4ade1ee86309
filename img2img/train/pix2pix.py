"""pix2pix (Isola et al., 2017): its data, networks and step. Everything else is the shared
:class:`~img2img.train.trainer.Trainer`."""

from __future__ import annotations

from typing import Any, Iterable, Mapping, TextIO

import torch
from torch import nn
from torch.nn import functional as F

from img2img.data.checks import check_paired_data, smallest_input
from img2img.data.datasets import PairedDataset
from img2img.data.transforms import Preprocess
from img2img.models.networks import build_discriminator, build_generator, init_weights
from img2img.train.config import Pix2PixConfig
from img2img.train.losses import GANLoss, gradient_penalty
from img2img.train.model import ExportedGenerator, TrainableModel, TrainData, frozen, inference_copy
from img2img.train.runtime import Runtime
from img2img.train.trainer import Trainer, TrainResult


def pix2pix_data(config: Pix2PixConfig) -> TrainData:
    """Check the paired dataset (raises a DatasetError naming the files) and build its datasets."""
    pre = Preprocess.from_config(config)
    found = check_paired_data(
        config.data,
        pre,
        size_multiple=config.generator_config.size_multiple,
        batch_size=config.batch_size,
        val_size=config.val_size,
        full=config.check_data == "full",
    )
    options = dict(direction=config.direction, input_nc=config.input_nc, output_nc=config.output_nc)
    train = PairedDataset(found.train, pre, train=True, **options)
    val = PairedDataset(found.val, pre, train=False, **options) if found.val else None
    size, note = smallest_input(pre, found.sizes.values())
    return TrainData(
        train,
        val,
        found.describe(),
        pre.to_dict(),
        found.val_source,
        found.warnings,
        input_size=size,
        input_size_note=note,
    )


class Pix2PixModel(TrainableModel):
    """G: input -> output (U-Net by default). D: a PatchGAN on the (input, output) pair."""

    task = "pix2pix"
    loss_names = ("G_GAN", "G_L1", "D_real", "D_fake")
    val_names = ("val_L1", "val_PSNR")

    def __init__(self, config: Pix2PixConfig):
        self.config = config
        self.generator_config = config.generator_config
        net_g = init_weights(build_generator(self.generator_config), config.init_type, config.init_gain)
        net_d = init_weights(build_discriminator(config.discriminator), config.init_type, config.init_gain)
        betas = (config.beta1, config.beta2)
        self.networks = {"G": net_g, "D": net_d}
        self.optimizers = {
            "G": torch.optim.Adam(net_g.parameters(), lr=config.lr, betas=betas),
            "D": torch.optim.Adam(net_d.parameters(), lr=config.lr, betas=betas),
        }
        self.gan_loss = GANLoss(config.gan_mode)
        if config.gan_mode == "wgangp":  # the gradient penalty gets its own metrics.csv column
            self.loss_names = (*type(self).loss_names, "D_GP")
        self._inference_g: nn.Module | None = None

    def setup(self, runtime: Runtime) -> None:
        super().setup(runtime)
        self.net_g = runtime.wrap(self.networks["G"])
        self.net_d = runtime.wrap(self.networks["D"])

    def train_step(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        cfg, amp = self.config, self.runtime.amp
        real_a, real_b = batch["input"], batch["target"]
        with amp.autocast():
            fake_b = self.net_g(real_a)
        real_pair = torch.cat([real_a, real_b], 1)
        fake_pair = torch.cat([real_a, fake_b], 1)

        # 1. D: real pairs are real; generated pairs are fake (detached: G gets no gradient here).
        with amp.autocast():
            pred_real = self.net_d(real_pair)
            pred_fake = self.net_d(fake_pair.detach())
        loss_d_real = self.gan_loss(pred_real, True, for_discriminator=True)
        loss_d_fake = self.gan_loss(pred_fake, False, for_discriminator=True)
        loss_d = (loss_d_real + loss_d_fake) * 0.5
        losses = {}
        if cfg.gan_mode == "wgangp":
            with amp.autocast():
                loss_gp = gradient_penalty(self.net_d, real_pair, fake_pair, weight=cfg.lambda_gp)
            loss_d = loss_d + loss_gp
            losses["D_GP"] = loss_gp.detach()
        amp.step(loss_d, self.optimizers["D"])

        # 2. G: make D call the generated pair real, and stay close to the target (L1).
        with frozen(self.networks["D"]), amp.autocast():
            pred_fake = self.net_d(fake_pair)
        loss_g_gan = self.gan_loss(pred_fake, True)
        loss_g_l1 = F.l1_loss(fake_b.float(), real_b.float()) * cfg.lambda_l1
        amp.step(loss_g_gan + loss_g_l1, self.optimizers["G"])

        return {
            "G_GAN": loss_g_gan.detach(),
            "G_L1": loss_g_l1.detach(),
            "D_real": loss_d_real.detach(),
            "D_fake": loss_d_fake.detach(),
            **losses,
        }

    # -- inference: what the exported weights do (dropout off; batch norm per image)
    @property
    def eval_mode(self) -> bool:
        return self.generator_config.norm != "batch"

    def inference_generator(self) -> nn.Module:
        """G as `translate` runs it, sharing G's parameters (so it is always up to date)."""
        if self._inference_g is None:
            self._inference_g = inference_copy(self.networks["G"], eval_mode=self.eval_mode)
        return self._inference_g

    @torch.no_grad()
    def validate(self, batches: Iterable[Mapping[str, Any]]) -> dict[str, float]:
        """Mean L1 (on the [-1, 1] scale, like G_L1 / lambda) and PSNR (dB, on [0, 1]) per image."""
        net = self.inference_generator()
        l1_sum = psnr_sum = 0.0
        count = 0
        for batch in batches:
            output = net(batch["input"]).float().clamp(-1, 1)
            target = batch["target"].float()
            l1 = (output - target).abs().flatten(1).mean(1)
            mse = ((output - target) / 2).pow(2).flatten(1).mean(1).clamp_min(1e-10)
            l1_sum += float(l1.sum())
            psnr_sum += float((10 * torch.log10(1.0 / mse)).sum())
            count += output.shape[0]
        if not count:
            return {}
        return {"val_L1": l1_sum / count, "val_PSNR": psnr_sum / count}

    @torch.no_grad()
    def sample_rows(self, batch: Mapping[str, Any]) -> list[list[torch.Tensor]]:
        output = self.inference_generator()(batch["input"])
        return [[batch["input"][i], output[i], batch["target"][i]] for i in range(output.shape[0])]

    def export_generators(self) -> dict[str, ExportedGenerator]:
        return {
            self.config.direction: ExportedGenerator(
                self.networks["G"].state_dict(), self.generator_config, eval_mode=self.eval_mode
            )
        }


def train_pix2pix(
    config: Pix2PixConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    stream: TextIO | None = None,
    live: bool | None = None,
    stop_after_epochs: int | None = None,
) -> TrainResult:
    """Train pix2pix as ``config`` says; with ``resume``, continue the run in ``config.out``."""
    trainer = Trainer(
        config,
        Pix2PixModel,
        pix2pix_data,
        resume=resume,
        overwrite=overwrite,
        stream=stream,
        live=live,
    )
    return trainer.fit(stop_after_epochs=stop_after_epochs)


__all__ = ["Pix2PixModel", "pix2pix_data", "train_pix2pix"]
