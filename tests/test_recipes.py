"""The shell recipes in examples/recipes/, each run as a user would: bash, img2img on PATH, a
tiny model in $MODEL.

img2img is reached through a logging wrapper (first on PATH) that records each call's
arguments, so the tests can check which inputs each call was given. Tests that need jq, curl or
ImageMagick skip when the tool is missing (Debian: apt-get install jq curl imagemagick).
"""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import pytest
from conftest import REPO_ROOT, make_generator_file
from PIL import Image
from test_translate import make_image

RECIPES = REPO_ROOT / "examples" / "recipes"
VENV_BIN = Path(sys.executable).parent

# Runs the real img2img and appends its arguments, tab-separated, to $IMG2IMG_CALLS. After the
# call, a file named in $FINISH_AFTER_CALL gets its complete contents from $FINISH_AFTER_CALL.complete
# (once): a file that was still being copied in while the first run read it.
WRAPPER = """#!/usr/bin/env bash
{ printf '%s\\t' "$@"; echo; } >>"$IMG2IMG_CALLS"
status=0
"$REAL_IMG2IMG" "$@" || status=$?
if [[ -n ${FINISH_AFTER_CALL:-} && -e $FINISH_AFTER_CALL.complete ]]; then
    mv "$FINISH_AFTER_CALL.complete" "$FINISH_AFTER_CALL"
fi
exit "$status"
"""


def needs(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian: apt-get install {tool})")


class Recipes:
    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.calls_log = tmp_path / "calls.tsv"
        real = shutil.which("img2img", path=str(VENV_BIN))
        assert real, f"no img2img console script in {VENV_BIN}; pip install -e ."
        wrapper_dir = tmp_path / "wrapper-bin"
        wrapper_dir.mkdir()
        (wrapper_dir / "img2img").write_text(WRAPPER)
        (wrapper_dir / "img2img").chmod(0o755)
        self.env = {
            **os.environ,
            "PATH": os.pathsep.join([str(wrapper_dir), str(VENV_BIN), os.environ.get("PATH", "")]),
            "MODEL": str(make_generator_file(tmp_path / "tiny.safetensors")),
            "REAL_IMG2IMG": real,
            "IMG2IMG_CALLS": str(self.calls_log),
            "RETRY_DELAY": "0",
            "COLUMNS": "200",
        }

    def run(self, script: str, *args, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", str(RECIPES / script), *map(str, args)],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=300,  # a hang guard
            **kwargs,
        )

    def calls(self) -> list[list[str]]:
        """The arguments of each img2img call after `translate`, in the order they started."""
        if not self.calls_log.exists():
            return []
        return [line.rstrip("\t").split("\t")[1:] for line in self.calls_log.read_text().splitlines()]


@pytest.fixture
def recipes(tmp_path: Path) -> Recipes:
    return Recipes(tmp_path)


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """photos/{a.png, b.jpg, sub/a.png, sub/D.JPG, sub/deeper/c.png, .hidden/x.png, notes.txt}"""
    root = tmp_path / "photos"
    make_image(root / "a.png", (20, 12))
    make_image(root / "b.jpg", (16, 16), seed=1)
    make_image(root / "sub" / "a.png", (10, 30), seed=2)
    make_image(root / "sub" / "D.JPG", (12, 9), seed=3)
    make_image(root / "sub" / "deeper" / "c.png", (9, 9), seed=4)
    make_image(root / ".hidden" / "x.png")
    (root / "notes.txt").write_text("not an image")
    return root


IMAGES = ["a.png", "b.jpg", "sub/D.JPG", "sub/a.png", "sub/deeper/c.png"]


def written(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())


def assert_same_sizes(out: Path, photos: Path, names: list[str]) -> None:
    for name in names:
        with Image.open(out / name) as result, Image.open(photos / name) as source:
            assert result.size == source.size, name


