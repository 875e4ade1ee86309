"""Inputs: the one folder walker (symbolic links, loops, special files, globs) and translate's
handling of inputs that would hang, abort the batch or be skipped without a word."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from img2img.cli import main
from img2img.jobs import plan_jobs
from img2img.walk import glob_images, list_images

needs_posix = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs and symbolic links")


def make_image(path: Path, size=(8, 6), mode="RGB", seed=0) -> Path:
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.convert(mode).save(path)
    return path


def run(args: list, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(["translate", *map(str, args)])
    out, err = capsys.readouterr()
    return info.value.code or 0, out, err


def written(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """photos/{a.png, UPPER.JPG, sub/b.png, sub/loop -> photos, linked -> ../other (c.png),
    pipe.png (a FIFO), dangling.png (broken link), notes.txt, .hidden.png}"""
    root = tmp_path / "photos"
    make_image(root / "a.png")
    make_image(root / "UPPER.JPG", seed=1)
    make_image(root / "sub" / "b.png", seed=2)
    make_image(tmp_path / "other" / "c.png", seed=3)
    make_image(root / ".hidden.png", seed=4)
    (root / "notes.txt").write_text("not an image")
    os.symlink(tmp_path / "other", root / "linked")
    os.symlink("..", root / "sub" / "loop")
    os.symlink(tmp_path / "nowhere.png", root / "dangling.png")
    os.mkfifo(root / "pipe.png")
    return root


# --- the walker ----------------------------------------------------------------------------------


@needs_posix
def test_folder_follows_symlinked_folders_and_notes_what_it_skips(tree):
    listing = list_images(tree)
    assert [str(f.relative) for f in listing.images] == ["UPPER.JPG", "a.png", "linked/c.png", "sub/b.png"]
    assert listing.errors == []
    notes = "\n".join(listing.notes)
    assert f"{tree}/pipe.png: skipped: a FIFO (named pipe)" in notes
    assert f"{tree}/dangling.png: skipped: broken symbolic link" in notes
    assert f"{tree}/sub/loop: skipped: symbolic link loop" in notes
    assert len(listing.notes) == 3


@needs_posix
@pytest.mark.parametrize("pattern", ["**/*", "**", "*", "**/*.*"])
def test_glob_of_a_folder_lists_what_the_folder_lists(tree, pattern):
    folder = list_images(tree)
    globbed = glob_images(f"{tree}/{pattern}")
    assert [f.relative for f in globbed.images] == [f.relative for f in folder.images]
    assert [f.path for f in globbed.images] == [f.path for f in folder.images]


@needs_posix
def test_glob_matches_components_ignoring_case_and_never_loops(tree):
    assert [str(f.relative) for f in glob_images(f"{tree}/**/*.jpg").images] == ["UPPER.JPG"]
    assert [str(f.relative) for f in glob_images(f"{tree}/*/*.png").images] == ["linked/c.png", "sub/b.png"]
    assert glob_images(f"{tree}/nothing*/*.png").images == []


@needs_posix
def test_unreadable_folder_is_an_error_not_an_empty_folder(tree, monkeypatch):
    locked = tree / "locked"
    make_image(locked / "d.png")
    scandir = os.scandir

    def refuse_locked(path):  # chmod 0 does not stop root, who runs the tests in containers
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr("img2img.walk.os.scandir", refuse_locked)
    listing = list_images(tree)
    jobs, errors = plan_jobs([str(tree)], output=None, out_dir=tree.parent / "out", on_note=lambda _: None)
    assert listing.errors == [f"{locked}: cannot list folder: Permission denied"]
    assert [e.message for e in errors] == [f"{locked}: cannot list folder: Permission denied"]
    assert len(jobs) == 4  # the rest is still translated


@needs_posix
def test_plan_gives_notes_and_the_same_jobs_for_folder_and_glob(tree, tmp_path):
    out = tmp_path / "out"
    notes: list[str] = []
    jobs, errors = plan_jobs([str(tree)], output=None, out_dir=out, on_note=notes.append)
    glob_jobs, glob_errors = plan_jobs([f"{tree}/**/*"], output=None, out_dir=out, on_note=lambda _: None)
    assert errors == glob_errors == []
    assert [j.output for j in jobs] == [j.output for j in glob_jobs]
    assert sorted(str(j.output.relative_to(out)) for j in jobs) == ["UPPER.JPG", "a.png", "linked/c.png", "sub/b.png"]
    assert len(notes) == 3


# --- translate: nothing hangs, nothing aborts the batch ---------------------------------------------


@needs_posix
def test_fifo_in_a_folder_is_skipped_with_a_note_instead_of_hanging(tiny_generator, tree, tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "img2img", "translate", str(tree), "-m", str(tiny_generator), "--out-dir", str(out)],
        capture_output=True,
        timeout=90,  # before the walker, opening the FIFO blocked forever
    )
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    assert f"img2img: note: {tree}/pipe.png: skipped: a FIFO (named pipe), not an image file\n" in stderr
    assert "img2img: error" not in stderr
    assert written(out) == ["UPPER.JPG", "a.png", "linked/c.png", "sub/b.png"]


@needs_posix
def test_named_pipe_given_as_input_is_read_as_a_stream(tiny_generator, tmp_path, capsys):
    source = make_image(tmp_path / "a.png")
    pipe = tmp_path / "incoming"
    os.mkfifo(pipe)

    def feed():
        with open(pipe, "wb") as writer:
            writer.write(source.read_bytes())

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    code, _, stderr = run([pipe, "-m", tiny_generator, "-o", tmp_path / "out.png"], capsys)
    feeder.join(5)
    assert (code, stderr) == (0, "")
    assert Image.open(tmp_path / "out.png").size == (8, 6)


@needs_posix
def test_socket_given_as_input_is_an_error_without_opening_it(tiny_generator, tmp_path, capsys):
    make_image(tmp_path / "b.png")
    path = tmp_path / "s.png"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    try:
        code, _, stderr = run([path, tmp_path / "b.png", "-m", tiny_generator, "--out-dir", tmp_path / "out"], capsys)
    finally:
        server.close()
    assert code == 1
    assert stderr == f"img2img: error: {path}: is a socket, not an image file\n"
    assert written(tmp_path / "out") == ["b.png"]


def test_out_of_memory_decoding_fails_that_input_only(tiny_generator, tmp_path, capsys, monkeypatch):
    from PIL import ImageFile

    folder = tmp_path / "in"
    make_image(folder / "a_big.png", size=(13, 11))
    make_image(folder / "b.png", seed=1)
    make_image(folder / "c.png", seed=2)
    load = ImageFile.ImageFile.load

    def load_or_run_out(self):
        if self.size == (13, 11):
            raise MemoryError
        return load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load_or_run_out)
    code, _, stderr = run([folder, "-m", tiny_generator, "--out-dir", tmp_path / "out"], capsys)
    assert code == 1
    size = (folder / "a_big.png").stat().st_size
    assert stderr == (
        f"img2img: error: {folder}/a_big.png: out of memory decoding a 13x11 image "
        f"(0.0 megapixels, a {size} bytes file)\n"
    )
    assert written(tmp_path / "out") == ["b.png", "c.png"]


@pytest.mark.parametrize(
    "error",
    [
        MemoryError(),
        RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 1099511627776 bytes."),
        RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory"),
    ],
    ids=["MemoryError", "not-enough-memory", "cant-allocate"],
)
def test_out_of_memory_translating_fails_that_input_only(tiny_generator, tmp_path, capsys, monkeypatch, error):
    from img2img.inference import Translator

    folder = tmp_path / "in"
    make_image(folder / "a_big.png", size=(13, 11))
    make_image(folder / "b.png", seed=1)
    translate_inputs = Translator._translate_inputs

    def run_out_on_big(self, inputs):
        if any(item.size == (13, 11) for item in inputs):
            raise error
        return translate_inputs(self, inputs)

    monkeypatch.setattr(Translator, "_translate_inputs", run_out_on_big)
    code, _, stderr = run([folder, "-m", tiny_generator, "--out-dir", tmp_path / "out"], capsys)
    assert code == 1
    assert stderr.startswith(f"img2img: error: {folder}/a_big.png: out of memory translating a 13x11 image")
    assert len(stderr.splitlines()) == 1
    assert written(tmp_path / "out") == ["b.png"]


def _stdin(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


def test_stdin_is_read_with_a_bound(tiny_generator, tmp_path, capsys, monkeypatch):
    data = make_image(tmp_path / "a.png").read_bytes()
    _stdin(monkeypatch, data)
    monkeypatch.setenv("IMG2IMG_STDIN_LIMIT", str(len(data) - 1))
    code, _, stderr = run(["-", "-m", tiny_generator, "-o", tmp_path / "out.png"], capsys)
    assert code == 1
    assert stderr == (
        f"img2img: error: stdin: more than {len(data) - 1} bytes, the limit for standard input and "
        "pipes (raise it with --stdin-limit or IMG2IMG_STDIN_LIMIT)\n"
    )
    assert not (tmp_path / "out.png").exists()

    _stdin(monkeypatch, data)
    code, _, stderr = run(["-", "-m", tiny_generator, "-o", tmp_path / "out.png", "--stdin-limit", "1K"], capsys)
    assert (code, stderr) == (0, "")  # the option wins over the variable
    _stdin(monkeypatch, data)
    code, _, stderr = run(["-", "-m", tiny_generator, "-o", tmp_path / "x.png", "--stdin-limit", "lots"], capsys)
    assert code == 2 and "'lots' is not a size in bytes" in stderr


def test_multi_frame_input_says_it_used_the_first_frame_once(tiny_generator, tmp_path, capsys):
    frames = [Image.new("RGB", (8, 6), colour) for colour in ("red", "blue", "green")]
    gif = tmp_path / "in" / "anim.gif"
    gif.parent.mkdir()
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=50, loop=0)
    tiff = tmp_path / "in" / "pages.tif"
    frames[0].save(tiff, save_all=True, append_images=frames[1:2])
    code, _, stderr = run([tmp_path / "in", "-m", tiny_generator, "--out-dir", tmp_path / "out"], capsys)
    assert code == 0
    assert stderr.splitlines() == [
        f"img2img: note: {gif}: has 3 frames; using the first",
        f"img2img: note: {tiff}: has 2 frames; using the first",
    ]
    assert written(tmp_path / "out") == ["anim.gif", "pages.tif"]
