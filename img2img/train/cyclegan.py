"""CycleGAN (Zhu et al., 2017): its data, four networks, image pools and step. Everything else
is the shared :class:`~img2img.train.trainer.Trainer`."""

from __future__ import annotations

import itertools
from typing import Any, Iterable, Mapping, TextIO

import torch
from torch import nn
from torch.nn import functional as F

from img2img.data.checks import check_unpaired_data, smallest_input
from img2img.data.datasets import UnpairedDataset
from img2img.data.transforms import Preprocess
from img2img.models.networks import build_discriminator, build_generator, init_weights
from img2img.train.config import CycleGANConfig
from img2img.train.losses import GANLoss, gradient_penalty
from img2img.train.model import ExportedGenerator, TrainableModel, TrainData, frozen, inference_copy
from img2img.train.runtime import Runtime
from img2img.train.trainer import Trainer, TrainResult


def cyclegan_data(config: CycleGANConfig) -> TrainData:
    """Check the unpaired dataset (raises a DatasetError naming the files) and build its
    datasets. Items hold ``A`` (G_A's input domain) and ``B``: with ``direction`` BtoA, A comes
    from trainB/ and B from trainA/, as in the reference."""
    pre = Preprocess.from_config(config)
    found = check_unpaired_data(
        config.data,
        pre,
        size_multiple=config.generator_config.size_multiple,
        batch_size=config.batch_size,
        val_size=config.val_size,
        full=config.check_data == "full",
    )
    train_a, train_b, val_a, val_b = found.train_a, found.train_b, found.val_a, found.val_b
    description = found.describe()
    if config.direction == "BtoA":
        train_a, train_b, val_a, val_b = train_b, train_a, val_b, val_a
        description += "; direction BtoA: G_A maps trainB/ to trainA/"
    channels = dict(nc_a=config.input_nc, nc_b=config.output_nc)
    train = UnpairedDataset(train_a, train_b, pre, train=True, serial=config.serial_batches, **channels)
    val = UnpairedDataset(val_a, val_b, pre, train=False, **channels) if val_a and val_b else None
    size, note = smallest_input(pre, found.sizes.values())
    return TrainData(
        train,
        val,
        description,
        pre.to_dict(),
        found.val_source,
        found.warnings,
        input_size=size,
        input_size_note=note,
    )


