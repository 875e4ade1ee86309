"""How ``--help`` reads: commands in the order a user meets them, every command's help on one
screen (about 40 lines at 100 columns), and a last line naming the docs page that explains the rest.

Only the help output is shaped here; options, names, defaults and parsing are the commands' own.

- Typer's rich help prints a type for every option, flags included (``--overwrite <bool>``),
  where its plain help leaves flags out; ``display_type_rich`` below leaves them out too.
- A command with many options (``train pix2pix`` has 58) shows the ones most runs set in the
  usual table, and the others as one compact panel of ``--option DEFAULT`` runs grouped by
  topic (``COMPACT``); their choices and meaning are on the command's docs page (``DOCS``),
  which ``tests/test_help.py`` checks names every option.
"""

from __future__ import annotations

import inspect
import re
from contextlib import contextmanager
from enum import Enum
from typing import Any, Iterator

import click
from typer.core import TyperCommand, TyperGroup, TyperOption

# The order a user meets the commands in; commands not listed follow in their own order.
COMMAND_ORDER = ("data", "train", "translate", "eval", "export", "push", "models", "convert", "report")

# Command (its words after `img2img`) -> the docs page that explains it, relative to the repository.
DOCS = {
    "": "docs/index.md",
    "data": "docs/data.md",
    "data combine": "docs/data.md",
    "data check": "docs/data.md",
    "data list": "docs/data.md",
    "data download": "docs/data.md",
    "data prepare": "docs/data.md",
    "train": "docs/train-pix2pix.md",
    "train pix2pix": "docs/train-pix2pix.md",
    "train cyclegan": "docs/train-cyclegan.md",
    "translate": "docs/translate.md",
    "eval": "docs/eval.md",
    "export": "docs/export.md",
    "push": "docs/models.md",
    "models": "docs/models.md",
    "models list": "docs/models.md",
    "models info": "docs/models.md",
    "models pull": "docs/models.md",
    "convert": "docs/weights.md",
    "report": "docs/report.md",
}

_TRAIN_COMPACT = [
    (
        "Data",
        [
            "direction",
            "input_nc",
            "output_nc",
            "preprocess",
            "load_size",
            "crop_size",
            "no_flip",
            "serial_batches",
            "check_data",
            "max_pixels",
        ],
    ),
    ("Networks", ["netg", "ngf", "netd", "n_layers_d", "ndf", "norm", "dropout", "init_type", "init_gain"]),
    (
        "Optimisation",
        [
            "gan_mode",
            "lambda_l1",
            "lambda_a",
            "lambda_b",
            "lambda_identity",
            "pool_size",
            "lambda_gp",
            "lr",
            "beta1",
            "beta2",
            "batch_size",
            "n_epochs",
            "n_epochs_decay",
            "lr_policy",
            "lr_decay_iters",
            "seed",
        ],
    ),
    (
        "Logging and validation",
        [
            "print_freq",
            "save_epoch_freq",
            "save_latest_freq",
            "val_size",
            "n_samples",
            "tensorboard",
            "val_metrics",
            "val_freq",
            "keep_best",
            "inception_weights",
            "lpips_weights",
        ],
    ),
    ("Speed", ["num_workers", "amp", "amp_dtype", "channels_last", "compile", "sync_bn"]),
]

# Command -> (panel title, parameter names) shown compactly, in this order; every other parameter
# keeps its row in the usual table.
COMPACT: dict[str, list[tuple[str, list[str]]]] = {
    "train pix2pix": _TRAIN_COMPACT,
    "train cyclegan": _TRAIN_COMPACT,
    "translate": [
        ("Device and speed", ["precision", "engine", "batch_size", "direction"]),
        ("Large images", ["tile", "tile_overlap", "tile_stats", "max_pixels"]),
        ("Jobs and pipes", ["shard", "stdin_limit"]),
    ],
    "eval": [
        ("Weights", ["resize", "inception_weights", "lpips_weights", "no_cache"]),
        ("Running", ["save_outputs", "device", "precision", "batch_size"]),
    ],
    "export": [
        ("Check", ["check", "tolerance"]),
        ("int8", ["quantize", "calibration", "calibration_count"]),
    ],
    "convert": [
        ("Read from the checkpoint", ["arch", "ngf", "input_nc", "output_nc", "dropout", "padding_type", "eval_mode"]),
    ],
}


_display_type_rich = TyperOption.display_type_rich


def _display_type_rich_without_flags(self: TyperOption, ctx: click.Context) -> str | None:
    # A flag takes no value: no type to show (Typer's plain help does the same).
    if self.is_flag or self.count:
        return None
    return _display_type_rich(self, ctx)


