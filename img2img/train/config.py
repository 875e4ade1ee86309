"""The training configs: options every trainer shares (TrainConfig) and each trainer's own, with
the reference implementation's defaults. ``config.json`` in a run folder is ``to_dict()``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from img2img.errors import UsageError
from img2img.models.config import (
    NORMS,
    PREPROCESS_CHOICES,
    DiscriminatorConfig,
    GeneratorConfig,
    option_flag,
    parse_generator_name,
)

GAN_MODES = ("vanilla", "lsgan", "wgangp", "hinge")
LR_POLICIES = ("linear", "step", "cosine")
DIRECTION_CHOICES = ("AtoB", "BtoA")
AMP_DTYPES = ("bf16", "fp16")
CHECK_DATA = ("header", "full")


@dataclass
class TrainConfig:
    """Options every trainer shares: data, networks, optimisation, run folder, speed.

    Field names are the reference's options in snake case; the CLI spells them in kebab case
    (``n_epochs_decay`` is ``--n-epochs-decay``). A trainer's config subclasses this and changes
    defaults or adds its own fields; ``config.json`` in a run folder is ``to_dict()``.
    """

    task: str = "train"
    # data
    data: str = ""
    direction: str = "AtoB"
    input_nc: int = 3  # channels of the network's input (the source side after --direction)
    output_nc: int = 3
    preprocess: str = "resize_and_crop"
    load_size: int = 286
    crop_size: int = 256
    flip: bool = True
    serial_batches: bool = False  # take images in order (CycleGAN: B paired with A by index)
    check_data: str = "header"  # the up-front dataset check: headers only, or decode every image
    # networks
    netg: str = "unet_256"
    ngf: int = 64
    netd: str = "basic"
    ndf: int = 64
    n_layers_d: int = 3
    norm: str = "batch"
    dropout: bool = True
    init_type: str = "normal"
    init_gain: float = 0.02
    # optimisation
    gan_mode: str = "vanilla"
    lambda_gp: float = 10.0  # wgangp only
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    batch_size: int = 1
    n_epochs: int = 100
    n_epochs_decay: int = 100
    lr_policy: str = "linear"
    lr_decay_iters: int = 50  # step policy: multiply the rate by 0.1 every this many epochs
    # run folder, logging
    out: str | None = None
    seed: int | None = None  # None: chosen at random and written to config.json
    print_freq: int = 100  # iterations between log lines / metrics rows
    save_epoch_freq: int = 5  # epochs between kept checkpoints
    save_latest_freq: int = 5000  # iterations between `latest` checkpoints
    val_size: int = 50  # validation images used per epoch (at most)
    n_samples: int = 4  # rows of the per-epoch sample grid
    tensorboard: bool = False
    # validation scores (img2img.eval): "fid,kid,..." every val_freq epochs; keep the best epoch
    val_metrics: str = ""
    val_freq: int = 1
    keep_best: str | None = None
    inception_weights: str | None = None
    lpips_weights: str | None = None
    # speed
    device: str = "auto"
    num_workers: int | None = None  # None: sized to the machine
    amp: bool | None = None  # None: bf16 on a CPU with native bf16 (where it measured faster)
    amp_dtype: str = "bf16"
    channels_last: bool | None = None  # None: on where it measured faster (the CPU)
    compile: bool = False
    sync_bn: bool = False  # with several processes (torchrun, CUDA): SyncBatchNorm over the global batch

    def __post_init__(self) -> None:
        choices = {
            "direction": DIRECTION_CHOICES,
            "preprocess": PREPROCESS_CHOICES,
            "gan_mode": GAN_MODES,
            "lr_policy": LR_POLICIES,
            "norm": NORMS,
            "amp_dtype": AMP_DTYPES,
            "netd": ("basic", "n_layers", "pixel"),
            "check_data": CHECK_DATA,
        }
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise UsageError(f"--{option_flag(name)}: {getattr(self, name)!r} is not one of {', '.join(valid)}")
        parse_generator_name(self.netg)  # raises a UsageError naming the valid ones
        for name in ("input_nc", "output_nc"):
            if getattr(self, name) not in (1, 3):
                raise UsageError(f"--{option_flag(name)} must be 1 or 3, got {getattr(self, name)}")
        positive = (
            "load_size",
            "crop_size",
            "ngf",
            "ndf",
            "n_layers_d",
            "batch_size",
            "print_freq",
            "save_epoch_freq",
            "save_latest_freq",
            "lr_decay_iters",
            "val_freq",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise UsageError(f"--{option_flag(name)} must be at least 1, got {getattr(self, name)}")
        for name in ("n_epochs", "n_epochs_decay", "val_size", "n_samples"):
            if getattr(self, name) < 0:
                raise UsageError(f"--{option_flag(name)} must be 0 or more, got {getattr(self, name)}")
        if self.n_epochs + self.n_epochs_decay < 1:
            raise UsageError("--n-epochs plus --n-epochs-decay must be at least 1")
        if self.num_workers is not None and self.num_workers < 0:
            raise UsageError(f"--num-workers must be 0 or more, got {self.num_workers}")
        if self.lr <= 0:
            raise UsageError(f"--lr must be positive, got {self.lr}")
        if not 0 <= self.beta1 < 1 or not 0 <= self.beta2 < 1:
            raise UsageError("--beta1 and --beta2 must be in [0, 1)")
        if not self.data:
            raise UsageError("no data folder given (--data DIR)")
        if self.val_metrics or self.keep_best:
            from img2img.eval.validation import check_keep_best, parse_metrics  # no extra needed to parse

            check_keep_best(self.keep_best, parse_metrics(self.val_metrics, self.task_name()))
            if self.val_metrics and self.val_freq > self.total_epochs:
                # Validation runs after every val_freq-th epoch: none would ever run.
                raise UsageError(
                    f"--val-freq {self.val_freq}: training runs {self.total_epochs} epoch"
                    f"{'s' if self.total_epochs != 1 else ''}, so --val-metrics would never be scored"
                    + (" and --keep-best never keep an epoch" if self.keep_best else ""),
                    hint=f"give --val-freq {self.total_epochs} or less",
                )

    @property
    def total_epochs(self) -> int:
        return self.n_epochs + self.n_epochs_decay

    @property
    def generator_config(self) -> GeneratorConfig:
        return GeneratorConfig.from_reference(
            self.netg,
            input_nc=self.input_nc,
            output_nc=self.output_nc,
            ngf=self.ngf,
            norm=self.norm,
            use_dropout=self.dropout,
        )

    def discriminator_config(self, input_nc: int) -> DiscriminatorConfig:
        return DiscriminatorConfig(
            arch=self.netd, input_nc=input_nc, ndf=self.ndf, n_layers=self.n_layers_d, norm=self.norm
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        task = data.get("task", cls.task_name())
        if task != cls.task_name():
            raise UsageError(f"this is a {task} config, not a {cls.task_name()} one")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"unknown {cls.__name__} options: {', '.join(unknown)}")
        return cls(**{**data, "task": cls.task_name()})

    @classmethod
    def task_name(cls) -> str:
        return next(f for f in dataclasses.fields(cls) if f.name == "task").default

    def replace(self, **changes: Any):
        return dataclasses.replace(self, **changes)


@dataclass
class Pix2PixConfig(TrainConfig):
    """pix2pix (Isola et al.): a conditional GAN on paired images, with the reference's defaults."""

    task: str = "pix2pix"
    lambda_l1: float = 100.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lambda_l1 < 0:
            raise UsageError(f"--lambda-l1 must be 0 or more, got {self.lambda_l1}")

    @property
    def discriminator(self) -> DiscriminatorConfig:
        """D sees the (input, output) pair stacked on the channel axis."""
        return self.discriminator_config(self.input_nc + self.output_nc)


