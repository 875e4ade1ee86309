"""`translate --shard K/N`: disjoint parts of a batch for job arrays (Slurm, Kubernetes, xargs)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from test_translate import make_image, run

from img2img.errors import UsageError
from img2img.translate.jobs import Shard, parse_shard, plan_jobs

NAMES = [f"d{i % 4}/img{i:03d}.png" for i in range(40)] + ["top.jpg", "x.gif", "ü ñ.png"]


def planned(inputs: list[str], out: Path, shard: Shard | None) -> list[str]:
    jobs, errors = plan_jobs(inputs, output=None, out_dir=out, shard=shard)
    assert errors == []
    return [job.output.relative_to(out).as_posix() for job in jobs]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    for name in NAMES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")  # planning looks only at names
    return root


@pytest.mark.parametrize("count", [1, 2, 3, 7, 100])  # 100: more parts than inputs
def test_parts_cover_every_input_once_whatever_the_listing_order(folder, tmp_path, count):
    out = tmp_path / "out"
    everything = planned([str(folder)], out, None)
    assert len(everything) == len(NAMES)
    # The same inputs listed three ways that keep the same names under --out-dir: the folder, and
    # quoted globs (expanded here) in two orders.
    listings = [[str(folder)], [f"{folder}/d*", f"{folder}/*.*"], [f"{folder}/*.*", f"{folder}/d*"]]
    results = []
    for listing in listings:
        parts = [planned(listing, out, Shard(k, count)) for k in range(count)]
        union = [name for part in parts for name in part]
        assert sorted(union) == sorted(everything)  # every input, exactly once
        results.append([sorted(part) for part in parts])
    assert results[1] == results[0] and results[2] == results[0]
    if count > len(NAMES):
        assert [] in results[0]
    # Files named one by one (as a shell expands an unquoted glob: in its own order) are named
    # relative to themselves; their parts do not depend on the order either.
    files = [str(folder / name) for name in NAMES if "/" not in name]
    files += [str(p) for p in sorted((folder / "d1").iterdir())]
    by_order = []
    for seed in range(3):
        shuffled = random.Random(seed).sample(files, len(files))
        parts = [sorted(planned(shuffled, out, Shard(k, count))) for k in range(count)]
        assert sorted(n for part in parts for n in part) == sorted(Path(f).name for f in files)
        by_order.append(parts)
    assert by_order[1] == by_order[0] and by_order[2] == by_order[0]


def test_a_part_does_not_move_when_other_parts_have_written(folder, tmp_path):
    """Parts started later see the outputs of parts that finished: their share stays the same."""
    out = tmp_path / "out"
    before = planned([str(folder)], out, Shard(0, 3))
    for name in planned([str(folder)], out, Shard(1, 3)):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(b"written by part 1")
    (folder / "d9" / "late.png").parent.mkdir()
    (folder / "d9" / "late.png").write_bytes(b"")  # an input added meanwhile moves nothing else
    after = planned([str(folder)], out, Shard(0, 3))
    assert [n for n in after if n != "d9/late.png"] == before


def test_two_inputs_with_one_output_fall_in_the_same_part(tmp_path):
    for name in ("a.png", "a.gif", "b.png"):
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / name).write_bytes(b"")
    out = tmp_path / "out"
    reports = []
    for k in range(5):
        _, errors = plan_jobs([str(tmp_path / "in")], output=None, out_dir=out, ext="png", shard=Shard(k, 5))
        reports += [e.message for e in errors]
    assert len(reports) == 1  # one part saw both inputs and reported the clash
    assert f"its output {out}/a.png is also the output of {tmp_path}/in/a.gif" in reports[0]


@pytest.mark.parametrize("text", ["3/3", "-1/3", "1", "0/0", "a/b", "1/2/3", "", "1.5/3"])
def test_bad_shard_is_a_usage_error(text):
    with pytest.raises(UsageError, match="expected K/N with 0 <= K < N"):
        parse_shard(text)


def test_parse_shard():
    assert parse_shard("0/1") == Shard(0, 1) and parse_shard(" 3/8 ") == Shard(3, 8)
    assert str(parse_shard("3/8")) == "3/8"


# --- through the command ------------------------------------------------------------------------


def test_cli_parts_write_the_same_bytes_as_one_run(tiny_generator, tmp_path, capsys):
    photos = tmp_path / "photos"
    for i, (size, mode) in enumerate(
        [((20, 12), "RGB"), ((9, 9), "L"), ((16, 24), "RGBA"), ((30, 8), "RGB"), ((12, 12), "L")]
    ):
        make_image(photos / f"sub{i % 2}" / f"p{i}.png", size, mode, seed=i)
    assert run([photos, "-m", tiny_generator, "--out-dir", tmp_path / "whole"], capsys)[0] == 0
    lines = []
    for k in range(3):
        code, stdout, stderr = run(
            [photos, "-m", tiny_generator, "--out-dir", tmp_path / "parts", "--shard", f"{k}/3", "--json"], capsys
        )
        assert (code, stderr) == (0, "")
        lines += [json.loads(line) for line in stdout.splitlines()]
    assert {r["status"] for r in lines} == {"ok"} and len(lines) == 5
    assert {r["shard"] for r in lines} <= {"0/3", "1/3", "2/3"}
    whole = {p.relative_to(tmp_path / "whole"): p.read_bytes() for p in (tmp_path / "whole").rglob("*.png")}
    parts = {p.relative_to(tmp_path / "parts"): p.read_bytes() for p in (tmp_path / "parts").rglob("*.png")}
    assert len(whole) == 5 and parts == whole


def test_cli_empty_part_exits_0_and_bad_part_exits_2(tiny_generator, tmp_path, capsys):
    image = make_image(tmp_path / "in" / "one.png")
    owner = next(k for k in range(9) if Shard(k, 9).holds("one.png"))
    empty = (owner + 1) % 9
    code, stdout, stderr = run(
        [image, "-m", tiny_generator, "--out-dir", tmp_path / "out", "--shard", f"{empty}/9"], capsys
    )
    assert (code, stdout, stderr) == (0, "", "") and not (tmp_path / "out").exists()
    code, _, stderr = run([image, "-m", tiny_generator, "--out-dir", tmp_path / "out", "--shard", "9/9"], capsys)
    assert code == 2 and "--shard '9/9': expected K/N" in stderr
    code, _, stderr = run([image, "-m", tiny_generator, "-o", tmp_path / "x.png", "--shard", "0/2"], capsys)
    assert code == 2 and "--shard needs --out-dir" in stderr


def test_a_failed_part_is_rerun_with_skip_existing(tiny_generator, tmp_path, capsys):
    photos = tmp_path / "photos"
    for i in range(6):
        make_image(photos / f"p{i}.png", (10 + i, 12), seed=i)
    out = tmp_path / "out"
    args = [photos, "-m", tiny_generator, "--out-dir", out, "--shard", "1/2", "--json"]
    assert run(args, capsys)[0] == 0
    mine = sorted(p.name for p in out.iterdir())
    assert mine and all(Shard(1, 2).holds(name) for name in mine)
    (out / mine[0]).unlink()  # as if the part had died before writing it
    code, stdout, stderr = run([*args, "--skip-existing"], capsys)
    assert (code, stderr) == (0, "")
    records = [json.loads(line) for line in stdout.splitlines()]
    assert {r["shard"] for r in records} == {"1/2"}
    assert sorted((Path(r["output"]).name, r["status"]) for r in records) == sorted(
        (name, "ok" if name == mine[0] else "skipped") for name in mine
    )
    assert sorted(p.name for p in out.iterdir()) == mine