TyperOption.display_type_rich = _display_type_rich_without_flags  # type: ignore[method-assign]


def _key(ctx: click.Context) -> str:
    return " ".join(ctx.command_path.split()[1:])


def _console():
    from typer import rich_utils

    return rich_utils._get_rich_console()


def _print_docs_line(ctx: click.Context) -> None:
    page = DOCS.get(_key(ctx))
    if page:
        _console().print(f" Docs: {page}", highlight=False, soft_wrap=True)


def _value(value: Any) -> str:
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def compact_item(param: Any, ctx: click.Context) -> str:
    """``--option DEFAULT`` for a compact panel: the flag alone for a flag, the metavar (or the
    type's name) when there is no default to show."""
    name = "/".join([param.opts[0], *param.secondary_opts[:1]]) if param.secondary_opts else param.opts[0]
    if param.is_flag and not param.secondary_opts:
        return name
    default = param.default
    if param.is_flag:
        return f"{name} {'auto' if default is None else _value(default)}"
    if default is None or default == "":
        shown = str(_display_type_rich(param, ctx) or "value").strip("<>")
        metavar = param.metavar or (shown if "|" in shown else shown.upper())
        return f"{name} {metavar}"
    return f"{name} {_value(default)}"


def _print_compact(ctx: click.Context, groups: list[tuple[str, list[click.Parameter]]]) -> None:
    from rich.panel import Panel
    from rich.table import Table
    from typer import rich_utils

    console = _console()
    label_width = max(len(title) for title, _ in groups) + 1
    # Lines broken between items, never inside one (an option apart from its default misleads).
    width = max(20, console.width - 4 - label_width - 2)
    table = Table.grid(padding=(0, 1), expand=True)
    table.add_column(style="bold", no_wrap=True, min_width=label_width)
    table.add_column(no_wrap=True, overflow="fold")
    for title, params in groups:
        lines = [""]
        for item in (compact_item(p, ctx) for p in params):
            if lines[-1] and len(lines[-1]) + 2 + len(item) > width:
                lines.append("")
            lines[-1] = f"{lines[-1]}  {item}" if lines[-1] else item
        table.add_row(f"{title}:", "\n".join(lines))
    console.print(
        Panel(
            table,
            border_style=rich_utils.STYLE_OPTIONS_PANEL_BORDER,
            title="More options, with their defaults (choices and meaning: the docs page)",
            title_align=rich_utils.ALIGN_OPTIONS_PANEL,
        )
    )


@contextmanager
def _paragraphs_reflowed(command: Any) -> Iterator[None]:
    """Docstrings wrapped at 100 columns in the source read as paragraphs: Typer's rich help
    keeps their single line breaks (after the first paragraph), which breaks lines mid-sentence
    at any other width."""
    text = command.help
    if text:
        command.help = re.sub(r"(?<!\n)\n(?!\n)", " ", inspect.cleandoc(text))
    try:
        yield
    finally:
        command.help = text


class HelpCommand(TyperCommand):
    """A command whose ``--help`` fits a screen (see the module's docstring)."""

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        by_name = {p.name: p for p in self.params}
        groups = [
            (
                title,
                [by_name[name] for name in names if name in by_name and not getattr(by_name[name], "hidden", False)],
            )
            for title, names in COMPACT.get(_key(ctx), [])
        ]
        groups = [(title, params) for title, params in groups if params]
        compact = [p for _, params in groups for p in params]
        # The remaining options share one table when some moved to the compact panel.
        moved = {p: getattr(p, "rich_help_panel", None) for p in self.params} if compact else {}
        for param in compact:
            param.hidden = True
        for param in moved:
            if param not in compact:
                param.rich_help_panel = None
        try:
            with _paragraphs_reflowed(self):
                super().format_help(ctx, formatter)
        finally:
            for param in compact:
                param.hidden = False
            for param, panel in moved.items():
                param.rich_help_panel = panel
        if groups:
            _print_compact(ctx, groups)
        _print_docs_line(ctx)


class HelpGroup(TyperGroup):
    """A group that lists its commands in ``COMMAND_ORDER`` and names its docs page."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = super().list_commands(ctx)
        order = {name: i for i, name in enumerate(COMMAND_ORDER)}
        return sorted(names, key=lambda name: order.get(name, len(order)))

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with _paragraphs_reflowed(self):
            super().format_help(ctx, formatter)
        _print_docs_line(ctx)


__all__ = ["COMMAND_ORDER", "COMPACT", "DOCS", "HelpCommand", "HelpGroup", "compact_item"]
