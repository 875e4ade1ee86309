"""`img2img train pix2pix` and `img2img train cyclegan`: options into a Pix2PixConfig or a
CycleGANConfig, then the library trains.

The options every trainer shares are declared once below (Annotated aliases, as the
huggingface_hub CLI does) and each command lists them with its own defaults, which are its
config's. Only the options given on the command line are passed on: the config dataclass holds
the defaults, ``--config FILE`` fills in what the command line leaves out, and ``--resume RUN``
takes the run's own config.json.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from img2img.cli._app import train_app
from img2img.cli._options import (
    Direction,
    MaxPixelsOpt,
    Norm,
    check_existing_options,
    overwrite_option,
    skip_existing_option,
)


class PreprocessChoice(str, Enum):
    resize_and_crop = "resize_and_crop"
    crop = "crop"
    scale_width = "scale_width"
    scale_width_and_crop = "scale_width_and_crop"
    none = "none"


class NetD(str, Enum):
    basic = "basic"
    n_layers = "n_layers"
    pixel = "pixel"


class GanMode(str, Enum):
    vanilla = "vanilla"
    lsgan = "lsgan"
    wgangp = "wgangp"
    hinge = "hinge"


class LrPolicy(str, Enum):
    linear = "linear"
    step = "step"
    cosine = "cosine"


class InitType(str, Enum):
    normal = "normal"
    xavier = "xavier"
    kaiming = "kaiming"
    orthogonal = "orthogonal"


class CheckData(str, Enum):
    header = "header"
    full = "full"


class AmpDtype(str, Enum):
    bf16 = "bf16"
    fp16 = "fp16"


DATA = "Data"
NETS = "Networks"
OPTIM = "Optimisation"
RUN = "Run folder and logging"
SPEED = "Speed"

# CLI parameter name -> (config field, value conversion)
_RENAMED = {"no_flip": ("flip", lambda v: not v)}
_NOT_CONFIG = {"ctx", "resume", "config_file", "overwrite", "skip_existing", "nproc", "max_pixels"}


def given_options(ctx: typer.Context, values: dict[str, Any]) -> dict[str, Any]:
    """The config fields set on the command line (not defaults), with their values."""
    given = {}
    for name, value in values.items():
        if name in _NOT_CONFIG:
            continue
        # Typer may bring its own copy of Click, so the enum is compared by name.
        source = ctx.get_parameter_source(name)
        if getattr(source, "name", None) not in ("COMMANDLINE", "ENVIRONMENT"):
            continue
        field, convert = _RENAMED.get(name, (name, lambda v: v))
        if isinstance(value, Enum):
            value = value.value
        elif isinstance(value, Path):
            value = str(value)
        given[field] = convert(value)
    return given


def build_config(
    config_cls: type,
    given: dict[str, Any],
    *,
    resume: Optional[Path],
    config_file: Optional[Path],
    world_size: Optional[int] = None,
):
    """The config for a new run (defaults < --config FILE < command line) or a resumed one
    (``world_size``: the processes it will resume with, when not this torchrun job's)."""
    from img2img.errors import UsageError
    from img2img.train.config import TrainConfig
    from img2img.train.run_folder import load_run_config, read_config_file

    if resume is not None:
        if config_file is not None:
            raise UsageError("--resume takes the run's own config; --config cannot be used with it")
        return load_run_config(resume, config_cls, given, world_size=world_size)
    data = read_config_file(config_file) if config_file is not None else {}
    data.update(given)
    if not data.get("data"):
        raise UsageError("missing option --data DIR (the training images), or --resume RUN_DIR")
    config = config_cls.from_dict(data)
    assert isinstance(config, TrainConfig)
    return config


def command_line(ctx: typer.Context) -> list[str]:
    """``train TASK`` and the options given on the command line, as given (without --nproc)."""
    args = ["train", ctx.info_name or ""]
    for param in ctx.command.params:
        if param.name in (None, "nproc") or not getattr(param, "opts", None) or param.param_type_name != "option":
            continue
        source = ctx.get_parameter_source(param.name)
        if getattr(source, "name", None) not in ("COMMANDLINE", "ENVIRONMENT"):
            continue
        value = ctx.params.get(param.name)
        if getattr(param, "is_flag", False):
            if param.secondary_opts:
                args.append(param.opts[0] if value else param.secondary_opts[0])
            elif value:
                args.append(param.opts[0])
            continue
        if value is None:
            continue
        args += [param.opts[0], str(value.value if isinstance(value, Enum) else value)]
    return args


def hand_over(ctx: typer.Context, nproc: int, config: Any) -> None:
    """``--nproc N``: train in N processes on this machine through torchrun (which then runs
    this command without --nproc in each); returns only for N = 1 (this process trains)."""
    from img2img.errors import UsageError
    from img2img.train import distributed
    from img2img.train.run_folder import default_run_dir

    if distributed.under_torchrun():
        raise UsageError(
            f"--nproc {nproc}: this process was already started by torchrun "
            f"(WORLD_SIZE={distributed.env_world_size()}); give the process count to torchrun only"
        )
    if nproc == 1:
        return
    run_dir = config.out or str(default_run_dir(config))
    code = distributed.launch_local(
        nproc, command_line(ctx), device_option=config.device, task=config.task, run_dir=run_dir
    )
    raise typer.Exit(code)


# --- the options every trainer shares (its config's TrainConfig fields) ---------------------------

OutOpt = Annotated[
    Optional[Path],
    typer.Option("--out", help="Run folder (default: runs/<data folder name>_<task>).", rich_help_panel=RUN),
]
ResumeOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--resume",
        metavar="RUN_DIR",
        help="Continue a stopped run from its latest checkpoint, with its own config.",
        rich_help_panel=RUN,
    ),
]
ConfigFileOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--config", metavar="FILE", help="Start from a config.json (options given here win).", rich_help_panel=RUN
    ),
]
OverwriteOpt = Annotated[
    bool, overwrite_option("Train into a run folder that is not empty, replacing its run.", panel=RUN)
]
SkipExistingOpt = Annotated[
    bool,
    skip_existing_option(
        "When --out holds a finished run, keep it and exit 0 (scripts that are run again train only what is missing).",
        panel=RUN,
    ),
]
DirectionOpt = Annotated[
    Direction, typer.Option("--direction", help="Translate A to B or B to A.", rich_help_panel=DATA)
]
InputNcOpt = Annotated[
    int, typer.Option("--input-nc", help="Input channels: 1 (grayscale) or 3 (RGB).", rich_help_panel=DATA)
]
OutputNcOpt = Annotated[int, typer.Option("--output-nc", help="Output channels: 1 or 3.", rich_help_panel=DATA)]
PreprocessOpt = Annotated[
    PreprocessChoice, typer.Option("--preprocess", help="How images are scaled and cropped.", rich_help_panel=DATA)
]
LoadSizeOpt = Annotated[int, typer.Option("--load-size", help="Scale images to this size.", rich_help_panel=DATA)]
CropSizeOpt = Annotated[int, typer.Option("--crop-size", help="Then crop to this size.", rich_help_panel=DATA)]
NoFlipOpt = Annotated[
    bool, typer.Option("--no-flip", help="Do not flip images horizontally at random.", rich_help_panel=DATA)
]
CheckDataOpt = Annotated[
    CheckData,
    typer.Option(
        "--check-data",
        help="Before training: read every image's header (fast), or decode every image (full: finds truncated files; slow on large datasets).",
        rich_help_panel=DATA,
    ),
]
SerialBatchesOpt = Annotated[
    bool,
    typer.Option(
        "--serial-batches",
        help="Take images in order instead of shuffled (unpaired data: B paired with A by index, not drawn at random).",
        rich_help_panel=DATA,
    ),
]
NetGOpt = Annotated[
    str,
    typer.Option(
        "--netg",
        help="Generator: unet_256, unet_128, resnet_9blocks, resnet_6blocks (unet_N, resnet_Nblocks).",
        rich_help_panel=NETS,
    ),
]
NgfOpt = Annotated[int, typer.Option("--ngf", help="Generator filters in the last conv layer.", rich_help_panel=NETS)]
NetDOpt = Annotated[
    NetD, typer.Option("--netd", help="Discriminator: basic (70x70 PatchGAN), n_layers, pixel.", rich_help_panel=NETS)
]
NLayersDOpt = Annotated[
    int, typer.Option("--n-layers-d", help="Layers of an n_layers discriminator.", rich_help_panel=NETS)
]
NdfOpt = Annotated[
    int, typer.Option("--ndf", help="Discriminator filters in the first conv layer.", rich_help_panel=NETS)
]
NormOpt = Annotated[Norm, typer.Option("--norm", help="Normalisation layers.", rich_help_panel=NETS)]
DropoutOpt = Annotated[
    bool, typer.Option("--dropout/--no-dropout", help="Dropout in the generator.", rich_help_panel=NETS)
]
InitTypeOpt = Annotated[InitType, typer.Option("--init-type", help="Weight initialisation.", rich_help_panel=NETS)]
InitGainOpt = Annotated[float, typer.Option("--init-gain", help="Scale of the initial weights.", rich_help_panel=NETS)]
GanModeOpt = Annotated[
    GanMode, typer.Option("--gan-mode", help="GAN objective (wgangp adds a gradient penalty).", rich_help_panel=OPTIM)
]
LambdaGpOpt = Annotated[
    float, typer.Option("--lambda-gp", help="Weight of the wgangp gradient penalty.", rich_help_panel=OPTIM)
]
LrOpt = Annotated[float, typer.Option("--lr", help="Adam's initial learning rate.", rich_help_panel=OPTIM)]
Beta1Opt = Annotated[float, typer.Option("--beta1", help="Adam's beta1.", rich_help_panel=OPTIM)]
Beta2Opt = Annotated[float, typer.Option("--beta2", help="Adam's beta2.", rich_help_panel=OPTIM)]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", help="Images per iteration.", rich_help_panel=OPTIM)]
NEpochsOpt = Annotated[
    int, typer.Option("--n-epochs", help="Epochs at the initial learning rate.", rich_help_panel=OPTIM)
]
NEpochsDecayOpt = Annotated[
    int, typer.Option("--n-epochs-decay", help="Epochs to decay the rate to zero.", rich_help_panel=OPTIM)
]
LrPolicyOpt = Annotated[LrPolicy, typer.Option("--lr-policy", help="Learning-rate schedule.", rich_help_panel=OPTIM)]
LrDecayItersOpt = Annotated[
    int, typer.Option("--lr-decay-iters", help="step policy: x0.1 every this many epochs.", rich_help_panel=OPTIM)
]
SeedOpt = Annotated[
    Optional[int],
    typer.Option("--seed", help="Random seed (default: random, written to config.json).", rich_help_panel=OPTIM),
]
PrintFreqOpt = Annotated[
    int, typer.Option("--print-freq", help="Iterations between log lines and metrics.csv rows.", rich_help_panel=RUN)
]
SaveEpochFreqOpt = Annotated[
    int, typer.Option("--save-epoch-freq", help="Keep a checkpoint every this many epochs.", rich_help_panel=RUN)
]
SaveLatestFreqOpt = Annotated[
    int,
    typer.Option(
        "--save-latest-freq",
        help="Write the latest checkpoint every this many iterations (and at every epoch end).",
        rich_help_panel=RUN,
    ),
]
ValSizeOpt = Annotated[
    int, typer.Option("--val-size", help="Validation images scored per epoch (0: none).", rich_help_panel=RUN)
]
NSamplesOpt = Annotated[
    int, typer.Option("--n-samples", help="Validation images in each samples/epoch_NNN.png.", rich_help_panel=RUN)
]
TensorboardOpt = Annotated[
    bool,
    typer.Option(
        "--tensorboard", help="Also write TensorBoard event files (needs the tensorboard package).", rich_help_panel=RUN
    ),
]
ValMetricsOpt = Annotated[
    str,
    typer.Option(
        "--val-metrics",
        help="Scores on the validation split every --val-freq epochs, e.g. fid,kid (pix2pix also psnr,ssim,lpips; needs img2img[eval]).",
        rich_help_panel=RUN,
    ),
]
ValFreqOpt = Annotated[
    int, typer.Option("--val-freq", help="Epochs between --val-metrics scores.", rich_help_panel=RUN)
]
KeepBestOpt = Annotated[
    Optional[str],
    typer.Option(
        "--keep-best",
        metavar="METRIC",
        help="Keep the checkpoint and weights of the best epoch by this --val-metrics score (weights/best_*.safetensors).",
        rich_help_panel=RUN,
    ),
]
InceptionWeightsOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--inception-weights",
        help="The FID Inception weights file for --val-metrics (see img2img eval).",
        rich_help_panel=RUN,
    ),
]
LpipsWeightsOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--lpips-weights", help="The LPIPS AlexNet weights file for --val-metrics lpips.", rich_help_panel=RUN
    ),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.", rich_help_panel=SPEED)]
