"""img2img.translate.jobs: planning a batch from Python, without the CLI (and without loading Typer)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from img2img.errors import UsageError
from img2img.translate.jobs import plan_jobs


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")  # planning only looks at names
    return path


def test_plan_keeps_relative_names_and_reports_refusals(tmp_path):
    photos = tmp_path / "photos"
    for name in ("a.jpg", "b.png", "b.gif", "sub/c.tif", ".hidden.png", "notes.txt"):
        touch(photos / name)
    out = tmp_path / "out"
    touch(out / "sub" / "c.png")  # exists: refused without overwrite

    jobs, errors = plan_jobs([str(photos), str(tmp_path / "missing.png")], output=None, out_dir=out, ext="PNG")
    assert [
        (Path(j.label).relative_to(photos).as_posix(), j.output.relative_to(out).as_posix(), j.fmt) for j in jobs
    ] == [
        ("a.jpg", "a.png", "PNG"),
        ("b.gif", "b.png", "PNG"),
    ]
    assert [e.message for e in errors] == [
        f"{tmp_path}/missing.png: no such file or directory",
        # The message starts with the input that is skipped, and names the one that is kept.
        f"{photos}/b.png: skipped: its output {out}/b.png is also the output of {photos}/b.gif",
        f"{out}/sub/c.png: already exists (use --overwrite to replace it, or --skip-existing to keep it)",
    ]
    assert [e.label for e in errors] == [
        str(tmp_path / "missing.png"),
        str(photos / "b.png"),
        str(photos / "sub/c.tif"),
    ]
    jobs, errors = plan_jobs([str(photos)], output=None, out_dir=out, ext="PNG", skip_existing=True)
    assert [(e.status, e.output) for e in errors] == [("error", out / "b.png"), ("skipped", out / "sub" / "c.png")]
    jobs, errors = plan_jobs([str(photos)], output=None, out_dir=photos, overwrite=True)
    assert jobs == [] and {e.message.split(": ")[1] for e in errors} == {"refusing to overwrite an input"}
    with pytest.raises(UsageError, match="-o FILE takes one input image"):
        plan_jobs([str(photos)], output=tmp_path / "x.png", out_dir=None)


def test_importing_the_library_does_not_load_typer_or_torch():
    code = "import sys, img2img.translate.jobs; assert not {'typer', 'click', 'torch'} & set(sys.modules), sys.modules.keys()"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)  # a hang guard


def test_a_name_the_file_system_refuses_is_an_error_for_that_input_only(tmp_path):
    photos = tmp_path / "photos"
    long_name = "a" * 251 + ".png"  # 255 bytes: fits; as .jpeg it is 256 bytes, too long
    for name in (long_name, "b.png"):
        touch(photos / name)
    (tmp_path / "out").mkdir()  # so that looking the name up reaches the long part
    jobs, errors = plan_jobs([str(photos)], output=None, out_dir=tmp_path / "out", ext="jpeg")
    assert [j.output.name for j in jobs] == ["b.jpeg"]
    assert len(errors) == 1 and errors[0].label == str(photos / long_name)
    assert errors[0].message.endswith("cannot write: File name too long")
