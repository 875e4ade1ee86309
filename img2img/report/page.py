"""The training report: one self-contained HTML page per run (``runs/NAME/report.html``).

The page holds the run's name, task, dataset, start and end, status and resolved config;
charts of every training loss against iterations (smoothed, raw values faint), of every
validation metric and the learning rate against epochs, of throughput and time per epoch; the
sample grids of each epoch (newest first) beside that epoch's validation figures; and the
exported weights and checkpoints with their sizes. Several runs give one page whose curves share
axes, to compare settings.

Self-contained means no request leaves the file: charts are inline SVG drawn by matplotlib
(text as paths, metadata and XML namespaces stripped), images are ``data:`` URIs (or, with
``link_images``, paths relative to the page), the CSS is inline, and there is no script. It
reads only what the trainer already writes (``config.json``, ``metrics.csv``, ``samples/``,
``weights/``, ``checkpoints/``, ``status.json``), so it can be built for finished, interrupted
and running runs; ``status.json`` (:mod:`img2img.files.run_status`) tells a run in progress from one
whose process is gone.

matplotlib is an optional dependency (``pip install "img2img[report]"``); without it the
trainer skips the report with one note and ``img2img report`` fails with the command to run.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import datetime as dt
import html
import io
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from img2img.errors import Img2ImgError, UsageError
from img2img.files.atomic import atomic_write_bytes
from img2img.files.run_status import describe, read_status

REPORT_FILE = "report.html"
EMBED_BUDGET_BYTES = 20 * 2**20  # of base64 text; past it the older sample grids are linked, not embedded
MAX_POINTS = 1500  # per curve; longer series are thinned evenly (smoothing uses every point)
_META_COLUMNS = ("scope", "epoch", "iteration", "elapsed_s", "lr")
_SAMPLE_NAME = re.compile(r"epoch_(\d+)\.png$")


class ReportError(Img2ImgError):
    """A run folder that cannot be reported on (exit 1)."""


def matplotlib_missing() -> Img2ImgError | None:
    """The error to raise when matplotlib is not installed, else None."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return Img2ImgError(
            "the training report needs matplotlib, which is not installed",
            hint='pip install "img2img[report]"',
        )
    return None


# --- reading a run folder ------------------------------------------------------------------------


@dataclass
class RunRecord:
    """What a run folder says about its run: config, metrics rows and files."""

    root: Path
    config: dict
    iter_rows: list[dict[str, float]]
    epoch_rows: list[dict[str, float]]
    loss_names: list[str]
    val_names: list[str]
    samples: list[tuple[int, Path]]  # (epoch, grid), newest first
    files: list[tuple[Path, int]]  # exported weights and checkpoints with sizes in bytes
    started: dt.datetime | None
    updated: dt.datetime | None
    status: str
    epochs_done: int = 0
    total_epochs: int = 0
    images_per_iteration: int = 1
    notes: list[str] = field(default_factory=list)
    # What the page calls the run when several are compared: the shortest end of its path that
    # tells it from the others (distinct_labels); None: the folder's name.
    label: str | None = None

    @property
    def name(self) -> str:
        return self.label or self.root.resolve().name


def distinct_labels(roots: Sequence[str | os.PathLike[str]]) -> list[str]:
    """For each run folder, the shortest end of its resolved path (``facades``, then
    ``A/facades``, ...) that no other folder's path ends with: two runs named ``facades`` in
    ``A/`` and ``B/`` are ``A/facades`` and ``B/facades``. The same folder given twice keeps its
    full path with `` (2)``, ``(3)``... after the repeats."""
    parts = [Path(root).resolve().parts for root in roots]
    labels = []
    for i, own in enumerate(parts):
        others = [p for j, p in enumerate(parts) if j != i and p != own]
        depth = 1
        while depth < len(own) and any(p[-depth:] == own[-depth:] for p in others):
            depth += 1
        labels.append("/".join(own[-depth:]).replace("//", "/"))
    seen: dict[str, int] = {}
    for i, own in enumerate(parts):
        if parts.count(own) > 1:
            seen[str(Path(*own))] = seen.get(str(Path(*own)), 0) + 1
            labels[i] = str(Path(*own)) + (f" ({seen[str(Path(*own))]})" if seen[str(Path(*own))] > 1 else "")
    return labels


