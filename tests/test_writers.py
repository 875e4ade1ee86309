"""One writer per target, and what a failure or a stop leaves: run folders are locked by their
process (a second run, a resume beside it or --overwrite over it is refused, naming the live
one), every command that writes a file refuses to replace one that appeared meanwhile, and a
failure after training did work keeps what it wrote. Two processes are synchronised by the
lines they print, never by sleeps."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from img2img.data.synthetic import write_shapes_dataset

TRAIN = [
    "--netg", "unet_32", "--ngf", "4", "--ndf", "4", "--load-size", "36", "--crop-size", "32",
    "--seed", "0", "--val-size", "1", "--n-samples", "0", "--print-freq", "1", "--device", "cpu",
    "--num-workers", "0",
]  # fmt: skip
HANG_GUARD = 300  # seconds: generous for a loaded machine; only a hang reaches it


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return write_shapes_dataset(tmp_path_factory.mktemp("data") / "shapes", n_train=4, n_val=1, size=32)


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def img2img(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "img2img", *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
    )


def start_training(args: list[str], cwd: Path) -> subprocess.Popen:
    """A run that trains until stopped, read up to its first iteration's log line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "img2img", "train", "pix2pix", *TRAIN, *args, "--n-epochs", "100000",
         "--n-epochs-decay", "0"],
        cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    guard = threading.Timer(HANG_GUARD, proc.kill)  # only a hang reaches it
    guard.start()
    seen = ""
    try:
        while True:
            line = proc.stderr.readline()
            if not line:
                proc.wait(HANG_GUARD)
                pytest.fail(f"the run ended before training ({proc.returncode}): {seen}")
            seen += line
            if line.startswith("epoch "):  # the log line of an iteration: the run is live
                return proc
    finally:
        guard.cancel()


def stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    return proc.communicate(timeout=HANG_GUARD)[1]


def test_a_live_run_folder_is_refused_to_a_second_run_a_resume_and_overwrite(shapes, tmp_path):
    first = start_training(["--data", str(shapes), "--out", "run"], tmp_path)
    try:
        status = json.loads((tmp_path / "run" / "status.json").read_text())
        assert status["state"] == "running" and status["pid"] == first.pid
        before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "run").rglob("*"))
        # The same command again, --overwrite over it: refused, naming the live run, nothing touched.
        for extra in ([], ["--overwrite"]):
            second = img2img("train", "pix2pix", *TRAIN, "--data", str(shapes), "--out", "run", *extra, cwd=tmp_path)
            assert second.returncode == 2, second.stderr
            (line,) = second.stderr.splitlines()
            assert f"--out run: in use by a live run (pid {first.pid} on " in line and "started " in line
            assert (tmp_path / "run").is_dir()
            assert {"config.json", "status.json"} <= {p.name for p in (tmp_path / "run").iterdir()}
        assert first.poll() is None  # the first run goes on
    finally:
        stop(first)
    # Stopped (a checkpoint written): now a resume may go on; while it is live, another may not.
    resumed = start_training(["--resume", "run"], tmp_path)
    try:
        again = img2img("train", "pix2pix", "--resume", "run", cwd=tmp_path)
        assert again.returncode == 2, again.stderr
        assert f"--resume run: in use by a live run (pid {resumed.pid} on " in again.stderr
    finally:
        stop(resumed)
    assert before  # the folder was there all along
    assert not (tmp_path / "run" / "run.lock").exists()  # released at the end


def test_the_lock_of_a_killed_run_is_gone_with_its_process(shapes, tmp_path):
    first = start_training(["--data", str(shapes), "--out", "run"], tmp_path)
    first.kill()  # SIGKILL: no handler runs; the kernel drops the lock with the process
    first.communicate(timeout=HANG_GUARD)
    assert json.loads((tmp_path / "run" / "status.json").read_text())["state"] == "running"
    again = img2img("train", "pix2pix", *TRAIN, "--data", str(shapes), "--out", "run", "--n-epochs", "1",
                    "--n-epochs-decay", "0", cwd=tmp_path)  # fmt: skip
    assert again.returncode == 0, again.stderr


