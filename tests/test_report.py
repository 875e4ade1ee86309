"""The training report (issue #16): one self-contained HTML page per run, written at every
epoch's end and on demand, for finished, interrupted and running runs; seen in a real browser."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from img2img.cli import main
from img2img.data.synthetic import write_shapes_dataset
from img2img.report.page import read_run, smooth, speed_table, write_report
from img2img.train import train_pix2pix
from img2img.train.config import Pix2PixConfig

pytest.importorskip("matplotlib", reason='the report needs matplotlib: pip install "img2img[report]"')

TINY = dict(
    netg="unet_32",
    ngf=8,
    ndf=8,
    preprocess="resize_and_crop",
    load_size=36,
    crop_size=32,
    n_epochs=1,
    n_epochs_decay=1,
    seed=0,
    print_freq=2,
    val_size=2,
    n_samples=2,
)
EXTERNAL = re.compile(r"""(https?:|ftp:|//[a-z0-9.-]+\.[a-z]{2,}|<script|<link|@import|url\((?!#))""", re.I)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return write_shapes_dataset(tmp_path_factory.mktemp("data") / "shapes", n_train=4, n_val=2, size=32)


@pytest.fixture(scope="module")
def runs(shapes, tmp_path_factory) -> dict[str, Path]:
    """Two tiny real runs: 'a' interrupted after epoch 1 (then its report is kept aside) and
    resumed to the end, 'b' with another learning rate, run straight through."""
    root = tmp_path_factory.mktemp("runs")
    a, b = root / "a", root / "b"
    config = Pix2PixConfig(**TINY, data=str(shapes), out=str(a))
    train_pix2pix(config, stream=io.StringIO(), stop_after_epochs=1)
    shutil.copy(a / "report.html", root / "a_interrupted.html")
    train_pix2pix(config, resume=True, stream=io.StringIO())
    train_pix2pix(Pix2PixConfig(**{**TINY, "lr": 1e-3}, data=str(shapes), out=str(b)), stream=io.StringIO())
    return {"a": a, "b": b, "a_interrupted": root / "a_interrupted.html"}


def _metrics(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_training_writes_a_self_contained_report(runs):
    page = (runs["a"] / "report.html").read_text()
    assert 'class="status finished"' in page
    assert not EXTERNAL.search(page), EXTERNAL.search(page).group(0)
    # a panel per loss (4), per validation metric (2) + the learning rate, and 2 of speed
    assert page.count('<svg class="chart"') == 9
    for section in ('id="losses"', 'id="validation"', 'id="speed"'):
        assert section in page
    # every epoch's sample grid, embedded, newest first
    epochs = [int(e) for e in re.findall(r'alt="samples after epoch (\d+)"', page)]
    assert epochs == [2, 1]
    assert page.count('src="data:image/png;base64,') == 2
    for name in ("G_GAN", "G_L1", "D_real", "D_fake", "val_L1", "val_PSNR", "learning rate"):
        assert name in page
    assert "pix2pix_AtoB.safetensors" in page and "latest.safetensors" in page


def test_an_interrupted_run_says_so(runs):
    page = runs["a_interrupted"].read_text()
    assert 'class="status interrupted"' in page
    assert "1 of 2" in page  # epochs
    assert re.findall(r'alt="samples after epoch (\d+)"', page) == ["1"]


def test_report_reads_what_metrics_csv_holds(runs):
    record = read_run(runs["a"])
    rows = _metrics(runs["a"])
    iters = [r for r in rows if r["scope"] == "iter"]
    assert [row["iteration"] for row in record.iter_rows] == [float(r["iteration"]) for r in iters]
    assert [row["G_L1"] for row in record.iter_rows] == [float(r["G_L1"]) for r in iters]
    assert record.loss_names == ["G_GAN", "G_L1", "D_real", "D_fake"]
    assert record.val_names == ["val_L1", "val_PSNR"]
    assert record.status == "finished" and (record.epochs_done, record.total_epochs) == (2, 2)
    # throughput from the cumulative elapsed seconds of the epoch rows
    epochs = [r for r in rows if r["scope"] == "epoch"]
    table = speed_table(record)
    assert [row[0] for row in table] == [1, 2]
    first = float(epochs[0]["elapsed_s"])
    assert table[0][1] == pytest.approx(first)
    assert table[0][2] == pytest.approx(float(epochs[0]["iteration"]) / first)


def test_smoothing_starts_at_the_data_and_follows_it():
    assert smooth([4.0]) == [4.0]
    values = smooth([1.0, 1.0, 1.0])
    assert values == pytest.approx([1.0, 1.0, 1.0])
    rising = smooth([0.0, 10.0, 10.0, 10.0], weight=0.5)
    assert rising[0] == 0 and rising[1] < rising[2] < rising[3] < 10


def test_two_runs_overlay_on_shared_axes(runs, tmp_path, capsys):
    out = tmp_path / "compare.html"
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(runs["a"]), str(runs["b"]), "-o", str(out)])
    assert exit_info.value.code == 0
    page = out.read_text()
    assert page.count('<svg class="chart"') == 9  # overlaid: as many panels as one run has
    assert page.count('alt="samples after epoch') == 4
    assert "comparison: a, b" in page
    # each panel has a line per run: two colours (C0, C1) in every loss panel
    panels = re.findall(r'<svg class="chart".*?</svg>', page, re.S)
    assert all("#1f77b4" in panel and "#ff7f0e" in panel for panel in panels)
    assert not EXTERNAL.search(page)


