"""Reading a generator's architecture from its tensors' names and shapes.

A pytorch-CycleGAN-and-pix2pix (https://github.com/junyanz/pytorch-CycleGAN-and-pix2pix,
``models/networks.py``) generator state dict says almost everything about the network that made
it, and ``img2img.models.networks`` keeps the same key names:

ResNet (``ResnetGenerator``; resnet_6blocks, resnet_9blocks)
    ``model.1.weight`` is the 7x7 stem, shape (ngf, input_nc, 7, 7); ``model.K.conv_block.*``
    for K = 10 ... 10+n_blocks-1 are the residual blocks; the last conv (ngf -> output_nc, 7x7)
    is ``model.{17+n_blocks}``. Inside a block the second conv is ``conv_block.5`` (reflect or
    replicate padding), ``conv_block.6`` with dropout (the Dropout layer shifts it),
    ``conv_block.3`` / ``.4`` with zero padding (no padding layer before each conv).
U-Net (``UnetGenerator``; unet_128, unet_256)
    nested blocks ``model.model.1.model.3.model.3...``: one level per halving, so the depth is
    ``num_downs``; ``model.model.0.weight`` is (ngf, input_nc, 4, 4) and ``model.model.3.weight``
    (a transposed conv) is (2 ngf, output_nc, 4, 4). Dropout sits at the end of a level, so it
    moves no key: it cannot be read (nor does it matter at inference).
Normalisation
    batch norm has weight, bias and running statistics; instance norm (the reference's, without
    affine parameters) has none, but its convs have biases; "none" has neither norm tensors nor
    conv biases.
Reflect and replicate padding have no tensors, so they cannot be told apart (reflect is the
reference's only choice).

Everything works on shapes alone, so a safetensors header is checked before any tensor is read
and any network is built. Nothing here imports torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

from img2img.errors import Img2ImgError, WeightsError
from img2img.models.config import GENERATOR_LIMITS, GeneratorConfig

Shapes = Mapping[str, Sequence[int]]

#: ResNet block layouts: indices of the two convs inside ``conv_block`` -> (padding, dropout).
_RESNET_BLOCK_LAYOUTS = {
    (1, 5): ("reflect", False),
    (1, 6): ("reflect", True),
    (0, 3): ("zero", False),
    (0, 4): ("zero", True),
}
_BLOCK_KEY = re.compile(r"model\.(\d+)\.conv_block\.(\d+)\.(\w+)")
_STATS = ("running_mean", "running_var", "num_batches_tracked")


@dataclass(frozen=True)
class InferredGenerator:
    """What a state dict's keys and shapes say about its generator.

    ``config`` is a complete GeneratorConfig; the fields named in ``undecided`` could not be read
    from the tensors (they hold the reference's defaults until a caller sets them)."""

    config: GeneratorConfig
    undecided: frozenset[str] = field(default_factory=frozenset)

    def describe(self) -> str:
        """E.g. ``resnet_9blocks (ngf 64, instance norm, 3->3 channels, no dropout)``."""
        return describe_config(self.config, self.undecided)


def describe_config(config: GeneratorConfig, undecided: frozenset[str] | set[str] = frozenset()) -> str:
    """A one-line description of a generator config, leaving out what is ``undecided``."""
    parts = [f"ngf {config.ngf}", f"{config.norm} norm", f"{config.input_nc}->{config.output_nc} channels"]
    if "use_dropout" not in undecided:
        parts.append("dropout" if config.use_dropout else "no dropout")
    if config.arch == "resnet" and config.padding_type == "zero":
        parts.append("zero padding")
    return f"{config.reference_name} ({', '.join(parts)})"


def strip_prefixes(keys: Shapes) -> dict[str, Sequence[int]]:
    """Drop the ``module.`` prefixes DataParallel / DistributedDataParallel add."""
    stripped = {}
    for key, value in keys.items():
        while key.startswith("module."):
            key = key[len("module.") :]
        stripped[key] = value
    return stripped


def infer_generator(shapes: Shapes, path: object) -> InferredGenerator:
    """The generator architecture that a state dict with these keys and shapes was saved from.

    ``shapes`` maps tensor names (reference key names, ``module.`` prefixes allowed) to shapes.
    Raises WeightsError naming ``path`` and saying what the tensors are instead (a
    discriminator, another kind of network) when they are not a reference generator."""
    shapes = strip_prefixes(shapes)
    try:
        if "model.model.0.weight" in shapes:
            return _infer_unet(shapes)
        if "model.1.weight" in shapes and _kernel(shapes["model.1.weight"]) == 7:
            return _infer_resnet(shapes)
    except _NotAGenerator as exc:
        raise WeightsError(f"{path}: not a pix2pix/CycleGAN generator state dict ({exc})") from None
    except Img2ImgError as exc:  # a config the tensors imply but img2img refuses (ranges)
        raise WeightsError(f"{path}: the tensors describe an unsupported generator ({exc.message})") from None
    raise WeightsError(f"{path}: {what_state_dict_is(shapes)}")


def what_state_dict_is(shapes: Shapes) -> str:
    """A sentence saying what a state dict that is not a reference generator looks like."""
    shapes = strip_prefixes(shapes)
    if not shapes:
        return "an empty state dict (no tensors)"
    if "model.0.weight" in shapes and _kernel(shapes["model.0.weight"]) == 4:
        return (
            "a PatchGAN discriminator (the reference's latest_net_D*.pth), not a generator; "
            "use the generator file (latest_net_G.pth, latest_net_G_A.pth or latest_net_G_B.pth)"
        )
    if "net.0.weight" in shapes and _kernel(shapes["net.0.weight"]) == 1:
        return (
            "a PixelGAN discriminator (the reference's latest_net_D*.pth), not a generator; "
            "use the generator file (latest_net_G.pth, latest_net_G_A.pth or latest_net_G_B.pth)"
        )
    examples = ", ".join(sorted(shapes)[:3])
    return (
        f"not a pix2pix/CycleGAN generator state dict: its {len(shapes)} tensors ({examples}, ...) "
        "have neither the ResNet (model.1.weight, 7x7) nor the U-Net (model.model.0.weight) layout"
    )


def what_object_is(obj: Any) -> str:
    """A sentence saying what a loaded checkpoint object that is not a flat mapping of tensors
    is: an optimizer state, a training checkpoint dict, a list..."""
    if not isinstance(obj, Mapping):
        return f"not a state dict (it holds a {type(obj).__name__}, not a mapping of names to tensors)"
    keys = [str(key) for key in obj]
    if {"state", "param_groups"} <= set(keys):
        return "an optimizer state (state, param_groups), not a generator's weights"
    nested = [str(key) for key, value in obj.items() if isinstance(value, Mapping)]
    shown = ", ".join(keys[:6]) + (", ..." if len(keys) > 6 else "")
    if nested:
        candidates = [
            str(key) for key, value in obj.items()
            if isinstance(value, Mapping) and _looks_like_generator(value)
        ]  # fmt: skip
        hint = (
            f"; its {candidates[0]!r} entry looks like a generator: save that alone "
            f"(torch.save(checkpoint[{candidates[0]!r}], 'G.pth')) and use that file"
            if candidates
            else "; save the generator's state_dict() alone and use that file"
        )
        return f"a training checkpoint (a dict of {shown}), not a generator state dict{hint}"
    return f"not a state dict of tensors (a dict of {shown})"


def _looks_like_generator(value: Mapping[Any, Any]) -> bool:
    if not all(isinstance(key, str) and hasattr(item, "shape") for key, item in value.items()):
        return False
    shapes = strip_prefixes({key: tuple(item.shape) for key, item in value.items()})
    return "model.model.0.weight" in shapes or "model.1.weight" in shapes


def check_declared(
    declared: GeneratorConfig,
    inferred: InferredGenerator,
    path: object,
    *,
    declared_by: str = "its metadata declares",
) -> None:
    """Raise a WeightsError when the architecture a file declares is not the one its tensors
    hold (fields the tensors cannot decide are not compared)."""
    differences = config_differences(declared, inferred)
    if differences:
        raise WeightsError(
            f"{path}: {declared_by} {describe_config(declared, inferred.undecided)} but its "
            f"tensors hold {inferred.describe()} ({'; '.join(differences)})"
        )


def config_differences(declared: GeneratorConfig, inferred: InferredGenerator) -> list[str]:
    """'field: declared X, tensors Y' for each decidable field that differs."""
    actual = inferred.config
    names = ["arch", "input_nc", "output_nc", "ngf", "norm"]
    if actual.arch == declared.arch:
        names += ["n_blocks"] if actual.arch == "resnet" else ["num_downs"]
    if "use_dropout" not in inferred.undecided:
        names.append("use_dropout")
    differences = [
        f"{name}: {getattr(declared, name)} vs {getattr(actual, name)}"
        for name in names
        if getattr(declared, name) != getattr(actual, name)
    ]
    if (
        _padding_decidable(actual)
        and declared.arch == "resnet"
        and (declared.padding_type == "zero") != (actual.padding_type == "zero")
    ):
        differences.append(f"padding_type: {declared.padding_type} vs {actual.padding_type}")
    return differences


def with_options(inferred: InferredGenerator, options: Mapping[str, Any], path: object) -> InferredGenerator:
    """Apply architecture options a user gave (``GeneratorConfig`` field names; None = not
    given): they may set what the tensors cannot decide, and must agree with the rest.

    Raises WeightsError naming what the checkpoint holds when an option contradicts it."""
    given = {key: value for key, value in options.items() if value is not None}
    undecided = set(inferred.undecided)
    config = inferred.config
    settable = {}
    for key in list(given):
        if key in undecided and (
            key != "padding_type"
            or not _padding_decidable(config)
            or (config.padding_type != "zero") == (given[key] != "zero")
        ):
            settable[key] = given.pop(key)
            undecided.discard(key)
    try:
        wanted = replace(config, **given)
    except Img2ImgError as exc:
        raise WeightsError(f"{path}: {exc.message}") from None
    differences = config_differences(wanted, inferred)
    if differences:
        contradictions = _contradictions(wanted, config, [d.split(":")[0] for d in differences])
        raise WeightsError(
            f"{path}: the checkpoint holds {inferred.describe()}; {'; '.join(contradictions)}",
            hint="leave the architecture options out: they are read from the checkpoint",
        )
    return InferredGenerator(replace(config, **settable), frozenset(undecided))


def _contradictions(wanted: GeneratorConfig, actual: GeneratorConfig, fields: list[str]) -> list[str]:
    """'--norm instance given, the checkpoint has batch norm' for each differing field, in the
    command line's terms."""
    said = []
    if {"arch", "n_blocks", "num_downs"} & set(fields):
        said.append(f"--arch {wanted.reference_name} given, the checkpoint is {actual.reference_name}")
    for name in ("ngf", "input_nc", "output_nc"):
        if name in fields:
            flag = "--" + name.replace("_", "-")
            said.append(f"{flag} {getattr(wanted, name)} given, the checkpoint has {getattr(actual, name)}")
    if "norm" in fields:
        said.append(f"--norm {wanted.norm} given, the checkpoint has {actual.norm} norm")
    if "use_dropout" in fields:
        said.append(
            "--dropout given, the checkpoint has no dropout layers"
            if wanted.use_dropout
            else "--no-dropout given, the checkpoint has dropout layers (they move its keys)"
        )
    if "padding_type" in fields:
        said.append(
            f"--padding-type {wanted.padding_type} given, the checkpoint's residual blocks have "
            f"{'zero' if actual.padding_type == 'zero' else 'reflect or replicate'} padding"
        )
    return said


def _padding_decidable(config: GeneratorConfig) -> bool:
    """Whether the tensors say zero padding or not (they never tell reflect from replicate):
    only residual blocks have padding that moves their keys."""
    return config.arch == "resnet" and config.n_blocks > 0


# --- the two families ---------------------------------------------------------------------------


class _NotAGenerator(Exception):
    pass


def _kernel(shape: Sequence[int]) -> int | None:
    return int(shape[-1]) if len(shape) == 4 and shape[-1] == shape[-2] else None


def _norm_of(shapes: Shapes, norm_prefix: str, conv_key: str) -> str:
    """batch (norm weights and running stats), instance (conv bias only) or none (neither).

    Instance norms saved by PyTorch < 0.4 carry running statistics but never a weight, so the
    weight, not the statistics, tells batch norm apart."""
    if f"{norm_prefix}.weight" in shapes:
        if f"{norm_prefix}.running_mean" in shapes:
            return "batch"
        raise _NotAGenerator(
            f"{norm_prefix} has affine parameters but no running statistics: an instance norm "
            "with affine=True, which the reference never builds"
        )
    return "instance" if f"{conv_key}.bias" in shapes else "none"


def _shape(shapes: Shapes, key: str, ndim: int = 4) -> tuple[int, ...]:
    if key not in shapes:
        raise _NotAGenerator(f"{key} is missing")
    shape = tuple(int(dim) for dim in shapes[key])
    if len(shape) != ndim:
        raise _NotAGenerator(f"{key} has shape {shape}, expected {ndim} dimensions")
    return shape


def _infer_resnet(shapes: Shapes) -> InferredGenerator:
    stem = _shape(shapes, "model.1.weight")
    ngf, input_nc = stem[0], stem[1]
    norm = _norm_of(shapes, "model.2", "model.1")
    blocks: dict[int, set[int]] = {}
    for key in shapes:
        if match := _BLOCK_KEY.fullmatch(key):
            if match[3] == "weight" and len(shapes[key]) == 4:
                blocks.setdefault(int(match[1]), set()).add(int(match[2]))
            else:
                blocks.setdefault(int(match[1]), set())
    n_blocks = len(blocks)
    if sorted(blocks) != list(range(10, 10 + n_blocks)):
        raise _NotAGenerator(f"residual blocks at model.{sorted(blocks)} are not model.10, model.11, ...")
    layouts = {tuple(sorted(convs)) for convs in blocks.values()}
    if len(layouts) > 1:
        raise _NotAGenerator(f"residual blocks differ in layout (convs at {sorted(layouts)})")
    undecided = {"padding_type"}
    padding, dropout = "reflect", False
    if layouts:
        layout = layouts.pop()
        if layout not in _RESNET_BLOCK_LAYOUTS:
            raise _NotAGenerator(f"residual blocks have convs at conv_block.{list(layout)}")
        padding, dropout = _RESNET_BLOCK_LAYOUTS[layout]
        if padding == "zero":
            undecided.discard("padding_type")
    else:
        undecided |= {"use_dropout", "padding_type"}
    last = 17 + n_blocks
    head = _shape(shapes, f"model.{last}.weight")
    if head[1] != ngf or _kernel(head) != 7:
        raise _NotAGenerator(f"model.{last}.weight has shape {head}, expected (output_nc, {ngf}, 7, 7)")
    config = GeneratorConfig(
        arch="resnet", input_nc=input_nc, output_nc=head[0], ngf=ngf, norm=norm,
        use_dropout=dropout, n_blocks=n_blocks, padding_type=padding,
    )  # fmt: skip
    return InferredGenerator(config, frozenset(undecided))


def _infer_unet(shapes: Shapes) -> InferredGenerator:
    stem = _shape(shapes, "model.model.0.weight")
    ngf, input_nc = stem[0], stem[1]
    head = _shape(shapes, "model.model.3.weight")  # ConvTranspose2d: (in, out, k, k)
    if head[0] != 2 * ngf:
        raise _NotAGenerator(f"model.model.3.weight has shape {head}, expected ({2 * ngf}, output_nc, 4, 4)")
    # The outermost level's inner block is model.1; every other level's is model.3.
    prefix, depth = "model.model.1.", 1
    deepest = GENERATOR_LIMITS["num_downs"][1]
    while f"{prefix}model.1.weight" in shapes:
        depth += 1
        if depth > deepest:  # stop before walking a hostile file's thousands of levels
            raise _NotAGenerator(f"a U-Net deeper than {deepest} levels (num_downs)")
        inner = f"{prefix}model.3."
        if not any(key.startswith(f"{inner}model.") for key in shapes):
            break  # innermost: model.3 is its up-convolution
        prefix = inner
    if depth < 2:
        raise _NotAGenerator("no inner U-Net levels (model.model.1.model.1.weight is missing)")
    norm = _norm_of(shapes, "model.model.1.model.2", "model.model.0")
    config = GeneratorConfig(
        arch="unet", input_nc=input_nc, output_nc=head[1], ngf=ngf, norm=norm,
        use_dropout=True, num_downs=depth,
    )  # fmt: skip
    return InferredGenerator(config, frozenset({"use_dropout"}))


__all__ = [
    "InferredGenerator",
    "check_declared",
    "config_differences",
    "describe_config",
    "infer_generator",
    "strip_prefixes",
    "what_object_is",
    "what_state_dict_is",
    "with_options",
]