NumWorkersOpt = Annotated[
    Optional[int],
    typer.Option(
        "--num-workers",
        help="DataLoader workers (default: 0 on the CPU, cores-1 (max 8) with CUDA).",
        rich_help_panel=SPEED,
    ),
]
AmpOpt = Annotated[
    Optional[bool],
    typer.Option(
        "--amp/--no-amp",
        help="Mixed precision, see --amp-dtype (default: bf16 on a CPU with native bf16, else off).",
        show_default=False,
        rich_help_panel=SPEED,
    ),
]
AmpDtypeOpt = Annotated[
    AmpDtype,
    typer.Option(
        "--amp-dtype", help="bf16 (CPU or CUDA) or fp16 with a gradient scaler (CUDA).", rich_help_panel=SPEED
    ),
]
ChannelsLastOpt = Annotated[
    Optional[bool],
    typer.Option(
        "--channels-last/--no-channels-last",
        help="Channels-last memory layout (default: on for the CPU, except with a ResNet generator, where it is slower).",
        show_default=False,
        rich_help_panel=SPEED,
    ),
]
CompileOpt = Annotated[
    bool, typer.Option("--compile", help="torch.compile the networks (slow start).", rich_help_panel=SPEED)
]
SyncBnOpt = Annotated[
    bool,
    typer.Option(
        "--sync-bn",
        help="With several processes: batch norm statistics over the global batch (SyncBatchNorm; CUDA only).",
        rich_help_panel=SPEED,
    ),
]
NprocOpt = Annotated[
    Optional[int],
    typer.Option(
        "--nproc",
        min=1,
        metavar="N",
        help="Train in N processes on this machine, one per GPU (hands over to torchrun; --batch-size is per process). Several machines: torchrun (docs/distributed.md).",
        show_default=False,
        rich_help_panel=SPEED,
    ),
]


