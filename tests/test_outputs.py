"""Outputs are never clobbered, never half written, never left behind (issue #10 §2).

img2img.files.atomic (no-replace moves, registered temporaries, stale ones of killed processes), the
signals every command unwinds on, --skip-existing, names the file system refuses or that are not
UTF-8, -o -, and output formats checked before any work.
"""

from __future__ import annotations

import base64
import errno
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from PIL import Image
from test_translate import make_image, run

from img2img.files import atomic

REPO_ROOT = Path(__file__).resolve().parent.parent


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".img2img-tmp.*"))


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# --- the atomic writer --------------------------------------------------------------------------


def _no_native_rename(monkeypatch):
    monkeypatch.setattr(atomic, "_native_rename", None)


def _no_hard_links(monkeypatch):
    monkeypatch.setattr(atomic, "_native_rename", None)

    def refuse(*args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", refuse)


@pytest.mark.parametrize(
    "method", [lambda mp: None, _no_native_rename, _no_hard_links], ids=["native", "link", "claim"]
)
def test_no_replace_move_refuses_a_file_that_appeared_meanwhile(tmp_path, monkeypatch, method):
    method(monkeypatch)
    target = tmp_path / "out.png"
    with pytest.raises(FileExistsError):
        with atomic.atomic_path(target, replace=False) as tmp:
            tmp.write_bytes(b"mine")
            target.write_bytes(b"theirs")  # another process wins the race
    assert target.read_bytes() == b"theirs"
    assert os.listdir(tmp_path) == ["out.png"]
    with atomic.atomic_path(tmp_path / "new.png", replace=False) as tmp:
        tmp.write_bytes(b"mine")
    assert (tmp_path / "new.png").read_bytes() == b"mine"
    assert sorted(os.listdir(tmp_path)) == ["new.png", "out.png"]


def test_the_native_no_replace_rename_is_used_where_the_system_has_one(tmp_path, monkeypatch):
    if atomic._load_native_rename() is None:
        pytest.skip("no renameat2/renamex_np here")

    def no_link(*args, **kwargs):
        raise AssertionError("fell back to a hard link")

    monkeypatch.setattr(os, "link", no_link)
    (tmp_path / "a").write_bytes(b"a")
    (tmp_path / "b").write_bytes(b"b")
    with pytest.raises(FileExistsError):
        atomic.rename_no_replace(tmp_path / "a", tmp_path / "b")
    atomic.rename_no_replace(tmp_path / "a", tmp_path / "c")
    assert sorted(os.listdir(tmp_path)) == ["b", "c"] and (tmp_path / "b").read_bytes() == b"b"


def test_write_image_does_not_replace_unless_asked(tmp_path):
    from img2img.errors import OutputExistsError
    from img2img.files.imageio import write_image

    target = tmp_path / "out.png"
    target.write_bytes(b"theirs")
    with pytest.raises(OutputExistsError, match="already exists"):
        write_image(Image.new("RGB", (4, 4)), target)
    assert target.read_bytes() == b"theirs"
    write_image(Image.new("RGB", (4, 4)), target, replace=True)
    assert Image.open(target).size == (4, 4)


def test_a_temporary_is_registered_before_it_exists(tmp_path, monkeypatch):
    """An interruption right after the file is created (before any caller could remember it)
    still removes it: the name was registered first."""
    real_open = os.open

    def open_then_interrupted(path, flags, mode=0o777):
        fd = real_open(path, flags, mode)
        os.close(fd)
        raise KeyboardInterrupt  # as a signal handler would, between open() and its caller

    monkeypatch.setattr(os, "open", open_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic.create_temporary(tmp_path)
    assert os.listdir(tmp_path) == []


def test_registered_temporaries_are_removed_at_the_end(tmp_path):
    tmp = atomic.create_temporary(tmp_path)
    assert tmp.name.startswith(atomic.TEMP_PREFIX) and len(os.fsencode(tmp.name)) <= 38
    atomic.remove_registered_temporaries()
    assert os.listdir(tmp_path) == []


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    host = atomic.temporary_name().split(".")[2]
    dead = tmp_path / f".img2img-tmp.{host}.{dead_pid()}.0123abcd"
    alive = tmp_path / f".img2img-tmp.{host}.{os.getppid()}.0123abcd"
    other_host = tmp_path / f".img2img-tmp.{'0' * 8 if host != '0' * 8 else '1' * 8}.{dead_pid()}.0123abcd"
    unrelated = tmp_path / ".out.png.abc.tmp"
    for path in (dead, alive, other_host, unrelated):
        path.write_bytes(b"x")
    assert atomic.remove_stale_temporaries(tmp_path, force=True) == [dead]
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in (alive, other_host, unrelated))


# --- translate: no clobbering, resuming -------------------------------------------------------------


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    for index in range(3):
        make_image(root / f"p{index}.png", (12, 8), seed=index)
    return root


def test_an_output_written_after_planning_is_not_replaced(tiny_generator, photos, tmp_path, capsys, monkeypatch):
    """Another process writes an output between this run's planning and its write: that input
    fails (exit 1), the other file is kept; with --skip-existing it is reported as skipped."""
    import img2img.translate.jobs

    real_plan = img2img.translate.jobs.plan_jobs

    def plan_then_someone_writes(*args, **kwargs):
        jobs, errors = real_plan(*args, **kwargs)
        jobs[1].output.parent.mkdir(parents=True, exist_ok=True)
        jobs[1].output.write_bytes(b"theirs")
        return jobs, errors

    monkeypatch.setattr(img2img.translate.jobs, "plan_jobs", plan_then_someone_writes)
    out = tmp_path / "out"
    code, stdout, stderr = run([photos, "-m", tiny_generator, "--out-dir", out, "--json"], capsys)
    assert code == 1
    assert (
        stderr
        == f"img2img: error: {photos}/p1.png: {out}/p1.png: already exists (use --overwrite to replace it, or --skip-existing to keep it)\n"
    )
    assert (out / "p1.png").read_bytes() == b"theirs"
    assert [json.loads(line)["status"] for line in stdout.splitlines()] == ["ok", "error", "ok"]
    (out / "p1.png").unlink()
    for path in out.iterdir():
        path.unlink()
    code, stdout, stderr = run([photos, "-m", tiny_generator, "--out-dir", out, "--json", "--skip-existing"], capsys)
    assert (code, stderr) == (0, "")
    assert [json.loads(line)["status"] for line in stdout.splitlines()] == ["ok", "skipped", "ok"]
    assert (out / "p1.png").read_bytes() == b"theirs"


def test_skip_existing_writes_only_the_missing_outputs(tiny_generator, photos, tmp_path, capsys):
    out = tmp_path / "out"
    assert run([photos, "-m", tiny_generator, "--out-dir", out], capsys)[0] == 0
    kept = (out / "p0.png").read_bytes()
    (out / "p0.png").write_bytes(b"not an image, but there")
    (out / "p2.png").unlink()
    code, stdout, stderr = run([photos, "-m", tiny_generator, "--out-dir", out, "--skip-existing", "--json"], capsys)
    assert (code, stderr) == (0, "")
    records = {Path(r["input"]).name: r for r in map(json.loads, stdout.splitlines())}
    assert {name: r["status"] for name, r in records.items()} == {
        "p0.png": "skipped",
        "p1.png": "skipped",
        "p2.png": "ok",
    }
    assert records["p0.png"]["output"] == str(out / "p0.png")
    assert (out / "p0.png").read_bytes() == b"not an image, but there"
    assert Image.open(out / "p2.png").size == (12, 8) and kept
    # Everything there: nothing to do, exit 0.
    code, stdout, stderr = run([photos, "-m", tiny_generator, "--out-dir", out, "--skip-existing"], capsys)
    assert (code, stdout, stderr) == (0, "", "")
    code, _, stderr = run([photos, "-m", tiny_generator, "--out-dir", out, "--skip-existing", "--overwrite"], capsys)
    assert code == 2 and "contradict" in stderr


# Runs translate, but after planning waits until every process of the test has planned: they
# all then write into a folder they all found empty.
_PLAN_THEN_WAIT = textwrap.dedent(
    """
    import pathlib, sys, time
    import img2img.translate.jobs
    barrier, me, count = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    real_plan = img2img.translate.jobs.plan_jobs

    def plan_then_wait(*args, **kwargs):
        planned = real_plan(*args, **kwargs)
        (barrier / me).touch()
        deadline = time.monotonic() + 120
        while len(list(barrier.iterdir())) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return planned

    img2img.translate.jobs.plan_jobs = plan_then_wait
    from img2img.cli import main
    main(sys.argv[4:])
    """
)


def test_two_processes_writing_one_folder_never_replace_each_others_files(tiny_generator, tmp_path):
    photos = tmp_path / "many"
    for index in range(8):
        make_image(photos / f"{index:02d}.png", (8, 8), seed=index)
    out, barrier = tmp_path / "out", tmp_path / "barrier"
    barrier.mkdir()
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _PLAN_THEN_WAIT,
                str(barrier),
                str(me),
                "2",
                "translate",
                str(photos),
                "-m",
                str(tiny_generator),
                "--out-dir",
                str(out),
                "--json",
                "--device",
                "cpu",
            ],  # fmt: skip
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
        for me in range(2)
    ]
    results = [process.communicate(timeout=300) for process in processes]  # a hang guard
    statuses = [[json.loads(line)["status"] for line in stdout.splitlines()] for stdout, _ in results]
    # Both planned all 8 outputs; each output was written by exactly one of them, the other
    # says it already exists.
    assert [len(s) for s in statuses] == [8, 8]
    assert sum(s.count("ok") for s in statuses) == 8
    for process, (_, stderr), status in zip(processes, results, statuses):
        assert process.returncode == (1 if "error" in status else 0)
        assert all("already exists" in line for line in stderr.decode().splitlines())
    assert sorted(p.name for p in out.iterdir()) == [f"{i:02d}.png" for i in range(8)]
    assert temporaries(out) == []


