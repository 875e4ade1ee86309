"""`img2img translate` end to end: inputs, outputs, formats, errors and exit codes."""

from __future__ import annotations

import io
import json
import os
import pathlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_generator_file
from PIL import Image

from img2img.cli import main


def make_image(path: Path, size=(24, 16), mode="RGB", seed=0) -> Path:
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 256, (size[1], size[0], 4), dtype=np.uint8)
    image = Image.fromarray(array, "RGBA")
    image = image if mode == "RGBA" else image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def run(args: list[str], capsys) -> tuple[int, str, str]:
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as info:
        main(["translate", *map(str, args)])
    out, err = capsys.readouterr()
    return info.value.code or 0, out, err


def run_subprocess(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "img2img", "translate", *map(str, args)],
        capture_output=True,
        timeout=120,
        **kwargs,
    )


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """photos/{a.jpg, b.png, sub/c.png, notes.txt, .hidden.png}"""
    root = tmp_path / "photos"
    make_image(root / "a.jpg", (37, 21))
    make_image(root / "b.png", (16, 16), seed=1)
    make_image(root / "sub" / "c.png", (10, 30), seed=2)
    make_image(root / ".hidden.png")
    (root / "notes.txt").write_text("not an image")
    return root


def test_folder_to_out_dir_keeps_relative_names_and_sizes(tiny_generator, photos, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, stderr = run([photos, "--model", tiny_generator, "--out-dir", out], capsys)
    assert (code, stdout, stderr) == (0, "", "")
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["a.jpg", "b.png", "sub/c.png"]
    for name in written:
        with Image.open(out / name) as result, Image.open(photos / name) as source:
            assert result.size == source.size
    assert Image.open(out / "a.jpg").format == "JPEG"


def test_quoted_glob_is_expanded_relative_to_its_folder(tiny_generator, photos, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, stderr = run([f"{photos}/**/*.png", "-m", tiny_generator, "--out-dir", out, "--ext", "jpg"], capsys)
    assert (code, stderr) == (0, "")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.jpg")) == ["b.jpg", "sub/c.jpg"]


def test_inputs_that_match_nothing_are_errors(tiny_generator, photos, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    args = [photos / "b.png", tmp_path / "missing.png", f"{tmp_path}/*.webp", tmp_path / "empty"]
    code, _, stderr = run([*args, "-m", tiny_generator, "--out-dir", tmp_path / "out"], capsys)
    assert code == 1
    lines = stderr.splitlines()
    assert lines == [
        f"img2img: error: {tmp_path}/missing.png: no such file or directory",
        f"img2img: error: {tmp_path}/*.webp: no files match",
        f"img2img: error: {tmp_path}/empty: no images in this folder",
    ]
    assert (tmp_path / "out" / "b.png").is_file()


def test_json_lines(tiny_generator, photos, tmp_path, capsys):
    (photos / "broken.png").write_bytes(b"\x89PNG broken")
    code, stdout, _ = run([photos, "-m", tiny_generator, "--out-dir", tmp_path / "out", "--json"], capsys)
    assert code == 1
    records = {Path(r["input"]).name: r for r in map(json.loads, stdout.splitlines())}
    assert set(records) == {"a.jpg", "b.png", "c.png", "broken.png"}
    ok = records["a.jpg"]
    assert ok["status"] == "ok" and (ok["width"], ok["height"]) == (37, 21)
    assert ok["output"] == str(tmp_path / "out" / "a.jpg") and ok["seconds"] >= 0
    assert records["broken.png"]["status"] == "error"
    assert "broken.png" in records["broken.png"]["error"]


def test_explicit_non_image_file_is_an_error(tiny_generator, photos, tmp_path, capsys):
    code, _, stderr = run(
        [photos / "notes.txt", photos / "b.png", "-m", tiny_generator, "--out-dir", tmp_path / "out"], capsys
    )
    assert code == 1
    assert stderr == f"img2img: error: {photos}/notes.txt: cannot identify image file\n"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b.png"]


def test_stdin_to_output_file(tiny_generator, photos, tmp_path, capsys, monkeypatch):
    stdin = io.TextIOWrapper(io.BytesIO((photos / "a.jpg").read_bytes()))
    monkeypatch.setattr(sys, "stdin", stdin)
    code, stdout, stderr = run(["-", "-m", tiny_generator, "-o", tmp_path / "out.jpg", "--json"], capsys)
    assert (code, stderr) == (0, "")
    assert json.loads(stdout)["input"] == "-"
    with Image.open(tmp_path / "out.jpg") as image:
        assert (image.format, image.size) == ("JPEG", (37, 21))


def test_output_file_format_comes_from_its_extension(tiny_generator, photos, tmp_path, capsys):
    target = tmp_path / "result.webp"
    assert run([photos / "b.png", "-m", tiny_generator, "-o", target], capsys)[0] == 0
    with Image.open(target) as image:
        assert (image.format, image.size) == ("WEBP", (16, 16))


def test_rgba_keeps_alpha_and_gray_model_writes_l(photos, tmp_path, capsys):
    source = make_image(tmp_path / "rgba.png", mode="RGBA")
    rgb_model = make_generator_file(tmp_path / "rgb.safetensors")
    assert run([source, "-m", rgb_model, "-o", tmp_path / "out.png"], capsys)[0] == 0
    with Image.open(tmp_path / "out.png") as out, Image.open(source) as original:
        assert out.mode == "RGBA"
        assert out.getchannel("A").tobytes() == original.getchannel("A").tobytes()
    gray_model = make_generator_file(tmp_path / "gray.safetensors", input_nc=1, output_nc=1)
    assert run([photos / "a.jpg", "-m", gray_model, "-o", tmp_path / "gray.png"], capsys)[0] == 0
    assert Image.open(tmp_path / "gray.png").mode == "L"


def test_existing_output_needs_overwrite(tiny_generator, photos, tmp_path, capsys):
    target = tmp_path / "out.png"
    target.write_bytes(b"keep me")
    code, _, stderr = run([photos / "b.png", "-m", tiny_generator, "-o", target], capsys)
    assert code == 1
    assert (
        stderr
        == f"img2img: error: {target}: already exists (use --overwrite to replace it, or --skip-existing to keep it)\n"
    )
    assert target.read_bytes() == b"keep me"
    assert run([photos / "b.png", "-m", tiny_generator, "-o", target, "--overwrite"], capsys)[0] == 0
    assert Image.open(target).size == (16, 16)


def test_an_input_is_never_overwritten(tiny_generator, photos, capsys):
    before = (photos / "b.png").read_bytes()
    code, _, stderr = run([photos / "b.png", "-m", tiny_generator, "-o", photos / "b.png", "--overwrite"], capsys)
    assert code == 1 and "refusing to overwrite an input" in stderr
    code, _, stderr = run([photos, "-m", tiny_generator, "--out-dir", photos, "--overwrite"], capsys)
    assert code == 1 and stderr.count("refusing to overwrite an input") == 3
    assert (photos / "b.png").read_bytes() == before


def test_out_dir_inside_the_input_folder_is_not_read_again(tiny_generator, photos, capsys):
    out = photos / "translated"
    assert run([photos, "-m", tiny_generator, "--out-dir", out], capsys)[0] == 0
    code, _, stderr = run([photos, "-m", tiny_generator, "--out-dir", out, "--overwrite"], capsys)
    assert (code, stderr) == (0, "")
    assert not (out / "translated").exists()


def test_interrupted_write_leaves_no_partial_file(tiny_generator, photos, tmp_path, capsys, monkeypatch):
    def half_write(self, data):
        with open(self, "wb") as handle:
            handle.write(data[: len(data) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(pathlib.Path, "write_bytes", half_write)
    out = tmp_path / "out"
    code, _, stderr = run([photos, "-m", tiny_generator, "--out-dir", out], capsys)
    assert code == 130 and "Traceback" not in stderr
    assert [p for p in out.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["{photo}"], "say where to write"),
        (["{photo}", "{photo}", "-o", "x.png"], "-o FILE takes one input image"),
        # Images written one after another to stdout are one stream: a reader sees the first.
        (["{photo}", "{photo}", "-o", "-"], "-o - takes one input image"),
        (["{photo}", "-o", "x.png", "--out-dir", "d"], "not both"),
        (["{photo}", "-o", "x.unknown"], "is not an image format"),
        (["{photo}", "--out-dir", "d", "--ext", "nope"], "is not an image format"),
        (["-", "--json"], "cannot share stdout"),
        (["-", "{photo}", "-o", "x.png"], "must be the only INPUT"),
        (["{photo}", "-o", "x.png", "--direction", "BtoA"], "maps AtoB, not BtoA"),
        (["{photo}", "-o", "x.png", "--device", "tpu"], "unknown device"),
        (["{photo}", "-o", "x.png", "--batch-size", "0"], "--batch-size"),
    ],
)
def test_usage_errors_exit_2(tiny_generator, photos, tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    args = [a.format(photo=photos / "b.png") for a in args]
    code, stdout, stderr = run([*args, "-m", tiny_generator], capsys)
    assert code == 2 and stdout == ""
    assert message in stderr
    assert not any(tmp_path.glob("x.*")) and not (tmp_path / "d").exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_one_clear_line(tiny_generator, photos, tmp_path, capsys):
    code, _, stderr = run(
        [photos / "b.png", "-m", tiny_generator, "-o", tmp_path / "x.png", "--device", "cuda"], capsys
    )
    assert code == 1
    assert stderr.count("\n") == 1 and stderr.startswith("img2img: error: device 'cuda' requested but")


def test_precision_fp32_and_batches_agree_with_defaults(tiny_generator, photos, tmp_path, capsys):
    assert run([photos, "-m", tiny_generator, "--out-dir", tmp_path / "a", "--precision", "fp32"], capsys)[0] == 0
    assert run([photos, "-m", tiny_generator, "--out-dir", tmp_path / "b", "--batch-size", "4"], capsys)[0] == 0
    for name in ("b.png", "sub/c.png"):  # lossless outputs
        a = np.asarray(Image.open(tmp_path / "a" / name), dtype=float)
        b = np.asarray(Image.open(tmp_path / "b" / name), dtype=float)
        assert 10 * np.log10(255**2 / max(np.mean((a - b) ** 2), 1e-12)) >= 40


# --- real processes: stdin/stdout and a clean stderr ---------------------------------------


def test_stdin_to_stdout_png(tiny_generator, photos):
    result = run_subprocess(["-", "-m", tiny_generator], input=(photos / "a.jpg").read_bytes())
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b""
    with Image.open(io.BytesIO(result.stdout)) as image:
        assert (image.format, image.size) == ("PNG", (37, 21))


def test_corrupt_and_good_input_exit_1_with_one_line(tiny_generator, photos, tmp_path):
    bad = photos / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 this is not really a JPEG")
    out = tmp_path / "out"
    result = run_subprocess(
        [bad, photos / "b.png", "-m", tiny_generator, "--out-dir", out], env={**os.environ, "COLUMNS": "80"}
    )
    assert result.returncode == 1
    assert result.stdout == b""
    assert result.stderr.decode() == f"img2img: error: {bad}: cannot identify image file\n"
    assert (out / "b.png").is_file() and not (out / "bad.jpg").exists()
    assert sorted(p.name for p in out.iterdir()) == ["b.png"]  # no temporary files either