def kept_finished_run(config: Any, *, resume: Optional[Path], overwrite: bool, skip_existing: bool) -> bool:
    """--skip-existing: True (said on stderr) when the run folder holds a finished run, which is
    kept; a UsageError when it holds an unfinished one (continued with --resume, not skipped)."""
    check_existing_options(overwrite, skip_existing)
    if not skip_existing:
        return False
    from img2img.errors import UsageError
    from img2img.files.run_status import read_status
    from img2img.train.run_folder import RunFolder, default_run_dir

    if resume is not None:
        raise UsageError("--skip-existing is for new runs (--out); --resume continues a run")
    run = RunFolder(config.out or default_run_dir(config))
    record = read_status(run.root)
    if record is not None and record["state"] == "finished":
        typer.echo(f"kept {run.root}: it holds a finished run (--skip-existing)", err=True)
        return True
    if run.has_checkpoint():
        raise UsageError(f"--out {run.root}: holds an unfinished run; continue it with --resume {run.root}")
    return False


def use_max_pixels(max_pixels: Optional[int]) -> None:
    """--max-pixels: the limit of every image reader of the run, loader workers and ranks included."""
    if max_pixels is not None:
        from img2img.files.imageio import use_max_pixels as use

        use(max_pixels)


# --- the commands: each lists the shared options with its config's defaults, then its own ----------