def _visible_text(page: str) -> str:
    """The page's text as a reader or a browser's search sees it: no SVG drawing (matplotlib
    draws its text as paths and leaves the strings only in comments), no tags."""
    page = re.sub(r"<svg.*?</svg>", " ", page, flags=re.DOTALL)
    page = re.sub(r"<!--.*?-->", " ", page, flags=re.DOTALL)
    return re.sub(r"<[^>]+>", " ", page)


def test_chart_names_and_series_are_text(runs):
    """The loss and metric names, and which run each line is, are HTML text beside each chart
    and the chart's accessible name, not only glyph outlines."""
    page = (runs["a"] / "report.html").read_text()
    text = _visible_text(page)
    for name in ("G_GAN", "G_L1", "D_real", "D_fake", "val_L1", "val_PSNR", "learning rate"):
        assert re.search(rf"\b{name}\s+against\s+(iteration|epoch)", text), name
    labels = re.findall(r'<svg class="chart" role="img" aria-label="([^"]*)"', page)
    assert len(labels) == 9 and any(label.startswith("G_GAN against iteration. a: last") for label in labels)


def test_runs_whose_folders_share_a_name_are_told_apart(runs, tmp_path):
    """A/facades and B/facades: title, legends and headings use the shortest end of the path
    that differs, not the bare folder name twice."""
    from img2img.report.page import distinct_labels

    first, second = tmp_path / "A" / "facades", tmp_path / "B" / "facades"
    shutil.copytree(runs["a"], first)
    shutil.copytree(runs["b"], second)
    page = write_report([first, second], tmp_path / "compare.html").read_text()
    text = _visible_text(page)
    assert "comparison: A/facades, B/facades" in text
    for label in ("A/facades", "B/facades"):
        assert f"Samples: {label}" in text and f"Time per epoch: {label}" in text
        assert re.search(rf"{label}:\s+smoothed\s+[-0-9.e]+\s+last", text)  # the loss charts' keys
    assert distinct_labels([tmp_path / "x" / "r", tmp_path / "y" / "z" / "r", tmp_path / "q"]) == ["x/r", "z/r", "q"]
    assert distinct_labels([first, first])[1].endswith("facades (2)")


def test_link_images_refers_to_the_grids_relatively(runs, tmp_path):
    out = tmp_path / "sub" / "page.html"
    out.parent.mkdir()
    write_report(runs["a"], out, link_images=True)
    page = out.read_text()
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert sources and all(not s.startswith("data:") and not s.startswith("/") for s in sources)
    for source in sources:
        assert (out.parent / source).resolve() == (runs["a"] / "samples" / Path(source).name).resolve()


def test_command_errors_are_one_line(tmp_path, capsys, runs):
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(tmp_path)])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a training run" in err[0] and str(tmp_path) in err[0]
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(runs["a"]), str(runs["b"])])
    assert exit_info.value.code == 2
    assert "-o FILE" in capsys.readouterr().err


def test_a_failing_report_never_stops_training(shapes, tmp_path, monkeypatch):
    import img2img.report.page

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(img2img.report.page, "write_report", broken)
    stream = io.StringIO()
    result = train_pix2pix(Pix2PixConfig(**TINY, data=str(shapes), out=str(tmp_path / "run")), stream=stream)
    assert result.epochs == 2
    assert "report.html not written" in stream.getvalue()