def _float(value: str | None) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        return None


def read_run(root: str | os.PathLike[str], status: str | None = None) -> RunRecord:
    """Read ``root`` (a run folder). ``status`` is what the trainer knows (one line); without
    it, the run's ``status.json`` says (in progress, how it stopped, finished, or ended
    unexpectedly: :func:`img2img.files.run_status.describe`), and for a folder without one (an older
    version's run), a run whose epochs are all done is finished and any other is reported as
    interrupted or in progress, with the time of its last update. ReportError when ``root`` is
    not a run folder."""
    root = Path(root)
    config_path = root / "config.json"
    if not config_path.is_file():
        raise ReportError(f"{root}: not a training run (no config.json)")
    try:
        config = json.loads(config_path.read_text())
        if not isinstance(config, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise ReportError(f"{config_path}: unreadable run config ({exc})") from None

    iter_rows: list[dict[str, float]] = []
    epoch_rows: list[dict[str, float]] = []
    columns: list[str] = []
    metrics_path = root / "metrics.csv"
    if metrics_path.is_file():
        try:
            with open(metrics_path, newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                columns = list(reader.fieldnames or [])
                for row in reader:
                    values = {key: _float(value) for key, value in row.items() if key and key != "scope"}
                    clean = {key: value for key, value in values.items() if value is not None}
                    # A row without a finite counter (damaged, cut short) cannot be placed: skip it.
                    for key in ("epoch", "iteration", "elapsed_s"):
                        if key in clean and not math.isfinite(clean[key]):
                            del clean[key]
                    counter = "epoch" if row.get("scope") == "epoch" else "iteration"
                    if counter in clean:
                        (epoch_rows if counter == "epoch" else iter_rows).append(clean)
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            # The trainer writes plain UTF-8 CSV; anything else is damage (or not our file).
            reason = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc)
            raise ReportError(f"{metrics_path}: unreadable metrics ({reason})") from None
    metric_columns = [c for c in columns if c not in _META_COLUMNS]
    val_names = [c for c in metric_columns if c.startswith("val_")]
    loss_names = [c for c in metric_columns if c not in val_names]

    samples = []
    samples_dir = root / "samples"
    if samples_dir.is_dir():
        for path in samples_dir.iterdir():
            match = _SAMPLE_NAME.match(path.name)
            if match and path.is_file():
                samples.append((int(match.group(1)), path))
    samples.sort(reverse=True)

    files = []
    for folder in ("weights", "checkpoints"):
        if (root / folder).is_dir():
            files += [(p, p.stat().st_size) for p in sorted((root / folder).glob("*.safetensors")) if p.is_file()]

    def count(key: str, default: int) -> int:
        value = config.get(key, default)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise ReportError(f"{config_path}: {key} is {json.dumps(value)}, not a whole number")
        return value

    total = count("n_epochs", 0) + count("n_epochs_decay", 0)
    done = int(max((row.get("epoch", 0) for row in epoch_rows), default=0))
    mtimes = [p.stat().st_mtime for p in (config_path, metrics_path) if p.exists()]
    mtimes += [p.stat().st_mtime for p, _ in files]
    started = _started(config_path, epoch_rows, samples)
    updated = dt.datetime.fromtimestamp(max(mtimes)) if mtimes else None
    if status is None and (recorded := read_status(root)) is not None:
        status = describe(recorded)
    if status is None:
        status = "finished" if total and done >= total else "interrupted or in progress"
    world = count("world_size", 1) or 1
    return RunRecord(
        root=root,
        config=config,
        iter_rows=iter_rows,
        epoch_rows=epoch_rows,
        loss_names=loss_names,
        val_names=val_names,
        samples=samples,
        files=files,
        started=started,
        updated=updated,
        status=status,
        epochs_done=done,
        total_epochs=total,
        images_per_iteration=(count("batch_size", 1) or 1) * world,
    )


def _started(config_path: Path, rows: list[dict[str, float]], samples: list[tuple[int, Path]]) -> dt.datetime | None:
    # config.json is rewritten at every resume, so its time is the last session's start. The
    # first epoch's sample grid is written at that epoch's end, elapsed_s training seconds
    # after the start: that dates the first session (to within its set-up time).
    times = []
    with contextlib.suppress(OSError):
        times.append(config_path.stat().st_mtime)
    first = {epoch: path for epoch, path in samples}.get(1)
    elapsed = next((row.get("elapsed_s") for row in rows if row.get("epoch") == 1), None)
    if first is not None and elapsed is not None:
        with contextlib.suppress(OSError):
            times.append(first.stat().st_mtime - elapsed)
    return dt.datetime.fromtimestamp(min(times)) if times else None


# --- charts --------------------------------------------------------------------------------------


def smooth(values: Sequence[float], weight: float = 0.8) -> list[float]:
    """Exponential moving average with bias correction (TensorBoard's smoothing): the smoothed
    curve starts at the first value instead of at zero. ``weight`` in [0, 1)."""
    out, last, norm = [], 0.0, 0.0
    for value in values:
        last = last * weight + (1 - weight) * value
        norm = norm * weight + (1 - weight)
        out.append(last / norm)
    return out


def _svg(figure, label: str = "") -> str:
    """A matplotlib figure as inline SVG with nothing that refers outside the page; ``label``
    is its accessible name (the drawn text is paths: not read out, not searchable)."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    import matplotlib.pyplot as plt

    plt.close(figure)
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    text = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", text)
    text = re.sub(r'\s+version="1\.1"', "", text)
    # Responsive: the viewBox keeps the drawing's proportions at any width.
    text = re.sub(r'(<svg[^>]*?)\s+width="[^"]*"\s+height="[^"]*"', r"\1", text, count=1)
    aria = f' aria-label="{html.escape(label)}"' if label else ""
    return text.replace("<svg", f'<svg class="chart" role="img"{aria}', 1)


def _panel():
    """One small chart (a figure of its own, so that the page lays panels out by its width:
    three a row on a desktop, one on a phone)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "path", "font.size": 10, "axes.grid": True, "grid.alpha": 0.3})
    return plt.subplots(figsize=(4.2, 2.9))


