"""What the user sees while training: a rich progress bar on a terminal (plain periodic log
lines otherwise), metrics.csv, optional TensorBoard events. Everything goes to stderr; only the
main process reports."""

from __future__ import annotations

import csv
import io
import math
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence, TextIO

from img2img.errors import Img2ImgError
from img2img.files.atomic import atomic_write_bytes

METRICS_FILE = "metrics.csv"


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_losses(losses: Mapping[str, Any]) -> str:
    return " ".join(f"{name} {float(value):.3f}" for name, value in losses.items())


class Progress:
    """Iteration progress: a live bar when ``stream`` is a terminal, else a line every log
    interval. ``enabled=False`` (ranks other than the main one) shows nothing."""

    def __init__(
        self,
        *,
        total_epochs: int,
        iters_per_epoch: int,
        batch_size: int,
        stream: TextIO | None = None,
        enabled: bool = True,
        live: bool | None = None,
    ):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        is_tty = getattr(self.stream, "isatty", lambda: False)()
        self.live = enabled and (is_tty if live is None else live)
        self.total_epochs, self.iters_per_epoch = total_epochs, iters_per_epoch
        self.total_iters = total_epochs * iters_per_epoch
        self.batch_size = batch_size
        self._bar: Any = None
        self._task: Any = None
        self._start_time = time.perf_counter()
        self._start_iter = 0
        self._last_shown = 0.0

    def start(self, iteration: int) -> None:
        self._start_time, self._start_iter = time.perf_counter(), iteration
        if not self.live:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress
        from rich.table import Column

        epochs = len(str(self.total_epochs))
        iters = len(str(self.total_iters))
        self._bar = RichProgress(
            TextColumn("epoch {task.fields[epoch]}", table_column=Column(no_wrap=True, min_width=7 + 2 * epochs)),
            BarColumn(bar_width=20),
            MofNCompleteColumn(table_column=Column(no_wrap=True, min_width=1 + 2 * iters)),
            TextColumn("{task.fields[speed]}", table_column=Column(no_wrap=True, min_width=11)),
            TimeRemainingColumn(table_column=Column(no_wrap=True, min_width=7)),
            TextColumn("{task.fields[losses]}", table_column=Column(no_wrap=True)),
            console=Console(file=self.stream),
            refresh_per_second=4,
        )
        # what the losses may take on this terminal (they are cut, the rest is not)
        self._losses_width = max(0, self._bar.console.width - (7 + 2 * epochs) - 21 - (1 + 2 * iters) - 11 - 7 - 6)
        self._bar.start()
        self._task = self._bar.add_task(
            "train", total=self.total_iters, completed=iteration, epoch="-", speed="", losses=""
        )

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def images_per_second(self, iteration: int) -> float:
        elapsed = time.perf_counter() - self._start_time
        done = iteration - self._start_iter
        return done * self.batch_size / elapsed if elapsed > 0 and done > 0 else float("nan")

    def eta(self, iteration: int) -> float:
        rate = self.images_per_second(iteration) / self.batch_size
        return (self.total_iters - iteration) / rate if rate > 0 else float("nan")

    def update(self, *, epoch: int, epoch_iter: int, iteration: int, losses: Mapping[str, Any]) -> None:
        """After each iteration: refresh the bar (a few times a second) with the current losses."""
        if not self.live or self._bar is None:
            return
        now = time.perf_counter()
        if now - self._last_shown < 0.25 and epoch_iter != self.iters_per_epoch:
            return
        self._last_shown = now
        speed = self.images_per_second(iteration)
        self._bar.update(
            self._task,
            completed=iteration,
            epoch=f"{epoch + 1}/{self.total_epochs}",
            speed=f"{speed:.2f} img/s" if math.isfinite(speed) else "",
            losses=_cut(format_losses(losses), self._losses_width),
        )

    def interval(self, *, epoch: int, epoch_iter: int, iteration: int, losses: Mapping[str, float]) -> None:
        """Every log interval: a plain line with the interval's mean losses (no bar only)."""
        if not self.enabled or self.live:
            return
        self.log(
            f"epoch {epoch + 1}/{self.total_epochs} iter {epoch_iter}/{self.iters_per_epoch} "
            f"(total {iteration}) {self.images_per_second(iteration):.2f} img/s "
            f"eta {format_duration(self.eta(iteration))} {format_losses(losses)}"
        )

    def log(self, message: str) -> None:
        """A message line (above the bar when there is one)."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.console.print(message, markup=False, highlight=False)
        else:
            print(message, file=self.stream, flush=True)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


class MetricsLog:
    """metrics.csv: one row per log interval (``scope`` iter: mean losses since the last row)
    and one per epoch (``scope`` epoch: the epoch's mean losses and the validation figures)."""

    def __init__(self, path: Path, loss_names: Sequence[str], val_names: Sequence[str]):
        self.path = path
        self.columns = ["scope", "epoch", "iteration", "elapsed_s", "lr", *loss_names, *val_names]

    def open(self, keep_until: int | None = None) -> None:
        """Start the file with its header or, resuming, keep an existing file's rows up to
        iteration ``keep_until`` (rows logged after the checkpoint are dropped)."""
        if keep_until is not None and self.path.exists():
            with open(self.path, newline="") as handle:
                rows = list(csv.DictReader(handle))
            kept = [row for row in rows if _int(row.get("iteration")) <= keep_until]
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, self.columns, extrasaction="ignore", lineterminator="\n")
            writer.writeheader()
            writer.writerows(kept)
            # Atomic: a run stopped while rewriting keeps its old metrics rather than half of them.
            atomic_write_bytes(self.path, buffer.getvalue().encode())
            return
        atomic_write_bytes(self.path, (",".join(self.columns) + "\n").encode())

    def write(self, row: Mapping[str, Any]) -> None:
        values = {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
        with open(self.path, "a", newline="") as handle:
            csv.DictWriter(handle, self.columns, extrasaction="ignore", lineterminator="\n").writerow(values)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def tensorboard_missing() -> Img2ImgError | None:
    """The error to raise for --tensorboard when the package is not installed, else None."""
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        return Img2ImgError(
            "--tensorboard needs the tensorboard package, which is not installed",
            hint="pip install tensorboard, or train without --tensorboard",
        )
    return None


class TensorBoard:
    """TensorBoard event files in RUN/tensorboard."""

    def __init__(self, log_dir: Path, purge_step: int | None = None):
        error = tensorboard_missing()
        if error is not None:
            raise error
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)

    def scalars(self, values: Mapping[str, float], step: int, prefix: str) -> None:
        for name, value in values.items():
            self.writer.add_scalar(f"{prefix}/{name}", value, step)

    def image(self, name: str, image: Any, step: int) -> None:
        self.writer.add_image(name, image, step)

    def close(self) -> None:
        self.writer.close()


__all__ = ["METRICS_FILE", "MetricsLog", "Progress", "TensorBoard", "format_duration", "format_losses"]
