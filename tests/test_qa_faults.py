"""Faults found by trying the merged tool as a new user would (QA pass on issues #10, #14, #16):
bad report inputs and unwritable outputs are one line naming the file, help texts show their
defaults, and one-epoch charts have whole-number epoch ticks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from img2img.errors import Img2ImgError, OutputError
from img2img.files.atomic import atomic_write_bytes

COLUMNS = "scope,epoch,iteration,elapsed_s,lr,G_GAN,val_L1\n"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {"COLUMNS": "200", "PATH": "/usr/bin:/bin"}
    import os

    env.update({k: v for k, v in os.environ.items() if k in ("PYTHONPATH", "HOME", "VIRTUAL_ENV")})
    return subprocess.run([sys.executable, "-m", "img2img", *args], capture_output=True, text=True, env=env)


def _fake_run(root: Path, metrics: bytes) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"task": "pix2pix", "n_epochs": 1, "n_epochs_decay": 0}))
    (root / "metrics.csv").write_bytes(metrics)
    return root


def test_report_with_a_corrupt_metrics_file_names_it(tmp_path):
    pytest.importorskip("matplotlib")
    run = _fake_run(tmp_path / "run", b"\xae\x00\xff garbage \xfe\n" * 20)
    result = _run("report", str(run), "-o", str(tmp_path / "page.html"))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "metrics.csv" in lines[0] and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "page.html").exists()


def test_an_output_that_is_a_folder_names_it_and_leaves_nothing(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises(OutputError) as caught:
        atomic_write_bytes(folder, b"x")
    assert isinstance(caught.value, Img2ImgError) and isinstance(caught.value, OSError)
    assert str(folder) in str(caught.value) and ".tmp" not in str(caught.value)
    assert list(tmp_path.iterdir()) == [folder] and list(folder.iterdir()) == []


def test_an_output_the_filesystem_refuses_names_the_file_not_the_temporary(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError) as caught:
        atomic_write_bytes(blocker / "page.html", b"x")  # its folder is a file
    assert str(blocker / "page.html") in str(caught.value) and ".tmp" not in str(caught.value)


def test_report_to_a_folder_is_one_line(tmp_path):
    pytest.importorskip("matplotlib")
    run = _fake_run(tmp_path / "run", (COLUMNS + "epoch,1,4,1.0,0.0002,,0.5\n").encode())
    result = _run("report", str(run), "-o", str(tmp_path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"img2img: error: {tmp_path}: cannot write (is a folder, not a file)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


@pytest.mark.parametrize(
    "command, shown",
    [
        (("report",), "RUN/report.html; required for several runs"),
        (("convert",), "batch, instance or none [default: read from the checkpoint]"),
    ],
)
def test_help_shows_bracketed_defaults(command, shown):
    # Rich markup ate "[default: ...]" as an unknown tag.
    result = _run(*command, "--help")
    assert result.returncode == 0
    assert shown in " ".join(result.stdout.split()), result.stdout


def test_one_epoch_charts_have_whole_epoch_ticks(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from img2img.report.page import page as report

    run = _fake_run(tmp_path / "run", (COLUMNS + "iter,1,4,1.0,0.0002,0.7,\nepoch,1,4,1.0,0.0002,,0.5\n").encode())
    ticks = []

    def record(figure):
        figure.canvas.draw()
        ax = figure.axes[0]
        low, high = ax.get_xlim()
        ticks.append([t for t in ax.get_xticks() if low <= t <= high])
        return "<svg></svg>"

    monkeypatch.setattr(report, "_svg", record)
    report.epoch_charts([report.read_run(run)])
    assert ticks and all(t and all(float(x).is_integer() for x in t) for t in ticks), ticks


def test_started_is_the_first_session_not_the_last_resume(tmp_path):
    # config.json is rewritten at every --resume; the report's "started" must not move with it.
    import os

    from img2img.report.page import page as report

    run = _fake_run(tmp_path / "run", (COLUMNS + "epoch,1,4,10.0,0.0002,,0.5\n").encode())
    (run / "samples").mkdir()
    grid = run / "samples" / "epoch_001.png"
    grid.write_bytes(b"\x89PNG\r\n\x1a\n")
    first_epoch_end = 1_700_000_000.0
    os.utime(grid, (first_epoch_end, first_epoch_end))
    os.utime(run / "config.json", (first_epoch_end + 3600, first_epoch_end + 3600))  # a resume an hour on
    started = report.read_run(run).started
    assert started is not None and abs(started.timestamp() - (first_epoch_end - 10.0)) < 1e-3


@pytest.mark.parametrize("config", [{"n_epochs": "abc"}, {"n_epochs": 1, "batch_size": "x"}, {"n_epochs": 1.5}])
def test_report_with_a_damaged_config_names_it(tmp_path, config):
    pytest.importorskip("matplotlib")
    run = _fake_run(tmp_path / "run", (COLUMNS + "epoch,1,4,1.0,0.0002,,0.5\n").encode())
    (run / "config.json").write_text(json.dumps(config))
    result = _run("report", str(run), "-o", str(tmp_path / "page.html"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "config.json" in lines[0], result.stderr


def test_report_with_non_finite_counters_in_metrics(tmp_path):
    pytest.importorskip("matplotlib")
    from img2img.report.page import page as report

    run = _fake_run(tmp_path / "run", (COLUMNS + "epoch,nan,4,1.0,0.0002,,0.5\nepoch,1,inf,1.0,0.0002,,0.5\n").encode())
    record = report.read_run(run)
    assert record.epochs_done == 1
    report.write_report(run, tmp_path / "page.html")
    assert (tmp_path / "page.html").stat().st_size > 0


def test_the_training_summary_points_at_the_report(tmp_path):
    # A new user learns of report.html from the summary, not only from the README.
    pytest.importorskip("matplotlib")
    import io

    from img2img.data.synthetic import write_shapes_dataset
    from img2img.train import train_pix2pix
    from img2img.train.config import Pix2PixConfig

    data = write_shapes_dataset(tmp_path / "shapes", n_train=2, n_val=1, size=32)
    log = io.StringIO()
    config = Pix2PixConfig(
        netg="unet_32",
        ngf=8,
        ndf=8,
        load_size=32,
        crop_size=32,
        n_epochs=1,
        n_epochs_decay=0,
        seed=0,
        val_size=1,
        n_samples=1,
        data=str(data),
        out=str(tmp_path / "run"),
    )
    train_pix2pix(config, stream=log)
    assert f"report:     {tmp_path / 'run' / 'report.html'}" in log.getvalue()