@train_app.command("pix2pix")
def pix2pix(
    ctx: typer.Context,
    data: Annotated[
        Optional[Path],
        typer.Option(
            "--data",
            help="Dataset folder: DIR/train/*.jpg with A|B side by side, or DIR/train/A + DIR/train/B "
            "paired by name (and DIR/val likewise).",
            rich_help_panel=DATA,
        ),
    ] = None,
    out: OutOpt = None,
    resume: ResumeOpt = None,
    config_file: ConfigFileOpt = None,
    overwrite: OverwriteOpt = False,
    skip_existing: SkipExistingOpt = False,
    direction: DirectionOpt = Direction.AtoB,
    input_nc: InputNcOpt = 3,
    output_nc: OutputNcOpt = 3,
    preprocess: PreprocessOpt = PreprocessChoice.resize_and_crop,
    load_size: LoadSizeOpt = 286,
    crop_size: CropSizeOpt = 256,
    no_flip: NoFlipOpt = False,
    serial_batches: SerialBatchesOpt = False,
    check_data: CheckDataOpt = CheckData.header,
    netg: NetGOpt = "unet_256",
    ngf: NgfOpt = 64,
    netd: NetDOpt = NetD.basic,
    n_layers_d: NLayersDOpt = 3,
    ndf: NdfOpt = 64,
    norm: NormOpt = Norm.batch,
    dropout: DropoutOpt = True,
    init_type: InitTypeOpt = InitType.normal,
    init_gain: InitGainOpt = 0.02,
    gan_mode: GanModeOpt = GanMode.vanilla,
    lambda_l1: Annotated[
        float, typer.Option("--lambda-l1", help="Weight of the L1 loss.", rich_help_panel=OPTIM)
    ] = 100.0,
    lambda_gp: LambdaGpOpt = 10.0,
    lr: LrOpt = 2e-4,
    beta1: Beta1Opt = 0.5,
    beta2: Beta2Opt = 0.999,
    batch_size: BatchSizeOpt = 1,
    n_epochs: NEpochsOpt = 100,
    n_epochs_decay: NEpochsDecayOpt = 100,
    lr_policy: LrPolicyOpt = LrPolicy.linear,
    lr_decay_iters: LrDecayItersOpt = 50,
    seed: SeedOpt = None,
    print_freq: PrintFreqOpt = 100,
    save_epoch_freq: SaveEpochFreqOpt = 5,
    save_latest_freq: SaveLatestFreqOpt = 5000,
    val_size: ValSizeOpt = 50,
    n_samples: NSamplesOpt = 4,
    tensorboard: TensorboardOpt = False,
    val_metrics: ValMetricsOpt = "",
    val_freq: ValFreqOpt = 1,
    keep_best: KeepBestOpt = None,
    inception_weights: InceptionWeightsOpt = None,
    lpips_weights: LpipsWeightsOpt = None,
    device: DeviceOpt = "auto",
    num_workers: NumWorkersOpt = None,
    amp: AmpOpt = None,
    amp_dtype: AmpDtypeOpt = AmpDtype.bf16,
    channels_last: ChannelsLastOpt = None,
    compile: CompileOpt = False,
    sync_bn: SyncBnOpt = False,
    nproc: NprocOpt = None,
    max_pixels: MaxPixelsOpt = None,
) -> None:
    """Train pix2pix on paired images (the reference's options and defaults)."""
    from img2img.train.config import Pix2PixConfig
    from img2img.train.pix2pix import train_pix2pix

    given = given_options(ctx, dict(locals()))
    use_max_pixels(max_pixels)
    config = build_config(Pix2PixConfig, given, resume=resume, config_file=config_file, world_size=nproc)
    if kept_finished_run(config, resume=resume, overwrite=overwrite, skip_existing=skip_existing):
        return
    if nproc is not None:
        hand_over(ctx, nproc, config)
    train_pix2pix(config, resume=resume is not None, overwrite=overwrite)


