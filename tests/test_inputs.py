"""Inputs: the one folder walker (symbolic links, loops, special files, globs) and translate's
handling of inputs that would hang, abort the batch or be skipped without a word."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from img2img.cli import main
from img2img.files.walk import glob_images, list_images
from img2img.translate.jobs import plan_jobs

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


@contextlib.contextmanager
def fails_instead_of_hanging(seconds: int):
    """Raise TimeoutError in the test if the block blocks (on a FIFO, say) for ``seconds``."""

    def hung(signum, frame):
        raise TimeoutError(f"blocked for {seconds} s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


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

    monkeypatch.setattr("img2img.files.walk.os.scandir", refuse_locked)
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
    _, errors = plan_jobs([str(tree / "dangling.png")], output=None, out_dir=out)
    assert [e.message for e in errors] == [f"{tree}/dangling.png: broken symbolic link"]


# --- translate: nothing hangs, nothing aborts the batch ---------------------------------------------


@needs_posix
def test_fifo_in_a_folder_is_skipped_with_a_note_instead_of_hanging(tiny_generator, tree, tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "img2img", "translate", str(tree), "-m", str(tiny_generator), "--out-dir", str(out)],
        capture_output=True,
        timeout=300,  # a hang guard: before the walker, opening the FIFO blocked forever
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
    from img2img.translate.translator import Translator

    folder = tmp_path / "in"
    make_image(folder / "a_big.png", size=(13, 11))
    make_image(folder / "b.png", seed=1)
    translate_inputs = Translator._translate_inputs

    def run_out_on_big(self, inputs):
        if any(item.size == (13, 11) for item in inputs):
            raise error
        return translate_inputs(self, inputs)

    monkeypatch.setattr(Translator, "_translate_inputs", run_out_on_big)
    # --tile off: with the default (auto) an image that runs out of memory is retried in tiles
    code, _, stderr = run([folder, "-m", tiny_generator, "--out-dir", tmp_path / "out", "--tile", "off"], capsys)
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


# --- the one decoder: every mode, one scale policy ---------------------------------------------------


def _mode_cases() -> dict[str, tuple[Image.Image, str | None, list[float]]]:
    """mode -> (image, the format that stores it or None for in-memory only, expected gray-or-first
    channel values in [0, 1] for its two pixels)."""
    u16 = np.array([[1000, 65535]], dtype=np.uint16)
    rgb = np.array([[[255, 0, 0], [0, 128, 255]]], dtype=np.uint8)
    palette = Image.fromarray(np.array([[0, 1]], dtype=np.uint8), "P")
    palette.putpalette([200, 10, 10, 10, 10, 200])
    rgba = Image.fromarray(np.dstack([rgb, [[255, 255]]]).astype(np.uint8), "RGBA")
    return {
        "1": (Image.fromarray(np.array([[0, 255]], dtype=np.uint8)).convert("1"), "PNG", [0.0, 1.0]),
        "L": (Image.fromarray(np.array([[51, 255]], dtype=np.uint8), "L"), "PNG", [0.2, 1.0]),
        "P": (palette, "PNG", [200 / 255, 10 / 255]),
        "PA": (palette.convert("PA"), "TIFF", [200 / 255, 10 / 255]),
        "LA": (Image.fromarray(np.array([[[51, 9], [255, 255]]], dtype=np.uint8), "LA"), "PNG", [0.2, 1.0]),
        "La": (
            Image.fromarray(np.array([[[51, 255], [255, 255]]], dtype=np.uint8), "LA").convert("La"),
            None,
            [0.2, 1.0],
        ),
        "RGB": (Image.fromarray(rgb, "RGB"), "PNG", [1.0, 0.0]),
        "RGBA": (rgba, "PNG", [1.0, 0.0]),
        "RGBa": (rgba.convert("RGBa"), None, [1.0, 0.0]),
        "RGBX": (Image.fromarray(rgb, "RGB").convert("RGBX"), None, [1.0, 0.0]),
        "CMYK": (Image.fromarray(rgb, "RGB").convert("CMYK"), "TIFF", [1.0, 0.0]),
        "YCbCr": (Image.fromarray(rgb, "RGB").convert("YCbCr"), "TIFF", [0.996, 0.0]),
        "LAB": (Image.fromarray(rgb, "RGB").convert("LAB"), "TIFF", [0.984, 0.055]),
        "HSV": (Image.fromarray(rgb, "RGB").convert("HSV"), None, [1.0, 0.0]),
        "I": (Image.fromarray(u16.astype(np.int32), "I"), "PPM", [1000 / 65535, 1.0]),
        "I;16": (Image.fromarray(u16), "PNG", [1000 / 65535, 1.0]),
        "I;16B": (Image.frombytes("I;16B", (2, 1), u16.astype(">u2").tobytes()), "TIFF", [1000 / 65535, 1.0]),
        "I;16L": (Image.frombytes("I;16L", (2, 1), u16.astype("<u2").tobytes()), None, [1000 / 65535, 1.0]),
        "I;16N": (Image.frombytes("I;16N", (2, 1), u16.astype("=u2").tobytes()), None, [1000 / 65535, 1.0]),
        "F": (Image.fromarray(np.array([[0.25, 7.0]], dtype=np.float32), "F"), "TIFF", [0.25, 1.0]),
    }


@pytest.mark.parametrize("mode", list(_mode_cases()))
def test_every_mode_decodes_by_the_scale_table_and_8bit_is_its_rounding(mode, tmp_path):
    from img2img.files.imageio import MODE_SCALES, read_image, to_8bit, to_model_input

    image, fmt, expected = _mode_cases()[mode]
    assert image.mode == mode
    assert mode in MODE_SCALES or mode.startswith("I;16")  # documented
    if fmt is not None:  # through a file, as a user hands it in
        path = tmp_path / f"image.{fmt.lower()}"
        image.save(path, format=fmt)
        image = read_image(path)
        assert image.mode == mode  # the file keeps the mode
    for channels in (3, 1):
        pixels = to_model_input(image, channels).pixels
        assert pixels.shape == (1, 2, channels) and pixels.dtype == np.float32
        assert 0.0 <= pixels.min() and pixels.max() <= 1.0
        if channels == 3 or mode in ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
            np.testing.assert_allclose(pixels[0, :, 0], expected, atol=0.002)
        eight = np.asarray(to_8bit(image, channels), dtype=np.float32).reshape(1, 2, channels)
        np.testing.assert_array_equal(eight, np.round(pixels * 255))


def test_float_image_with_nan_is_refused(tmp_path):
    from img2img.errors import ImageError
    from img2img.files.imageio import read_image, to_8bit, to_model_input

    path = tmp_path / "nan.tif"
    Image.fromarray(np.array([[0.5, np.nan]], dtype=np.float32), "F").save(path)
    for convert in (to_model_input, to_8bit):
        with pytest.raises(ImageError, match="NaN pixel values"):
            convert(read_image(path), 3)


def test_translate_takes_every_mode_a_file_can_hold(tiny_generator, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    stored = {mode: case for mode, case in _mode_cases().items() if case[1] is not None}
    for mode, (image, fmt, _) in stored.items():
        image.save(folder / f"{mode.replace(';', '_')}.{fmt.lower()}", format=fmt)
    code, _, stderr = run([folder, "-m", tiny_generator, "--out-dir", tmp_path / "out", "--ext", "png"], capsys)
    assert (code, stderr) == (0, "")
    assert len(written(tmp_path / "out")) == len(stored)


# --- datasets and data combine: the same walker, the same decoder ------------------------------------


def _gradient16(path: Path, size=(8, 4)) -> Path:
    """A 16-bit grayscale PNG whose values use the whole 16-bit range (a plain 8-bit reader
    clips nearly all of it to white)."""
    values = np.linspace(0, 65535, size[0] * size[1]).reshape(size[1], size[0]).astype(np.uint16)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values).save(path)
    assert Image.open(path).mode == "I;16"
    return path


def test_a_16bit_png_gives_the_same_pixels_to_translate_training_and_combine(tmp_path):
    from img2img.data import PairedDataset, Preprocess, UnpairedDataset, check_paired_data, combine_folders
    from img2img.files.imageio import read_image, to_model_input

    train = tmp_path / "paired" / "train"
    a = _gradient16(train / "A" / "x.png")
    b = make_image(train / "B" / "x.png", size=(8, 4))
    expected = np.round(to_model_input(read_image(a), 1).pixels[:, :, 0] * 255)  # translate's decoder
    assert expected.min() == 0 and expected.max() == 255 and len(np.unique(expected)) == 32  # not clipped

    def from_tensor(tensor) -> np.ndarray:  # the datasets' [-1, 1] back to 0..255
        return np.round((tensor.numpy() + 1) * 127.5)[0]

    pre = Preprocess("none", 8, 8, flip=False)
    found = check_paired_data(tmp_path / "paired", pre)
    paired = PairedDataset(found.train, pre, input_nc=1, output_nc=3, train=False)
    np.testing.assert_array_equal(from_tensor(paired[0]["input"]), expected)
    unpaired = UnpairedDataset([a], [b], pre, nc_a=1, train=False)
    np.testing.assert_array_equal(from_tensor(unpaired[0]["A"]), expected)

    written = combine_folders(train / "A", train / "B", tmp_path / "AB")
    combined = np.asarray(Image.open(written[0]).convert("RGB"))[:, :8, 0]
    np.testing.assert_array_equal(combined, expected)


@needs_posix
def test_datasets_follow_symlinked_folders_and_skip_fifos_with_a_note(tmp_path, caplog):
    from img2img.data import Preprocess, check_paired_data, check_unpaired_data

    shared = tmp_path / "linked_images"  # reached through a symbolic link
    for index in range(2):
        make_image(shared / f"s{index}.png", size=(16, 8), seed=index)
    train = tmp_path / "aligned" / "train"
    make_image(train / "a.png", size=(16, 8))
    os.symlink(shared, train / "more")
    os.symlink(".", train / "loop")
    os.mkfifo(train / "pipe.png")
    pre = Preprocess("none", 8, 8, flip=False)
    with caplog.at_level("WARNING", logger="img2img"), fails_instead_of_hanging(120):
        found = check_paired_data(tmp_path / "aligned", pre)
    assert sorted(p.a.name for p in found.train) == ["a.png", "s0.png", "s1.png"]
    notes = [r.getMessage() for r in caplog.records]
    assert any("pipe.png: skipped: a FIFO" in n for n in notes)
    assert any("loop: skipped: symbolic link loop" in n for n in notes)

    unpaired = tmp_path / "unpaired"
    make_image(unpaired / "trainA" / "a.png", size=(8, 8))
    os.symlink(shared, unpaired / "trainB")
    os.mkfifo(unpaired / "trainA" / "pipe.png")
    with fails_instead_of_hanging(120):
        found = check_unpaired_data(unpaired, Preprocess("none", 8, 8, flip=False))
    assert sorted(p.name for p in found.train_b) == ["s0.png", "s1.png"]


def test_dataset_of_a_multi_frame_file_notes_the_first_frame_once(tmp_path, caplog):
    from img2img.data import PairedDataset, Preprocess, check_paired_data

    frames = [Image.new("RGB", (16, 8), colour) for colour in ("red", "blue")]
    gif = tmp_path / "data" / "train" / "anim.gif"
    gif.parent.mkdir(parents=True)
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=50)
    pre = Preprocess("none", 8, 8, flip=False)
    with caplog.at_level("WARNING", logger="img2img"):
        found = check_paired_data(tmp_path / "data", pre)
        dataset = PairedDataset(found.train, pre, train=False)
        dataset[0], dataset[0]
    assert [r.getMessage() for r in caplog.records] == [f"{gif}: has 2 frames; using the first"]


def test_combine_reports_an_unreadable_pair_and_writes_the_others(tmp_path, capsys):
    for name in ("1", "2", "3"):
        make_image(tmp_path / "A" / f"{name}.png", size=(8, 8))
        make_image(tmp_path / "B" / f"{name}.png", size=(8, 8), seed=1)
    (tmp_path / "A" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(SystemExit) as info:
        main(["data", "combine", str(tmp_path / "A"), str(tmp_path / "B"), str(tmp_path / "AB")])
    err = capsys.readouterr().err
    assert info.value.code == 1
    errors = [line for line in err.splitlines() if line.startswith("img2img: error:")]
    assert errors == [f"img2img: error: {tmp_path}/A/2.png: cannot identify image file"]
    assert sorted(p.name for p in (tmp_path / "AB").iterdir()) == ["1.png", "3.png"]