def test_a_run_removes_stale_temporaries_in_its_output_folder(tiny_generator, photos, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    host = atomic.temporary_name().split(".")[2]
    stale = [
        out / f".img2img-tmp.{host}.{dead_pid()}.00000000",
        out / "sub" / f".img2img-tmp.{host}.{dead_pid()}.00000001",
    ]
    for path in stale:
        path.write_bytes(b"half an image")
    make_image(photos / "sub" / "q.png", (8, 8))
    assert run([photos, "-m", tiny_generator, "--out-dir", out], capsys)[0] == 0
    assert temporaries(out) == []
    # Also when there is nothing left to write (--skip-existing).
    stale[0].write_bytes(b"half an image")
    assert run([photos, "-m", tiny_generator, "--out-dir", out, "--skip-existing"], capsys)[0] == 0
    assert temporaries(out) == []


# --- signals ------------------------------------------------------------------------------------------

# Runs translate with every image write stalled half way (a temporary file exists), so that the
# test can signal it at that moment. The marker file says "stalled now".
_STALLED_TRANSLATE = textwrap.dedent(
    """
    import pathlib, sys, time
    marker = pathlib.Path(sys.argv[1])
    real_write_bytes = pathlib.Path.write_bytes
    calls = []

    def write_bytes(self, data):
        calls.append(self)
        if len(calls) == 2:  # the first output is written, the second stalls half way
            with open(self, "wb") as handle:
                handle.write(data[: len(data) // 2])
            marker.write_text("stalled")
            time.sleep(600)  # until the test's signal ends it (600 s: a hang guard)
        return real_write_bytes(self, data)

    pathlib.Path.write_bytes = write_bytes
    from img2img.cli import main
    main(sys.argv[2:])
    """
)


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_stop_signal_removes_the_temporary_and_says_what_was_written(tiny_generator, photos, tmp_path, signum, code):
    out = tmp_path / "out"
    marker = tmp_path / "stalled"
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _STALLED_TRANSLATE,
            str(marker),
            "translate",
            str(photos),
            "-m",
            str(tiny_generator),
            "--out-dir",
            str(out),
            "--device",
            "cpu",
        ],  # fmt: skip
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        deadline = time.monotonic() + 300  # a hang guard
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert temporaries(out) != []  # the half-written one
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=120)  # a hang guard: the stall lasts until the signal
    finally:
        process.kill()
        process.wait()
    assert process.returncode == code
    name = signal.Signals(signum).name
    assert stderr.decode() == f"img2img: error: interrupted by {name}: wrote 1 of 3 outputs; no partial files left\n"
    assert [p.name for p in out.iterdir()] == ["p0.png"]