def _panels(
    runs: Sequence[RunRecord], names: Sequence[str], points, xlabel: str, *, raw: bool = False, titles=None
) -> list[str]:
    """One SVG panel per name; ``points(run, name)`` gives that run's (x, y) pairs. ``raw``:
    the values faint and their smoothed curve bold (losses), else lines with markers."""
    charts = []
    for name in names:
        figure, ax = _panel()
        drawn = False
        series = []  # (run name, colour, last value) of each drawn line, for the caption
        for index, run in enumerate(runs):
            data = points(run, name)
            if not data:
                continue
            drawn = True
            x, y = zip(*data)
            colour = f"C{index % 10}"
            series.append((run.name, _colour(index), (smooth(y) if raw else y)[-1]))
            if raw:
                # A 400 px panel cannot show more points than this; fewer keep the page small.
                step = max(1, len(x) // MAX_POINTS)
                ax.plot(x[::step], y[::step], color=colour, alpha=0.25, linewidth=0.8)
                ax.plot(x[::step], smooth(y)[::step], color=colour, linewidth=1.6, label=run.name)
            else:
                ax.plot(x, y, color=colour, marker="o", markersize=3, linewidth=1.4, label=run.name)
        title = (titles or {}).get(name, name)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        from matplotlib.ticker import MaxNLocator

        # Epochs and iterations are whole; min_n_ticks=1 keeps that with one epoch (one point).
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        if len(runs) > 1 and drawn:
            ax.legend(fontsize=8)
        figure.tight_layout()
        charts.append(_figure(_svg(figure, _chart_label(title, xlabel, series, raw)), title, xlabel, series, raw))
    return charts


def _colour(index: int) -> str:
    """The hex colour of matplotlib's ``C{index}`` (its default cycle), as the chart draws it."""
    import matplotlib

    cycle = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    return cycle[index % len(cycle)]


def _chart_label(title: str, xlabel: str, series, raw: bool) -> str:
    lines = "; ".join(f"{run}: last {'smoothed ' if raw else ''}value {value:.4g}" for run, _, value in series)
    return f"{title} against {xlabel}" + (f". {lines}" if lines else ": no data")


def _figure(svg: str, title: str, xlabel: str, series, raw: bool) -> str:
    """A chart with its title and key as HTML text beside the drawing (whose own text is
    paths): searchable, selectable and read by screen readers."""
    keys = "".join(
        f'<li><span class="swatch" style="background:{colour}" aria-hidden="true"></span>{html.escape(run)}: '
        f'{"smoothed " if raw else ""}<span class="num">{value:.4g}</span> last</li>'
        for run, colour, value in series
    )
    caption = f"<b>{html.escape(title)}</b> against {html.escape(xlabel)}" + (
        f'<ul class="key">{keys}</ul>' if keys else " (no data)"
    )
    return f'<figure class="panel">{svg}<figcaption>{caption}</figcaption></figure>'


def loss_charts(runs: Sequence[RunRecord]) -> list[str]:
    """Every training loss against iterations: raw interval means faint, smoothed (see
    :func:`smooth`) bold; one panel per loss, one colour per run."""
    names = _union(run.loss_names for run in runs)

    def points(run: RunRecord, name: str):
        return [(row["iteration"], row[name]) for row in run.iter_rows if name in row and "iteration" in row]

    return _panels(runs, names, points, "iteration", raw=True)


def epoch_charts(runs: Sequence[RunRecord]) -> list[str]:
    """Every validation metric, then the learning rate, against epochs."""
    if not any(run.epoch_rows for run in runs):
        return []
    names = _union(run.val_names for run in runs) + ["lr"]

    def points(run: RunRecord, name: str):
        return [(row["epoch"], row[name]) for row in run.epoch_rows if name in row and "epoch" in row]

    return _panels(runs, names, points, "epoch", titles={"lr": "learning rate"})


def speed_table(run: RunRecord) -> list[tuple[int, float, float, int]]:
    """Per epoch: (epoch, seconds, images per second, iterations), from the epoch rows'
    cumulative ``elapsed_s`` and ``iteration``. Epochs whose start is unknown are left out."""
    out = []
    previous = (0.0, 0.0)
    for row in sorted(run.epoch_rows, key=lambda r: r.get("epoch", 0)):
        elapsed, iteration = row.get("elapsed_s"), row.get("iteration")
        if elapsed is None or iteration is None:
            continue
        seconds, iters = elapsed - previous[0], iteration - previous[1]
        previous = (elapsed, iteration)
        if seconds > 0 and iters > 0:
            out.append((int(row["epoch"]), seconds, iters * run.images_per_iteration / seconds, int(iters)))
    return out


def speed_charts(runs: Sequence[RunRecord]) -> list[str]:
    """Throughput (images/s) and time per epoch (s) against epochs."""
    tables = {run.root: speed_table(run) for run in runs}
    if not any(tables.values()):
        return []
    column = {"images per second": 2, "seconds per epoch": 1}

    def points(run: RunRecord, name: str):
        return [(row[0], row[column[name]]) for row in tables[run.root]]

    return _panels(runs, list(column), points, "epoch")


def _union(lists: Iterable[Sequence[str]]) -> list[str]:
    out: list[str] = []
    for names in lists:
        out += [name for name in names if name not in out]
    return out


# --- the page ------------------------------------------------------------------------------------


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
main{max-width:1200px;margin:auto;padding:16px}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em}td,th{padding:3px 10px 3px 0;text-align:left;vertical-align:top}
.num{text-align:right;font-variant-numeric:tabular-nums}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:8px}
.chart{width:100%;height:auto;background:#fff;border:1px solid #e5e5e5}
.panel{margin:0}.panel figcaption{font-size:.85em;padding:2px 4px}
.key{list-style:none;margin:0;padding:0}.key li{display:inline-block;margin-right:12px}
.swatch{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
.status{display:inline-block;padding:2px 8px;border-radius:10px;background:#eee;font-size:.85em}
.finished{background:#d8f5dd}.interrupted{background:#fde2c8}.progress{background:#dbe8fd}
.sample{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start;margin:10px 0;padding:8px;background:#fff;border:1px solid #e5e5e5}
.sample img{max-width:100%;height:auto;image-rendering:pixelated;min-width:min(256px,100%)}
.sample .figures{min-width:160px}
details pre{overflow-x:auto;background:#fff;border:1px solid #e5e5e5;padding:8px;font-size:.8em}
.scroll{overflow-x:auto}
@media (max-width:600px){main{padding:8px}h1{font-size:1.2em}}
"""


def _fmt_time(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "unknown"


def _fmt_size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"


def _fmt_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def _status_class(status: str) -> str:
    if status == "finished":
        return "finished"
    if status.startswith(("interrupted", "stopped", "ended", "unknown")):
        return "interrupted"
    return "progress"


def _image_src(path: Path, page: Path, embed: bool) -> str:
    if embed:
        return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    return html.escape(os.path.relpath(path.resolve(), page.resolve().parent).replace(os.sep, "/"))


def render(runs: Sequence[RunRecord], page: Path, *, link_images: bool = False) -> str:
    """The HTML page for ``runs`` (one run: its full report; several: overlaid charts, then
    each run's summary and samples). Image links are relative to ``page``."""
    if not runs:
        raise UsageError("no runs to report on")
    if len(runs) > 1:  # folders that share a name get the path ends that tell them apart
        import dataclasses

        runs = [
            dataclasses.replace(run, label=label) for run, label in zip(runs, distinct_labels([r.root for r in runs]))
        ]
    title = runs[0].name if len(runs) == 1 else "comparison: " + ", ".join(run.name for run in runs)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>img2img report: {html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for run in runs:
        parts.append(_summary_html(run))
    sections = [
        ("losses", "Training losses", loss_charts(runs)),
        ("validation", "Validation and learning rate", epoch_charts(runs)),
        ("speed", "Speed", speed_charts(runs)),
    ]
    for key, heading, charts in sections:
        if charts:
            parts += [f"<h2>{heading}</h2>", f'<div class="charts" id="{key}">', *charts, "</div>"]
    budget = EMBED_BUDGET_BYTES
    for run in runs:
        parts.append(_speed_html(run))
        parts.append(_files_html(run))
        section, budget = _samples_html(run, page, link_images, budget)
        parts.append(section)
        parts.append(
            f"<details><summary>Resolved config of {html.escape(run.name)}</summary><pre>"
            + html.escape(json.dumps(run.config, indent=2))
            + "</pre></details>"
        )
    generated = dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    parts.append(f"<p><small>Written by img2img at {generated}.</small></p></main></body></html>")
    return "\n".join(parts)


def _summary_html(run: RunRecord) -> str:
    cfg = run.config
    network = (
        f"{cfg.get('netg', '?')} G (ngf {cfg.get('ngf', '?')}), {cfg.get('netd', '?')} D (ndf {cfg.get('ndf', '?')})"
    )
    last_val = next((row for row in reversed(run.epoch_rows) if any(n in row for n in run.val_names)), {})
    figures = ", ".join(f"{name} {last_val[name]:.4g}" for name in run.val_names if name in last_val) or "none yet"
    rows = [
        ("run", f"{html.escape(run.name)} <small>({html.escape(str(run.root))})</small>"),
        ("status", f'<span class="status {_status_class(run.status)}">{html.escape(run.status)}</span>'),
        ("task", html.escape(str(cfg.get("task", "?")))),
        ("dataset", html.escape(str(cfg.get("data", "?")))),
        ("networks", html.escape(network)),
        ("epochs", f"{run.epochs_done} of {run.total_epochs}"),
        ("iterations", str(int(max((r.get("iteration", 0) for r in run.iter_rows + run.epoch_rows), default=0)))),
        ("started", _fmt_time(run.started)),
        ("last update", _fmt_time(run.updated)),
        ("latest validation", html.escape(figures)),
    ]
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<div class="scroll"><table class="summary">{body}</table></div>'


def _speed_html(run: RunRecord) -> str:
    table = speed_table(run)
    if not table:
        return ""
    rows = "".join(
        f'<tr><td class="num">{epoch}</td><td class="num">{iters}</td><td class="num">{_fmt_seconds(seconds)}</td>'
        f'<td class="num">{rate:.2f}</td></tr>'
        for epoch, seconds, rate, iters in reversed(table)
    )
    return (
        f'<h2>Time per epoch: {html.escape(run.name)}</h2><div class="scroll"><table><tr><th>epoch</th>'
        f"<th>iterations</th><th>time</th><th>images/s</th></tr>{rows}</table></div>"
    )


def _files_html(run: RunRecord) -> str:
    if not run.files:
        return ""
    rows = "".join(
        f'<tr><td>{html.escape(path.parent.name + "/" + path.name)}</td><td class="num">{_fmt_size(size)}</td></tr>'
        for path, size in run.files
    )
    return f"<h2>Weights and checkpoints: {html.escape(run.name)}</h2><table>{rows}</table>"


def _samples_html(run: RunRecord, page: Path, link_images: bool, budget: int) -> tuple[str, int]:
    if not run.samples:
        return "", budget
    by_epoch = {int(row["epoch"]): row for row in run.epoch_rows if "epoch" in row}
    parts = [f"<h2>Samples: {html.escape(run.name)} (newest first; input | output | target)</h2>"]
    linked = 0
    for epoch, path in run.samples:
        size = (path.stat().st_size + 2) // 3 * 4  # as base64
        embed = not link_images and size <= budget
        if embed:
            budget -= size
        elif not link_images:
            linked += 1
        row = by_epoch.get(epoch, {})
        figures = "".join(
            f'<tr><td>{html.escape(name)}</td><td class="num">{row[name]:.4g}</td></tr>'
            for name in run.val_names
            if name in row
        )
        parts.append(
            f'<div class="sample"><img src="{_image_src(path, page, embed)}" alt="samples after epoch {epoch}" '
            f'loading="lazy"><div class="figures"><b>epoch {epoch}</b><table>{figures}</table></div></div>'
        )
    if linked:
        parts.insert(
            1, f"<p>{linked} older grids are linked from the run folder, not embedded, to keep the page small.</p>"
        )
    return "\n".join(parts), budget


def write_report(
    runs: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    link_images: bool = False,
    status: str | None = None,
    replace: bool = True,
) -> Path:
    """Write the report of one run (default: RUN/report.html) or of several overlaid (then
    ``output`` is required), atomically. ``status`` overrides the status read from the folder
    (the trainer passes what it knows). Returns the page's path. ReportError for a folder that
    is not a run, Img2ImgError when matplotlib is missing, UsageError for several runs and no
    output. ``replace=False``: a file at ``output`` when the page is moved into place is left
    alone and FileExistsError raised (img2img.files.atomic)."""
    if isinstance(runs, (str, os.PathLike)):
        runs = [runs]
    if (error := matplotlib_missing()) is not None:
        raise error
    if output is None:
        if len(runs) != 1:
            raise UsageError("several runs given: say where the comparison goes with -o FILE")
        output = Path(runs[0]) / REPORT_FILE
    output = Path(output)
    records = [read_run(root, status=status) for root in runs]
    page = render(records, output, link_images=link_images)
    atomic_write_bytes(output, page.encode("utf-8"), replace=replace)
    return output


__all__ = [
    "REPORT_FILE",
    "ReportError",
    "RunRecord",
    "distinct_labels",
    "epoch_charts",
    "loss_charts",
    "read_run",
    "render",
    "smooth",
    "speed_charts",
    "speed_table",
    "write_report",
]