def test_a_failure_after_training_did_work_keeps_the_run_folder(shapes, tmp_path, monkeypatch):
    from img2img.errors import UsageError
    from img2img.train import evaluation, train_pix2pix
    from img2img.train.config import Pix2PixConfig

    def failing_score(trainer):
        raise UsageError("FID needs at least 2 images")

    monkeypatch.setattr(evaluation, "score", failing_score)
    config = Pix2PixConfig(
        netg="unet_32", ngf=4, ndf=4, load_size=36, crop_size=32, seed=0, val_size=1, n_samples=0,
        n_epochs=1, n_epochs_decay=0, data=str(shapes), out=str(tmp_path / "run"),
    )  # fmt: skip
    with pytest.raises(UsageError, match="FID needs"):
        train_pix2pix(config, stream=io.StringIO(), live=False)
    run = tmp_path / "run"
    assert (run / "config.json").is_file() and (run / "metrics.csv").is_file()
    assert json.loads((run / "status.json").read_text())["state"] == "failed"
    assert not (run / "run.lock").exists()


def test_a_failure_while_setting_up_leaves_no_folder(shapes, tmp_path):
    failed = img2img("train", "pix2pix", *TRAIN, "--data", str(tmp_path / "nowhere"), "--out", "run", cwd=tmp_path)
    assert failed.returncode != 0
    assert not (tmp_path / "run").exists()


# --- every command that writes: the same --overwrite/--skip-existing, advice naming only them ---


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    from img2img.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
        raise SystemExit(0)
    captured = capsys.readouterr()
    return exit_info.value.code or 0, captured.out, captured.err


def _commands():
    """(name, click command) for every command of the CLI, sub-apps included."""
    import typer.main

    from img2img.cli import app

    def walk(command, prefix):
        subcommands = getattr(command, "commands", None)
        if subcommands is None:
            yield prefix, command
            return
        for name, sub in subcommands.items():
            yield from walk(sub, f"{prefix} {name}".strip())

    yield from walk(typer.main.get_command(app), "")


def test_every_command_with_overwrite_also_keeps_with_skip_existing():
    commands = dict(_commands())
    options = {name: {opt for p in cmd.params for opt in getattr(p, "opts", [])} for name, cmd in commands.items()}
    writers = {name for name, opts in options.items() if "--overwrite" in opts}
    assert {
        "translate",
        "eval",
        "export",
        "convert",
        "report",
        "data combine",
        "train pix2pix",
        "train cyclegan",
    } <= writers
    for name in writers:
        assert "--skip-existing" in options[name], name


def _advice_options(text: str) -> set[str]:
    import re

    return set(re.findall(r"--[a-z][a-z-]+", text))


def _own_options(command: str) -> set[str]:
    cmd = dict(_commands())[command]
    return {opt for p in cmd.params for opt in getattr(p, "opts", [])}