# --- names --------------------------------------------------------------------------------------------


def test_a_255_byte_name_works_and_a_refused_name_fails_only_that_input(tiny_generator, tmp_path, capsys):
    photos = tmp_path / "photos"
    longest = "a" * 251 + ".png"
    make_image(photos / longest, (8, 8))
    make_image(photos / "b.png", (8, 8), seed=1)
    out = tmp_path / "out"
    assert run([photos, "-m", tiny_generator, "--out-dir", out], capsys)[0] == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([longest, "b.png"])
    # As .jpeg the long name is 256 bytes: that input fails, the other one is still written.
    code, _, stderr = run([photos, "-m", tiny_generator, "--out-dir", tmp_path / "jpeg", "--ext", "jpeg"], capsys)
    assert code == 1
    assert stderr.count("\n") == 1 and "File name too long" in stderr and longest in stderr
    assert [p.name for p in (tmp_path / "jpeg").iterdir()] == ["b.jpeg"]


def test_names_with_newlines_and_bytes_that_are_not_utf8(tiny_generator, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    good = os.fsdecode(b"ok\nname\xff.png")
    bad = os.fsdecode(b"bro\nken\xfe.png")
    make_image(photos / good, (8, 8))
    (photos / bad).write_bytes(b"not an image")
    out = tmp_path / "out"
    code, stdout, stderr = run([photos, "-m", tiny_generator, "--out-dir", out, "--json"], capsys)
    assert code == 1
    assert stderr.count("\n") == 1 and "bro\\nken\\xfe.png" in stderr
    records = [json.loads(line) for line in stdout.splitlines()]
    by_status = {r["status"]: r for r in records}
    for status, name in (("ok", good), ("error", bad)):
        record = by_status[status]
        assert base64.b64decode(record["input_bytes"]) == os.fsencode(str(photos / name))
        assert "\ufffd" in record["input"]
        assert base64.b64decode(record["output_bytes"]) == os.fsencode(str(out / name))
    assert Path(os.fsdecode(base64.b64decode(by_status["ok"]["output_bytes"]))).is_file()
    # UTF-8 names need no base64: "input" maps back exactly.
    plain = photos / "new\nline.png"
    make_image(plain, (8, 8))
    code, stdout, _ = run([plain, "-m", tiny_generator, "-o", tmp_path / "o.png", "--json"], capsys)
    record = json.loads(stdout)
    assert code == 0 and record["input"] == str(plain) and "input_bytes" not in record


# --- stdout and formats -----------------------------------------------------------------------------


def test_dash_output_writes_the_image_to_stdout(tiny_generator, tmp_path, capfdbinary):
    from img2img.cli import main

    photo = make_image(tmp_path / "p.png", (12, 8))
    for extra, fmt in (([], "PNG"), (["--ext", "jpg"], "JPEG")):
        with pytest.raises(SystemExit) as info:
            main(["translate", str(photo), "-m", str(tiny_generator), "-o", "-", *extra])
        stdout, stderr = capfdbinary.readouterr()
        assert (info.value.code, stderr) == (0, b"")
        image = Image.open(io.BytesIO(stdout))
        assert (image.format, image.size) == (fmt, (12, 8))
    assert sorted(tmp_path.iterdir()) == sorted([photo, tiny_generator])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--out-dir", "d", "--ext", "nope"], "--ext nope: extension '.nope' is not an image format"),
        (["--out-dir", "d", "--ext", "xbm"], "--ext xbm: cannot write XBM (.xbm)"),
        (["--out-dir", "d", "--ext", "bufr"], "--ext bufr: cannot write BUFR (.bufr)"),
        (["--out-dir", "d", "--ext", "icns"], "--ext icns: cannot write ICNS (.icns): stores fixed icon sizes"),
        (["-o", "x.msp"], "x.msp: cannot write MSP (.msp)"),
    ],
)
def test_unwritable_formats_are_usage_errors_before_any_work(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    photo = make_image(tmp_path / "p.png", (8, 8))
    # The model does not exist: the format is refused before it is even looked for.
    code, _, stderr = run([photo, "-m", "no-such-model.safetensors", *args], capsys)
    assert code == 2
    assert stderr.startswith(f"img2img: error: {message}") and stderr.count("\n") == 1
    assert sorted(os.listdir(tmp_path)) == ["p.png"]


def test_a_size_the_format_cannot_hold_fails_that_input_before_translating(tiny_generator, tmp_path, capsys):
    photos = tmp_path / "photos"
    make_image(photos / "big.png", (300, 20))
    make_image(photos / "small.png", (40, 30), seed=1)
    out = tmp_path / "out"
    code, _, stderr = run([photos, "-m", tiny_generator, "--out-dir", out, "--ext", "ico"], capsys)
    assert code == 1
    assert (
        stderr
        == f"img2img: error: {photos}/big.png: {out}/big.ico: ICO holds at most 256×256 pixels, the image is 300×20 (choose another format with --ext or the output's extension)\n"
    )
    assert [p.name for p in out.iterdir()] == ["small.ico"]
    assert Image.open(out / "small.ico").size == (40, 30)  # not shrunk to an icon size


def test_format_size_limits():
    from img2img.files.formats import check_size

    check_size("PNG", (100_000, 10), "x")
    check_size("JPEG", (65_500, 10), "x")
    with pytest.raises(Exception, match="JPEG holds at most 65500"):
        check_size("JPEG", (10, 65_501), "x")
    with pytest.raises(Exception, match="WEBP holds at most 16383"):
        check_size("WEBP", (16_384, 1), "x")


# --- other writers ------------------------------------------------------------------------------------


def test_convert_does_not_replace_an_output_written_meanwhile(tmp_path, reference_fixtures, capsys, monkeypatch):
    from img2img.cli import main
    from img2img.models import weights

    out = tmp_path / "g.safetensors"
    real_save = weights.save_generator

    def someone_writes_first(path, *args, **kwargs):
        Path(path).write_bytes(b"theirs")
        real_save(path, *args, **kwargs)

    monkeypatch.setattr(weights, "save_generator", someone_writes_first)
    with pytest.raises(SystemExit) as info:
        main(["convert", str(reference_fixtures / "resnet_9blocks_ngf16/checkpoint.pth"), "-o", str(out),
              "--arch", "resnet_9blocks", "--ngf", "16"])  # fmt: skip
    assert info.value.code == 1
    assert (
        capsys.readouterr().err
        == f"img2img: error: {out}: already exists (use --overwrite to replace it, or --skip-existing to keep it)\n"
    )
    assert out.read_bytes() == b"theirs" and temporaries(tmp_path) == []


def test_interrupted_commands_name_what_they_wrote(tmp_path, capsys, monkeypatch):
    """Commands without a summary of their own say which files they completed."""
    from img2img.cli import main
    from img2img.data import combine
    from img2img.runtime.signals import Interrupted

    for side in ("A", "B"):
        for index in range(2):
            make_image(tmp_path / side / f"{index}.png", (8, 8), seed=index)
    real_read = combine.read_image
    opened = []

    def read_then_signal(path, *args, **kwargs):
        opened.append(path)
        if len(opened) == 3:  # the first pair is written, the second is being read
            raise Interrupted(signal.SIGTERM)
        return real_read(path, *args, **kwargs)

    monkeypatch.setattr(combine, "read_image", read_then_signal)
    with pytest.raises(SystemExit) as info:
        main(["data", "combine", str(tmp_path / "A"), str(tmp_path / "B"), str(tmp_path / "AB")])
    assert info.value.code == 143
    assert capsys.readouterr().err == (
        f"img2img: error: interrupted by SIGTERM: wrote {tmp_path / 'AB' / '0.png'}; no partial files left\n"
    )
    assert [p.name for p in (tmp_path / "AB").iterdir()] == ["0.png"]


# --- the signal handlers ------------------------------------------------------------------------------


@pytest.fixture
def saved_handlers():
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    signal.signal(signal.SIGHUP, lambda signum, frame: None)  # a stray SIGHUP must not end pytest
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_stop_signals_raise_interrupted_and_ignored_ones_stay_ignored(saved_handlers):
    from img2img.runtime import signals as _signals

    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
    _signals.install()
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    with pytest.raises(_signals.Interrupted) as info:
        signal.raise_signal(signal.SIGTERM)  # handled before it returns
    assert (info.value.signal_name, info.value.exit_code) == ("SIGTERM", 143)


def test_training_stops_after_the_iteration_on_sighup_too(saved_handlers):
    from img2img.train.signals import StopSignals

    messages: list[str] = []
    with StopSignals(messages.append) as stop:
        signal.raise_signal(signal.SIGHUP)  # handled before it returns
    assert stop.requested and stop.exit_code == 129 and messages[0].startswith("SIGHUP: stopping")


def test_data_combine_does_not_replace_an_output_written_meanwhile(tmp_path, capsys, monkeypatch):
    from img2img.cli import main
    from img2img.data import combine

    for side in ("A", "B"):
        make_image(tmp_path / side / "0.png", (8, 8))
    target = tmp_path / "AB" / "0.png"
    real_read = combine.read_image

    def someone_writes_first(path, *args, **kwargs):
        if not target.exists():  # after the check that nothing is there, before the write
            target.parent.mkdir(exist_ok=True)
            target.write_bytes(b"theirs")
        return real_read(path, *args, **kwargs)

    monkeypatch.setattr(combine, "read_image", someone_writes_first)
    with pytest.raises(SystemExit) as info:
        main(["data", "combine", str(tmp_path / "A"), str(tmp_path / "B"), str(tmp_path / "AB")])
    assert info.value.code == 1
    assert capsys.readouterr().err.splitlines() == [
        f"img2img: error: {target}: appeared while combining (another process?); not replaced",
        f"wrote 0 A|B images to {tmp_path / 'AB'}",
    ]
    assert target.read_bytes() == b"theirs" and temporaries(tmp_path) == []


def test_looking_in_the_model_cache_removes_stale_downloads(tmp_path, monkeypatch, tiny_generator):
    from img2img.hub import registry

    monkeypatch.setenv("IMG2IMG_CACHE", str(tmp_path / "cache"))
    cached = registry.cached_model_path("tiny")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(tiny_generator.read_bytes())
    host = atomic.temporary_name().split(".")[2]
    stale = cached.parent / f".img2img-tmp.{host}.{dead_pid()}.00000000"
    stale.write_bytes(b"half a download")
    assert registry.resolve_model("tiny") == cached
    assert sorted(os.listdir(cached.parent)) == ["tiny.safetensors"]


def test_a_signal_while_an_error_is_on_its_way_out_reports_the_error(capsys, monkeypatch):
    """torchrun SIGTERMs the other processes when one fails: the error, not the signal, is news."""
    from img2img.cli import main
    from img2img.errors import Img2ImgError
    from img2img.runtime import signals as _signals

    def fail_then_signal(*args, **kwargs):
        try:
            raise Img2ImgError("stopped because another process of this run failed")
        finally:
            raise _signals.Interrupted(signal.SIGTERM)

    monkeypatch.setattr("img2img.hub.registry.list_models", fail_then_signal)
    with pytest.raises(SystemExit) as info:
        main(["models", "list"])
    assert info.value.code == 1
    assert capsys.readouterr().err == "img2img: error: stopped because another process of this run failed\n"


@pytest.mark.parametrize("use", ["named model", "reference checkpoint"])
def test_looking_in_the_model_cache_cleans_all_of_it(tmp_path, monkeypatch, tiny_generator, reference_fixtures, use):
    # Downloads (models/) and conversions (converted/) of killed processes are both removed,
    # whichever part of the cache the run looks in.
    from img2img.hub import registry

    monkeypatch.setenv("IMG2IMG_CACHE", str(tmp_path / "cache"))
    cached = registry.cached_model_path("tiny")
    host = atomic.temporary_name().split(".")[2]
    stale = [tmp_path / "cache" / folder / f".img2img-tmp.{host}.{dead_pid()}.0000000{i}"
             for i, folder in enumerate(("models", "converted"))]  # fmt: skip
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a file")
    if use == "named model":
        cached.write_bytes(tiny_generator.read_bytes())
        registry.resolve_model("tiny")
    else:
        registry.resolve_model(str(reference_fixtures / "resnet_9blocks_ngf16" / "checkpoint.pth"))
    assert [path for path in stale if path.exists()] == []