@dataclass
class CycleGANConfig(TrainConfig):
    """CycleGAN (Zhu et al.): two generators and two discriminators on unpaired images, with the
    reference's defaults. G_A maps the input domain (A, or B with ``direction`` BtoA) to the
    output domain; G_B maps back."""

    task: str = "cyclegan"
    netg: str = "resnet_9blocks"
    norm: str = "instance"
    dropout: bool = False
    gan_mode: str = "lsgan"
    lambda_a: float = 10.0  # cycle loss A -> B -> A
    lambda_b: float = 10.0  # cycle loss B -> A -> B
    lambda_identity: float = 0.5  # identity loss, as a fraction of lambda_a / lambda_b
    pool_size: int = 50  # generated images each discriminator draws from (0: none)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("lambda_a", "lambda_b", "lambda_identity", "pool_size"):
            if getattr(self, name) < 0:
                raise UsageError(f"--{option_flag(name)} must be 0 or more, got {getattr(self, name)}")
        if self.lambda_identity > 0 and self.input_nc != self.output_nc:
            raise UsageError(
                f"--lambda-identity {self.lambda_identity:g} compares G_A(B) with B, so it needs "
                f"--input-nc equal to --output-nc (got {self.input_nc} and {self.output_nc}); "
                "give --lambda-identity 0"
            )

    @property
    def generator_b_config(self) -> GeneratorConfig:
        """G_B: the output domain back to the input domain."""
        return dataclasses.replace(self.generator_config, input_nc=self.output_nc, output_nc=self.input_nc)