@train_app.command("cyclegan")
def cyclegan(
    ctx: typer.Context,
    data: Annotated[
        Optional[Path],
        typer.Option(
            "--data",
            help="Dataset folder: DIR/trainA and DIR/trainB, each domain's images (unpaired, any "
            "number); DIR/testA + DIR/testB for validation.",
            rich_help_panel=DATA,
        ),
    ] = None,
    out: OutOpt = None,
    resume: ResumeOpt = None,
    config_file: ConfigFileOpt = None,
    overwrite: OverwriteOpt = False,
    skip_existing: SkipExistingOpt = False,
    direction: DirectionOpt = Direction.AtoB,
    input_nc: InputNcOpt = 3,
    output_nc: OutputNcOpt = 3,
    preprocess: PreprocessOpt = PreprocessChoice.resize_and_crop,
    load_size: LoadSizeOpt = 286,
    crop_size: CropSizeOpt = 256,
    no_flip: NoFlipOpt = False,
    serial_batches: SerialBatchesOpt = False,
    check_data: CheckDataOpt = CheckData.header,
    netg: NetGOpt = "resnet_9blocks",
    ngf: NgfOpt = 64,
    netd: NetDOpt = NetD.basic,
    n_layers_d: NLayersDOpt = 3,
    ndf: NdfOpt = 64,
    norm: NormOpt = Norm.instance,
    dropout: DropoutOpt = False,
    init_type: InitTypeOpt = InitType.normal,
    init_gain: InitGainOpt = 0.02,
    gan_mode: GanModeOpt = GanMode.lsgan,
    lambda_a: Annotated[
        float, typer.Option("--lambda-a", help="Weight of the cycle loss A -> B -> A.", rich_help_panel=OPTIM)
    ] = 10.0,
    lambda_b: Annotated[
        float, typer.Option("--lambda-b", help="Weight of the cycle loss B -> A -> B.", rich_help_panel=OPTIM)
    ] = 10.0,
    lambda_identity: Annotated[
        float,
        typer.Option(
            "--lambda-identity",
            help="Weight of the identity loss |G_A(B) - B| (and |G_B(A) - A|), as a fraction of "
            "--lambda-b (--lambda-a); needs --input-nc = --output-nc (0: off).",
            rich_help_panel=OPTIM,
        ),
    ] = 0.5,
    pool_size: Annotated[
        int,
        typer.Option(
            "--pool-size",
            help="Generated images kept for each discriminator to draw from (0: none).",
            rich_help_panel=OPTIM,
        ),
    ] = 50,
    lambda_gp: LambdaGpOpt = 10.0,
    lr: LrOpt = 2e-4,
    beta1: Beta1Opt = 0.5,
    beta2: Beta2Opt = 0.999,
    batch_size: BatchSizeOpt = 1,
    n_epochs: NEpochsOpt = 100,
    n_epochs_decay: NEpochsDecayOpt = 100,
    lr_policy: LrPolicyOpt = LrPolicy.linear,
    lr_decay_iters: LrDecayItersOpt = 50,
    seed: SeedOpt = None,
    print_freq: PrintFreqOpt = 100,
    save_epoch_freq: SaveEpochFreqOpt = 5,
    save_latest_freq: SaveLatestFreqOpt = 5000,
    val_size: ValSizeOpt = 50,
    n_samples: NSamplesOpt = 4,
    tensorboard: TensorboardOpt = False,
    val_metrics: ValMetricsOpt = "",
    val_freq: ValFreqOpt = 1,
    keep_best: KeepBestOpt = None,
    inception_weights: InceptionWeightsOpt = None,
    lpips_weights: LpipsWeightsOpt = None,
    device: DeviceOpt = "auto",
    num_workers: NumWorkersOpt = None,
    amp: AmpOpt = None,
    amp_dtype: AmpDtypeOpt = AmpDtype.bf16,
    channels_last: ChannelsLastOpt = None,
    compile: CompileOpt = False,
    sync_bn: SyncBnOpt = False,
    nproc: NprocOpt = None,
    max_pixels: MaxPixelsOpt = None,
) -> None:
    """Train CycleGAN on two folders of unpaired images (the reference's options and defaults);
    exports a weights file for each direction."""
    from img2img.train.config import CycleGANConfig
    from img2img.train.cyclegan import train_cyclegan

    given = given_options(ctx, dict(locals()))
    use_max_pixels(max_pixels)
    config = build_config(CycleGANConfig, given, resume=resume, config_file=config_file, world_size=nproc)
    if kept_finished_run(config, resume=resume, overwrite=overwrite, skip_existing=skip_existing):
        return
    if nproc is not None:
        hand_over(ctx, nproc, config)
    train_cyclegan(config, resume=resume is not None, overwrite=overwrite)