class ImagePool:
    """The reference's image buffer (Shrivastava et al.): a discriminator is shown generated
    images from a pool of earlier ones, not only the newest. Until the pool is full an image is
    stored and shown; then, with probability 1/2, a random stored image is shown and replaced by
    the new one, else the new one is shown. Its randomness comes from its own seeded generator,
    checkpointed with the images, so a resumed run draws what the uninterrupted one would."""

    def __init__(self, size: int, seed: int):
        self.size = size
        self.images: list[torch.Tensor] = []
        self.generator = torch.Generator().manual_seed(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        images = images.detach().float()  # stored in float32, whatever the autocast dtype
        if self.size == 0:
            return images
        chosen = []
        for image in images.split(1):
            if len(self.images) < self.size:
                self.images.append(image)
                chosen.append(image)
            elif float(torch.rand((), generator=self.generator)) > 0.5:
                index = int(torch.randint(self.size, (), generator=self.generator))
                chosen.append(self.images[index])
                self.images[index] = image
            else:
                chosen.append(image)
        return torch.cat(chosen)

    def state_dict(self) -> dict[str, Any]:
        return {"images": list(self.images), "rng": self.generator.get_state()}

    def load_state_dict(
        self,
        state: Mapping[str, Any],
        device: torch.device | str = "cpu",
        memory_format: torch.memory_format = torch.contiguous_format,
    ) -> None:
        self.images = [image.to(device, memory_format=memory_format) for image in state["images"]]
        self.generator.set_state(state["rng"].to(torch.uint8))


class CycleGANModel(TrainableModel):
    """G_A: A -> B and G_B: B -> A (ResNet by default). D_A tells real B images from G_A's,
    D_B real A images from G_B's (PatchGANs)."""

    task = "cyclegan"
    loss_names = ("D_A", "G_A", "cycle_A", "idt_A", "D_B", "G_B", "cycle_B", "idt_B")
    val_names = ("val_cycle_A", "val_cycle_B")

    def __init__(self, config: CycleGANConfig):
        self.config = config

        def init(net: nn.Module) -> nn.Module:
            return init_weights(net, config.init_type, config.init_gain)

        g_a = init(build_generator(config.generator_config))
        g_b = init(build_generator(config.generator_b_config))
        d_a = init(build_discriminator(config.discriminator_config(config.output_nc)))
        d_b = init(build_discriminator(config.discriminator_config(config.input_nc)))
        self.networks = {"G_A": g_a, "G_B": g_b, "D_A": d_a, "D_B": d_b}
        betas = (config.beta1, config.beta2)
        self.optimizers = {
            "G": torch.optim.Adam(itertools.chain(g_a.parameters(), g_b.parameters()), lr=config.lr, betas=betas),
            "D": torch.optim.Adam(itertools.chain(d_a.parameters(), d_b.parameters()), lr=config.lr, betas=betas),
        }
        self.gan_loss = GANLoss(config.gan_mode)
        if config.gan_mode == "wgangp":  # the gradient penalties get their own metrics.csv columns
            self.loss_names = (*type(self).loss_names, "D_A_GP", "D_B_GP")
        seed = config.seed or 0
        self.fake_a_pool = ImagePool(config.pool_size, seed=2 * seed + 1)  # what D_B is shown
        self.fake_b_pool = ImagePool(config.pool_size, seed=2 * seed + 2)  # what D_A is shown
        self._inference: tuple[nn.Module, nn.Module] | None = None

    def setup(self, runtime: Runtime) -> None:
        super().setup(runtime)
        self.g_a, self.g_b, self.d_a, self.d_b = (
            runtime.wrap(self.networks[name]) for name in ("G_A", "G_B", "D_A", "D_B")
        )

    def train_step(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        cfg, amp = self.config, self.runtime.amp
        real_a, real_b = batch["A"], batch["B"]
        lambda_idt = cfg.lambda_identity
        optimizer_g, optimizer_d = self.optimizers["G"], self.optimizers["D"]

        # 1. G_A and G_B: make the discriminators call their images real, bring each image back
        #    through both generators (cycle), leave an image of the target domain as it is
        #    (identity). Each part is back-propagated as soon as it is computed, which frees its
        #    graph: the gradients are the reference's (one sum), with two generators' graphs
        #    alive at a time instead of six.
        optimizer_g.zero_grad(set_to_none=True)
        with frozen(self.networks["D_A"]), frozen(self.networks["D_B"]):
            with amp.autocast():
                fake_b = self.g_a(real_a)
                rec_a = self.g_b(fake_b)
                pred_fake_b = self.d_a(fake_b)
            loss_g_a = self.gan_loss(pred_fake_b, True)
            loss_cycle_a = F.l1_loss(rec_a.float(), real_a.float()) * cfg.lambda_a
            amp.backward(loss_g_a + loss_cycle_a)
            del rec_a, pred_fake_b

            with amp.autocast():
                fake_a = self.g_b(real_b)
                rec_b = self.g_a(fake_a)
                pred_fake_a = self.d_b(fake_a)
            loss_g_b = self.gan_loss(pred_fake_a, True)
            loss_cycle_b = F.l1_loss(rec_b.float(), real_b.float()) * cfg.lambda_b
            amp.backward(loss_g_b + loss_cycle_b)
            del rec_b, pred_fake_a

        if lambda_idt > 0:
            with amp.autocast():
                idt_a = self.g_a(real_b)
            loss_idt_a = F.l1_loss(idt_a.float(), real_b.float()) * cfg.lambda_b * lambda_idt
            amp.backward(loss_idt_a)
            with amp.autocast():
                idt_b = self.g_b(real_a)
            loss_idt_b = F.l1_loss(idt_b.float(), real_a.float()) * cfg.lambda_a * lambda_idt
            amp.backward(loss_idt_b)
            del idt_a, idt_b
        else:
            loss_idt_a = loss_idt_b = torch.zeros((), device=real_a.device)
        amp.step_optimizer(optimizer_g)

        # 2. D_A: real B images are real, G_A's (drawn from the pool) fake.
        # 3. D_B: real A images are real, G_B's (drawn from the pool) fake.
        optimizer_d.zero_grad(set_to_none=True)
        loss_d_a, gp_a = self.discriminator_loss(self.d_a, real_b, self.fake_b_pool.query(fake_b))
        amp.backward(loss_d_a)
        loss_d_b, gp_b = self.discriminator_loss(self.d_b, real_a, self.fake_a_pool.query(fake_a))
        amp.backward(loss_d_b)
        amp.step_optimizer(optimizer_d)

        losses = (loss_d_a, loss_g_a, loss_cycle_a, loss_idt_a, loss_d_b, loss_g_b, loss_cycle_b, loss_idt_b)
        if gp_a is not None and gp_b is not None:
            losses += (gp_a, gp_b)
        return {name: loss.detach() for name, loss in zip(self.loss_names, losses)}

    def discriminator_loss(
        self, net_d: nn.Module, real: torch.Tensor, fake: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Half the sum of the real and fake losses (D learns at half G's pace), plus the
        gradient penalty with wgangp; returns the loss and the penalty (None without wgangp)."""
        with self.runtime.amp.autocast():
            pred_real = net_d(real)
            pred_fake = net_d(fake)
        loss_real = self.gan_loss(pred_real, True, for_discriminator=True)
        loss_fake = self.gan_loss(pred_fake, False, for_discriminator=True)
        loss = (loss_real + loss_fake) * 0.5
        penalty = None
        if self.config.gan_mode == "wgangp":
            with self.runtime.amp.autocast():
                penalty = gradient_penalty(net_d, real, fake, weight=self.config.lambda_gp)
            loss = loss + penalty
        return loss, penalty

    # -- inference: what the exported weights do
    @property
    def eval_mode(self) -> bool:
        return self.config.norm != "batch"

    def inference_generators(self) -> tuple[nn.Module, nn.Module]:
        """G_A and G_B as `translate` runs them, sharing their parameters."""
        if self._inference is None:
            self._inference = (
                inference_copy(self.networks["G_A"], eval_mode=self.eval_mode),
                inference_copy(self.networks["G_B"], eval_mode=self.eval_mode),
            )
        return self._inference

    @torch.no_grad()
    def validate(self, batches: Iterable[Mapping[str, Any]]) -> dict[str, float]:
        """Mean cycle reconstruction L1 (on the [-1, 1] scale, like cycle_A / lambda_A) of each
        validation image: |G_B(G_A(a)) - a| and |G_A(G_B(b)) - b|."""
        g_a, g_b = self.inference_generators()
        sums = {"A": 0.0, "B": 0.0}
        seen: dict[str, set[str]] = {"A": set(), "B": set()}
        for batch in batches:
            # the smaller domain's images come round again (the dataset has the larger's length)
            for side, there, back in (("A", g_a, g_b), ("B", g_b, g_a)):
                for index, path in enumerate(batch[f"{side}_path"]):
                    if path in seen[side]:
                        continue
                    seen[side].add(path)
                    real = batch[side][index : index + 1]
                    sums[side] += float((back(there(real)).float() - real.float()).abs().mean())
        if not seen["A"] or not seen["B"]:
            return {}
        return {"val_cycle_A": sums["A"] / len(seen["A"]), "val_cycle_B": sums["B"] / len(seen["B"])}

    @torch.no_grad()
    def sample_rows(self, batch: Mapping[str, Any]) -> list[list[torch.Tensor]]:
        """real_A | fake_B | rec_A and real_B | fake_A | rec_B for each image."""
        g_a, g_b = self.inference_generators()
        rows = []
        for index in range(batch["A"].shape[0]):
            real_a, real_b = batch["A"][index : index + 1], batch["B"][index : index + 1]
            fake_b, fake_a = g_a(real_a), g_b(real_b)
            rows += [[real_a, fake_b, g_b(fake_b)], [real_b, fake_a, g_a(fake_a)]]
        return rows

    def export_generators(self) -> dict[str, ExportedGenerator]:
        """G_A for the run's direction (AtoB by default), G_B for the other."""
        cfg = self.config
        back = "BtoA" if cfg.direction == "AtoB" else "AtoB"
        return {
            cfg.direction: ExportedGenerator(
                self.networks["G_A"].state_dict(), cfg.generator_config, eval_mode=self.eval_mode
            ),
            back: ExportedGenerator(
                self.networks["G_B"].state_dict(), cfg.generator_b_config, eval_mode=self.eval_mode
            ),
        }

    def extra_state(self) -> dict[str, Any]:
        return {"fake_A_pool": self.fake_a_pool.state_dict(), "fake_B_pool": self.fake_b_pool.state_dict()}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        place = dict(device=self.runtime.device, memory_format=self.runtime.memory_format)
        self.fake_a_pool.load_state_dict(state["fake_A_pool"], **place)
        self.fake_b_pool.load_state_dict(state["fake_B_pool"], **place)


def train_cyclegan(
    config: CycleGANConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    stream: TextIO | None = None,
    live: bool | None = None,
    stop_after_epochs: int | None = None,
) -> TrainResult:
    """Train CycleGAN as ``config`` says; with ``resume``, continue the run in ``config.out``."""
    trainer = Trainer(
        config,
        CycleGANModel,
        cyclegan_data,
        resume=resume,
        overwrite=overwrite,
        stream=stream,
        live=live,
    )
    return trainer.fit(stop_after_epochs=stop_after_epochs)


__all__ = ["CycleGANModel", "ImagePool", "cyclegan_data", "train_cyclegan"]