def test_parallel_keeps_names_relative_to_the_input_folder(recipes, photos, tmp_path):
    # Relative paths, and the output folder inside the input folder: it must not be read back.
    result = recipes.run(
        "translate_folder_parallel.sh", "photos", "photos/translated", 2, cwd=tmp_path, env={"CHUNK": "2"}
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = photos / "translated"
    assert written(out) == IMAGES  # sub/a.png does not overwrite a.png
    assert_same_sizes(out, photos, IMAGES)
    # Chunks of 2 files, one call per folder in a chunk, each with that folder's --out-dir.
    calls = recipes.calls()
    inputs = sorted(arg for call in calls for arg in call if arg.startswith("./"))
    assert inputs == sorted(f"./{name}" for name in IMAGES)
    for call in calls:
        files = [arg for arg in call if arg.startswith("./")]
        assert 1 <= len(files) <= 2 and len({os.path.dirname(f) for f in files}) == 1
        out_dir = call[call.index("--out-dir") + 1]
        assert Path(out_dir) == (out / os.path.dirname(files[0])).resolve()


def test_batched_is_one_process(recipes, photos, tmp_path):
    out = tmp_path / "out"
    result = recipes.run("translate_folder_batched.sh", photos, out, env={"BATCH_SIZE": "4"})
    assert result.returncode == 0, result.stderr
    assert written(out) == IMAGES
    assert_same_sizes(out, photos, IMAGES)
    [call] = recipes.calls()
    assert call[call.index("--batch-size") + 1] == "4"


def test_json_jq_table_and_summary(recipes, photos, tmp_path):
    needs("jq")
    (photos / "sub" / "broken.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / "out"
    result = recipes.run("translate_json_jq.sh", photos / "sub", out)
    assert result.returncode == 1  # img2img's: one input failed
    header, *rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert header == ["status", "input", "output", "size", "seconds", "error"]
    by_input = {Path(row[1]).relative_to(photos / "sub").as_posix(): row for row in rows}
    assert sorted(by_input) == ["D.JPG", "a.png", "broken.png", "deeper/c.png"]
    status, _, output, size, seconds, error = by_input["deeper/c.png"]
    assert (status, output, size, error) == ("ok", str(out / "deeper" / "c.png"), "9x9", "")
    assert float(seconds) >= 0
    assert by_input["broken.png"][0] == "error" and "cannot identify image file" in by_input["broken.png"][5]
    assert "img2img: error:" in result.stderr  # img2img's own lines are not hidden
    summary = result.stderr.splitlines()[-1]
    assert summary.startswith("3 ok, 1 errors, ") and summary.endswith(" s translating")


@pytest.fixture
def http_folder(tmp_path: Path):
    """Serves a folder on 127.0.0.1 (a free port); yields (folder, base URL)."""
    folder = tmp_path / "served"
    folder.mkdir()

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def has_imagemagick() -> bool:
    if shutil.which("magick"):
        return True
    try:
        version = subprocess.run(["convert", "-version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return version.startswith("Version: ImageMagick")


def test_pipe_curl_translate_imagemagick(recipes, http_folder, tmp_path):
    needs("curl")
    if not has_imagemagick():
        pytest.skip("ImageMagick is not installed (Debian: apt-get install imagemagick)")
    folder, url = http_folder
    make_image(folder / "street.jpg", (40, 24))
    no_proxy = {"no_proxy": "127.0.0.1", "NO_PROXY": "127.0.0.1"}
    out = tmp_path / "night.png"
    result = recipes.run("translate_pipe.sh", f"{url}/street.jpg", out, env=no_proxy)
    assert result.returncode == 0, result.stderr
    with Image.open(out) as image:
        assert (image.format, image.size) == ("PNG", (20, 12))
    assert recipes.calls() == [["-", "--model", recipes.env["MODEL"]]]

    result = recipes.run("translate_pipe.sh", f"{url}/missing.jpg", tmp_path / "never.png", env=no_proxy)
    assert result.returncode != 0
    assert "404" in result.stderr and not (tmp_path / "never.png").exists()


def test_retry_gives_up_on_a_corrupt_image_and_retries_only_it(recipes, photos, tmp_path):
    needs("jq")
    (photos / "sub" / "bad.png").write_bytes(b"\x89PNG this is not really a PNG")
    out = tmp_path / "out"
    result = recipes.run("translate_retry_failed.sh", photos, out, env={"ATTEMPTS": "3"})
    assert result.returncode == 1
    assert written(out) == IMAGES  # the good ones are written on the first run
    calls = recipes.calls()
    assert len(calls) == 3
    assert calls[0][0] == str(photos)
    for retry in calls[1:]:  # just the failed image, into its folder's output folder
        assert retry[0] == str(photos / "sub" / "bad.png")
        assert retry[retry.index("--out-dir") + 1] == str(out / "sub")
    assert "attempt 3: retrying 1 failed image(s)" in result.stderr
    still = result.stderr[result.stderr.index("still failing after 3 attempt(s):") :].splitlines()[1:]
    assert still == [f"  {photos}/sub/bad.png: cannot identify image file"]


def test_retry_recovers_a_file_that_was_still_being_copied(recipes, photos, tmp_path):
    needs("jq")
    late = photos / "sub" / "deeper" / "late.png"
    make_image(late, (14, 10), seed=9)
    complete = late.read_bytes()
    late.with_name("late.png.complete").write_bytes(complete)  # no image extension: not an input
    late.write_bytes(complete[: len(complete) // 3])  # a third copied when the first run reads it
    out = tmp_path / "out"
    env = {"ATTEMPTS": "3", "FINISH_AFTER_CALL": str(late)}

    result = recipes.run("translate_retry_failed.sh", photos, out, env=env)
    assert result.returncode == 0, result.stderr
    assert written(out) == sorted([*IMAGES, "sub/deeper/late.png"])
    with Image.open(out / "sub" / "deeper" / "late.png") as image:
        assert image.size == (14, 10)
    calls = recipes.calls()
    assert [call[0] for call in calls] == [str(photos), str(late)]
    assert result.stderr.splitlines()[-2:] == ["attempt 2: retrying 1 failed image(s)", "all images written"]