def test_eval_save_outputs_refuses_keeps_or_replaces_and_counts_what_it_scored(capsys, tmp_path):
    from conftest import make_generator_file
    from PIL import Image

    model = make_generator_file(tmp_path / "g.safetensors", task="pix2pix")
    for folder in ("in", "truth"):
        (tmp_path / folder).mkdir()
        for index in range(2):
            Image.new("RGB", (16, 16), (40 * index, 90, 200)).save(tmp_path / folder / f"{index}.png")
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "0.png").write_bytes(b"old")
    base = ["eval", "--model", str(model), "--input", str(tmp_path / "in"), "--target", str(tmp_path / "truth"),
            "--metrics", "psnr", "--save-outputs", str(kept), "--json"]  # fmt: skip

    code, out, err = run_cli(capsys, *base)
    assert code == 2 and out == "" and f"{kept}/0.png: already exists" in err
    assert _advice_options(err) <= _own_options("eval") and "--skip-existing" in err
    assert sorted(p.name for p in kept.iterdir()) == ["0.png"]  # nothing translated, nothing written

    code, out, err = run_cli(capsys, *base, "--skip-existing")
    assert code == 0, err
    result = json.loads(out)["evaluations"][0]
    assert result["samples"]["pairs"] == 2 and result["scores"]["psnr"]["pairs"] == 2
    assert result["samples"]["failed"] == 0 and result["samples"]["unsaved"] == 0
    assert (kept / "0.png").read_bytes() == b"old" and (kept / "1.png").is_file()

    code, out, err = run_cli(capsys, *base, "--overwrite")
    assert code == 0, err
    assert (kept / "0.png").read_bytes()[:4] == b"\x89PNG"

    code, out, err = run_cli(capsys, *base, "--overwrite", "--skip-existing")
    assert code == 2 and "contradict" in err


def test_export_convert_and_combine_keep_an_existing_output_or_name_real_options(capsys, tmp_path):
    from conftest import make_generator_file
    from PIL import Image

    model = make_generator_file(tmp_path / "g.safetensors", task="pix2pix")
    existing = tmp_path / "same.onnx"
    existing.write_bytes(b"mine")
    code, _, err = run_cli(capsys, "export", str(model), "-o", str(existing))
    assert code == 2 and f"{existing}: already exists" in err and _advice_options(err) <= _own_options("export")
    code, _, err = run_cli(capsys, "export", str(model), "-o", str(existing), "--skip-existing")
    assert code == 0 and f"kept {existing}" in err and existing.read_bytes() == b"mine"

    target = tmp_path / "converted.safetensors"
    target.write_bytes(b"mine")
    code, _, err = run_cli(capsys, "convert", str(model), "-o", str(target))
    assert code == 2 and _advice_options(err) <= _own_options("convert") and "--skip-existing" in err
    code, _, err = run_cli(capsys, "convert", str(model), "-o", str(target), "--skip-existing")
    assert code == 0 and target.read_bytes() == b"mine"

    for side in ("A", "B"):
        (tmp_path / side).mkdir()
        for name in ("x", "y"):
            Image.new("RGB", (8, 8), (10, 20, 30)).save(tmp_path / side / f"{name}.png")
    out = tmp_path / "AB"
    out.mkdir()
    (out / "x.png").write_bytes(b"mine")
    code, _, err = run_cli(capsys, "data", "combine", str(tmp_path / "A"), str(tmp_path / "B"), str(out))
    assert code == 1 and _advice_options(err) <= _own_options("data combine") and "--skip-existing" in err
    code, _, err = run_cli(
        capsys, "data", "combine", str(tmp_path / "A"), str(tmp_path / "B"), str(out), "--skip-existing"
    )
    assert code == 0 and "2 kept" in err and (out / "x.png").read_bytes() == b"mine"


def test_a_file_that_appears_during_an_export_is_not_replaced(capsys, tmp_path, monkeypatch):
    """Check, then replace: the file another process wrote while this one exported stays."""
    pytest.importorskip("onnxruntime")
    from conftest import make_generator_file

    import img2img.onnx.export as onnx_export

    model = make_generator_file(tmp_path / "g.safetensors", task="pix2pix")
    output = tmp_path / "same.onnx"
    real_finish = onnx_export._finish

    def finish_while_another_writes(*args, **kwargs):
        output.write_bytes(b"the other process's export")  # after the check, before the move
        return real_finish(*args, **kwargs)

    monkeypatch.setattr(onnx_export, "_finish", finish_while_another_writes)
    code, _, err = run_cli(capsys, "export", str(model), "-o", str(output), "--no-check")
    assert code == 1 and f"{output}: already exists" in err and "wrote" not in err
    assert output.read_bytes() == b"the other process's export"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".img2img-tmp")] == []