def test_epochs_shorter_than_the_report_interval_share_one_page(shapes, tmp_path, monkeypatch):
    """Drawing the page costs seconds whatever the run's size: epochs of a second do not each
    redraw it (that took 87 % of a small run's time), the end of the run always does; with an
    interval of 0 every epoch's end writes one, as long epochs do."""
    import img2img.report.page
    from img2img.train import reporting

    real, writes = img2img.report.page.write_report, []

    def counting(*args, **kwargs):
        writes.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(img2img.report.page, "write_report", counting)
    monkeypatch.setattr(reporting, "REPORT_INTERVAL", 3600.0)
    log = io.StringIO()
    train_pix2pix(
        Pix2PixConfig(**{**TINY, "n_epochs": 3, "n_epochs_decay": 0}, data=str(shapes), out=str(tmp_path / "a")),
        stream=log,
    )
    assert len(writes) == 1 and (tmp_path / "a" / "report.html").is_file()  # the end of the run
    assert f"report:     {tmp_path / 'a' / 'report.html'}" in log.getvalue()
    monkeypatch.setattr(reporting, "REPORT_INTERVAL", 0.0)
    writes.clear()
    train_pix2pix(
        Pix2PixConfig(**{**TINY, "n_epochs": 3, "n_epochs_decay": 0}, data=str(shapes), out=str(tmp_path / "b")),
        stream=io.StringIO(),
    )
    assert len(writes) == 3 + 1  # each epoch's end, and the end


def test_without_matplotlib_the_trainer_notes_it_once_and_the_command_says_how(shapes, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    stream = io.StringIO()
    train_pix2pix(Pix2PixConfig(**TINY, data=str(shapes), out=str(tmp_path / "run")), stream=stream)
    assert stream.getvalue().count("no report.html") == 1
    assert not (tmp_path / "run" / "report.html").exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(tmp_path / "run")])
    assert exit_info.value.code == 1
    assert 'pip install "img2img[report]"' in capsys.readouterr().err


# --- in a real browser ---------------------------------------------------------------------------

_MEASURE = """
<script>
addEventListener('load', () => {
  const box = e => { const r = e.getBoundingClientRect(); return [Math.round(r.width), Math.round(r.height)]; };
  const out = {
    charts: [...document.querySelectorAll('svg.chart')].map(box),
    images: [...document.querySelectorAll('img')].map(i => [i.naturalWidth, i.naturalHeight, ...box(i)]),
    resources: performance.getEntriesByType('resource').map(r => r.name),
    scrollWidth: document.documentElement.scrollWidth, innerWidth: innerWidth,
  };
  const pre = document.createElement('pre'); pre.id = 'measured';
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
});
</script>
"""


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


def _headless(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
    ]
    return subprocess.run([browser, *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium not installed (apt-get install chromium)")
@pytest.mark.parametrize("width,height", [(1280, 800), (390, 844)])
def test_report_renders_in_a_browser(runs, tmp_path, width, height):
    browser = _chromium()
    page = runs["a"] / "report.html"
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", _MEASURE + "</body>"))
    done = _headless(
        browser,
        tmp_path / "profile",
        f"--window-size={width},{height}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        probe.as_uri(),
    )
    found = re.search(r'<pre id="measured">(.*?)</pre>', done.stdout, re.S)
    assert found, done.stderr[-2000:]
    measured = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert len(measured["charts"]) == 9
    assert all(w >= 300 and h >= 200 for w, h in measured["charts"]), measured["charts"]
    assert len(measured["images"]) == 2
    assert all(nw > 0 and nh > 0 and w > 0 and h > 0 for nw, nh, w, h in measured["images"]), measured["images"]
    assert measured["resources"] == []  # nothing fetched: no request leaves the file
    # readable without scrolling sideways (headless Chromium's narrowest viewport is ~500 px)
    assert measured["scrollWidth"] <= measured["innerWidth"] + 1
    shots = Path(os.environ.get("IMG2IMG_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    shot = shots / f"report_{width}x{height}.png"
    _headless(browser, tmp_path / "profile2", f"--window-size={width},{height}", f"--screenshot={shot}", page.as_uri())
    assert shot.is_file() and shot.stat().st_size > 10_000
