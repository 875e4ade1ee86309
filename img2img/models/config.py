"""Configuration dataclasses. A network is built from its config, and weights files carry it."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Literal

from img2img.errors import UsageError

Norm = Literal["batch", "instance", "none"]
NORMS = ("batch", "instance", "none")
PADDING_TYPES = ("reflect", "replicate", "zero")


#: Accepted ranges of the generator options. Far beyond any published model (the reference
#: builds resnet_6/9blocks and unet_128/256 with ngf 64), they stop a hostile or mistyped value
#: from building a network for minutes (a million blocks) or recursing without end (a U-Net 1000
#: levels deep; 2**num_downs is also the size every input is padded to a multiple of).
GENERATOR_LIMITS = {
    "input_nc": (1, 64),
    "output_nc": (1, 64),
    "ngf": (1, 1024),
    "n_blocks": (0, 128),
    "num_downs": (5, 12),
}


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything needed to rebuild a generator; stored in the weights file's metadata."""

    arch: Literal["resnet", "unet"] = "resnet"
    input_nc: int = 3
    output_nc: int = 3
    ngf: int = 64
    norm: Norm = "instance"
    use_dropout: bool = False
    n_blocks: int = 9  # resnet only
    padding_type: str = "reflect"  # resnet only
    num_downs: int = 8  # unet only

    def __post_init__(self) -> None:
        # Strict types: a weights file's metadata is JSON, where "9" or true must not pass for
        # a number, nor "false" for a boolean.
        for name in ("input_nc", "output_nc", "ngf", "n_blocks", "num_downs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise UsageError(f"{name} must be an integer, got {value!r}")
        for name in ("arch", "norm", "padding_type"):
            if not isinstance(getattr(self, name), str):
                raise UsageError(f"{name} must be a string, got {getattr(self, name)!r}")
        if not isinstance(self.use_dropout, bool):
            raise UsageError(f"use_dropout must be true or false, got {self.use_dropout!r}")
        if self.arch not in ("resnet", "unet"):
            raise UsageError(f"unknown generator arch {self.arch!r}; valid: resnet, unet")
        if self.norm not in NORMS:
            raise UsageError(f"unknown norm {self.norm!r}; valid: {', '.join(NORMS)}")
        if self.padding_type not in PADDING_TYPES:
            raise UsageError(
                f"unknown padding type {self.padding_type!r}; valid: {', '.join(PADDING_TYPES)}"
            )
        for name, (low, high) in GENERATOR_LIMITS.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise UsageError(f"{name} must be in [{low}, {high}], got {value}")

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this (one halving per down-sampling)."""
        return 4 if self.arch == "resnet" else 2**self.num_downs

    @property
    def reference_name(self) -> str:
        """The reference implementation's --netG name, e.g. resnet_9blocks or unet_256."""
        if self.arch == "resnet":
            return f"resnet_{self.n_blocks}blocks"
        return f"unet_{2 ** self.num_downs}"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        irrelevant = ("num_downs",) if self.arch == "resnet" else ("n_blocks", "padding_type")
        for key in irrelevant:
            data.pop(key)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneratorConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"unknown generator options: {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def from_reference(cls, net_g: str, **options: Any) -> GeneratorConfig:
        """Map the reference's --netG name (resnet_9blocks, unet_256, unet_N) onto a config."""
        return cls(**parse_generator_name(net_g), **options)


def parse_generator_name(net_g: str) -> dict[str, Any]:
    """'resnet_9blocks' -> {arch: resnet, n_blocks: 9}; 'unet_256' -> {arch: unet, num_downs: 8}."""
    if match := re.fullmatch(r"resnet_(\d+)blocks", net_g):
        return {"arch": "resnet", "n_blocks": int(match[1])}
    if match := re.fullmatch(r"unet_(\d+)", net_g):
        size = int(match[1])
        if size >= 32 and size & (size - 1) == 0:
            return {"arch": "unet", "num_downs": size.bit_length() - 1}
    if match := re.fullmatch(r"unet_(\d+)", net_g):
        raise UsageError(
            f"unknown generator {net_g!r}: unet_N needs N a power of two, at least 32 (unet_32, unet_64, unet_128, "
            "unet_256, ...: N halvings' worth of down-sampling, so the inputs' sides must be "
            "multiples of N, and at least N)"
        )
    raise UsageError(
        f"unknown generator {net_g!r}; valid: resnet_6blocks, resnet_9blocks, "
        "unet_128, unet_256 (or resnet_Nblocks, unet_N for N a power of two, at least 32)"
    )


@dataclass(frozen=True)
class DiscriminatorConfig:
    """A PatchGAN (basic = 3 layers, 70x70 receptive field; n_layers) or a 1x1 PixelGAN."""

    arch: Literal["basic", "n_layers", "pixel"] = "basic"
    input_nc: int = 6
    ndf: int = 64
    n_layers: int = 3
    norm: Norm = "batch"

    def __post_init__(self) -> None:
        if self.arch not in ("basic", "n_layers", "pixel"):
            raise UsageError(f"unknown discriminator {self.arch!r}; valid: basic, n_layers, pixel")
        if self.norm not in NORMS:
            raise UsageError(f"unknown norm {self.norm!r}; valid: {', '.join(NORMS)}")
        if self.n_layers < 1:
            raise UsageError(f"n_layers must be at least 1, got {self.n_layers}")

    @property
    def effective_n_layers(self) -> int:
        return 3 if self.arch == "basic" else self.n_layers

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DiscriminatorConfig:
        return cls(**data)


# --- training -------------------------------------------------------------------------------

PREPROCESS_CHOICES = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
GAN_MODES = ("vanilla", "lsgan", "wgangp", "hinge")
#: The sizes a weights file's ``preprocess`` may record: far beyond any training crop, they stop
#: nonsense (a negative crop, a size no image has) from passing for the training's settings.
PREPROCESS_SIZE_LIMITS = (1, 1 << 16)
LR_POLICIES = ("linear", "step", "cosine")
DIRECTION_CHOICES = ("AtoB", "BtoA")
AMP_DTYPES = ("bf16", "fp16")
CHECK_DATA = ("header", "full")


def preprocess_problem(preprocess: Any) -> str | None:
    """What is wrong with a weights file's (or a registry entry's) ``preprocess`` record, or None.

    The record is the training's ``{"preprocess": MODE, "load_size": N, "crop_size": N}`` (any of
    them may be left out; a converted reference checkpoint records only the sizes). Informational
    (outputs keep the input size), but checked like every field, so that a file whose record is
    nonsense is refused rather than shown: strict JSON types (no "128" for 128), MODE one of
    PREPROCESS_CHOICES, sizes in PREPROCESS_SIZE_LIMITS, no other keys. The problem names the
    field as ``preprocess.KEY``."""
    if preprocess is None:
        return None
    if not isinstance(preprocess, dict):
        return f"preprocess must be a JSON object, got {preprocess!r}"
    unknown = sorted(set(preprocess) - {"preprocess", "load_size", "crop_size"})
    if unknown:
        return f"preprocess has unknown keys {', '.join(map(repr, unknown))} (valid: preprocess, load_size, crop_size)"
    mode = preprocess.get("preprocess", PREPROCESS_CHOICES[0])
    if mode not in PREPROCESS_CHOICES:
        return f"preprocess.preprocess must be one of {', '.join(PREPROCESS_CHOICES)}, got {mode!r}"
    low, high = PREPROCESS_SIZE_LIMITS
    for name in ("load_size", "crop_size"):
        value = preprocess.get(name, low)
        if not isinstance(value, int) or isinstance(value, bool):
            return f"preprocess.{name} must be an integer, got {value!r}"
        if not low <= value <= high:
            return f"preprocess.{name} must be in [{low}, {high}], got {value}"
    return None


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
                raise UsageError(
                    f"--{_flag(name)}: {getattr(self, name)!r} is not one of {', '.join(valid)}"
                )
        parse_generator_name(self.netg)  # raises a UsageError naming the valid ones
        for name in ("input_nc", "output_nc"):
            if getattr(self, name) not in (1, 3):
                raise UsageError(f"--{_flag(name)} must be 1 or 3, got {getattr(self, name)}")
        positive = ("load_size", "crop_size", "ngf", "ndf", "n_layers_d", "batch_size",
                    "print_freq", "save_epoch_freq", "save_latest_freq", "lr_decay_iters", "val_freq")
        for name in positive:
            if getattr(self, name) < 1:
                raise UsageError(f"--{_flag(name)} must be at least 1, got {getattr(self, name)}")
        for name in ("n_epochs", "n_epochs_decay", "val_size", "n_samples"):
            if getattr(self, name) < 0:
                raise UsageError(f"--{_flag(name)} must be 0 or more, got {getattr(self, name)}")
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
                raise UsageError(f"--{_flag(name)} must be 0 or more, got {getattr(self, name)}")
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


def _flag(name: str) -> str:
    return name.replace("_", "-")