def test_train_skip_existing_keeps_a_finished_run_and_points_an_unfinished_one_to_resume(capsys, tmp_path, shapes):
    run = tmp_path / "run"
    run.mkdir()
    status = {"schema": 1, "state": "finished", "pid": 1, "epoch": 2, "iteration": 8, "checkpoint": None}
    (run / "status.json").write_text(json.dumps(status))
    args = ["train", "pix2pix", *TRAIN, "--data", str(shapes), "--out", str(run), "--skip-existing"]
    code, _, err = run_cli(capsys, *args)
    assert code == 0 and f"kept {run}: it holds a finished run" in err
    (run / "status.json").write_text(json.dumps({**status, "state": "interrupted"}))
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "latest.safetensors").write_bytes(b"x")
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and f"continue it with --resume {run}" in err


def test_a_stop_during_validation_scores_stops_within_one_image(tmp_path, monkeypatch):
    """SIGTERM at a known point (the first validation pair scored): the rest of the validation
    is left out, the epoch's checkpoint is written and the run ends with 143."""
    from img2img.errors import TrainingInterrupted
    from img2img.eval import metrics
    from img2img.train import train_pix2pix
    from img2img.train.checkpoint import load_checkpoint
    from img2img.train.config import Pix2PixConfig

    data = write_shapes_dataset(tmp_path / "shapes", n_train=2, n_val=6, size=32)
    scored = []
    real_psnr = metrics.psnr

    def psnr_then_sigterm(a, b):
        scored.append(1)
        if len(scored) == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # handled by the trainer: a stop request
        return real_psnr(a, b)

    monkeypatch.setattr(metrics, "psnr", psnr_then_sigterm)
    config = Pix2PixConfig(
        netg="unet_32", ngf=4, ndf=4, load_size=36, crop_size=32, seed=0, val_size=6, n_samples=2,
        n_epochs=3, n_epochs_decay=0, data=str(data), out=str(tmp_path / "run"), val_metrics="psnr",
    )  # fmt: skip
    log = io.StringIO()
    with pytest.raises(TrainingInterrupted) as stopped:
        train_pix2pix(config, stream=log, live=False)
    assert stopped.value.exit_code == 143
    assert len(scored) == 1, "the validation went on after the stop request"
    assert "--val-metrics left out: stopping" in log.getvalue()
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.safetensors").info["epoch"] == 1
    assert not (tmp_path / "run" / "samples" / "epoch_001.png").exists()  # also left out


def test_eval_counts_a_translation_it_scored_but_could_not_save_as_not_saved(capsys, tmp_path, monkeypatch):
    """A saved output that another process wrote meanwhile: an error line, "1 not saved", and
    the pair is still in PSNR (it was scored): the counts agree with what was scored."""
    from conftest import make_generator_file
    from PIL import Image

    import img2img.files.imageio as imageio
    from img2img.errors import OutputExistsError

    model = make_generator_file(tmp_path / "g.safetensors", task="pix2pix")
    for folder in ("in", "truth"):
        (tmp_path / folder).mkdir()
        for index in range(2):
            Image.new("RGB", (16, 16), (40 * index, 90, 200)).save(tmp_path / folder / f"{index}.png")
    real_write = imageio.write_image

    def another_process_wrote_1(image, path, fmt=None, *, replace=False):
        if Path(path).name == "1.png":
            raise OutputExistsError(f"{path}: already exists")
        return real_write(image, path, fmt, replace=replace)

    monkeypatch.setattr(imageio, "write_image", another_process_wrote_1)
    code, out, err = run_cli(
        capsys, "eval", "--model", str(model), "--input", str(tmp_path / "in"), "--target", str(tmp_path / "truth"),
        "--metrics", "psnr", "--save-outputs", str(tmp_path / "kept"),
    )  # fmt: skip
    assert code == 1
    assert "1.png: already exists" in err and "not saved (still scored)" in err
    assert "1 not saved" in out and "left out" not in out and "(2 pairs)" in out
