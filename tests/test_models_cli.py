"""`img2img models list | info | pull` through the real entry point, offline: downloads come from
a local HTTP server, the shipped registry's URLs point at a closed port."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# The local server, the isolated environment (autouse) and the HF cache are shared with the
# registry tests.
from test_registry import (  # noqa: F401
    CYCLEGAN_NAMES,
    PIX2PIX_NAMES,
    SHIPPED_NAMES,
    checkpoint_bytes,
    hf_cache,
    isolated_environment,
    served_registry,
    server,
)

from img2img.cli import main
from img2img.hub import registry


def run(args, capsys):
    with pytest.raises(SystemExit) as excinfo:
        main(args)
    captured = capsys.readouterr()
    return excinfo.value.code or 0, captured.out, captured.err


def test_list_shows_every_model_and_where_it_is(capsys, served_registry):
    code, out, err = run(["models", "list"], capsys)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["NAME", "TASK", "DIRECTION", "ARCHITECTURE", "STATUS"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == CYCLEGAN_NAMES | set(PIX2PIX_NAMES) | SHIPPED_NAMES | {"tiny"}
    assert rows["horse2zebra"][1:5] == ["cyclegan", "AtoB", "resnet_9blocks", "downloadable"]
    assert rows["edges2shoes"][1:5] == ["pix2pix", "AtoB", "unet_256", "downloadable"]
    assert rows["photo2sketch"][1:5] == ["pix2pix", "AtoB", "unet_128", "shipped"]

    run(["models", "pull", "tiny"], capsys)
    _, out, _ = run(["models", "list"], capsys)
    assert [line for line in out.splitlines() if line.startswith("tiny ")][0].split()[4] == "cached"


def test_list_json_is_one_object_per_line(capsys, served_registry):
    code, out, _ = run(["models", "list", "--json"], capsys)
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    by_name = {row["name"]: row for row in rows}
    assert set(by_name) == CYCLEGAN_NAMES | set(PIX2PIX_NAMES) | SHIPPED_NAMES | {"tiny"}
    horse = by_name["horse2zebra"]
    assert horse["status"] == "downloadable" and horse["path"] is None
    assert horse["location"].endswith("/cyclegan/pretrained_models/horse2zebra.pth")
    assert by_name["sat2map_pix2pix"]["eval_mode"] is False


def test_list_includes_unregistered_cached_files(capsys, tmp_path):
    from conftest import make_generator_file

    make_generator_file(registry.cached_model_path("my_own"), direction="BtoA")
    _, out, _ = run(["models", "list", "--json"], capsys)
    mine = [json.loads(line) for line in out.splitlines() if '"my_own"' in line][0]
    assert (mine["status"], mine["direction"], mine["architecture"]) == ("cached", "BtoA", "resnet_1blocks")


def test_info_on_a_name_not_downloaded_shows_the_registry_entry(capsys, served_registry):
    code, out, err = run(["models", "info", "facades_label2photo_pix2pix", "--json"], capsys)
    assert code == 0, err
    details = json.loads(out)
    assert details["status"] == "downloadable"
    assert (details["task"], details["direction"], details["architecture"]) == ("pix2pix", "BtoA", "unet_256")
    assert details["eval_mode"] is False
    assert details["location"].endswith("/pix2pix/models-pytorch/facades_label2photo.pth")
    assert details["pull"] == "img2img models pull facades_label2photo_pix2pix"
    assert served_registry.total_hits == 0

    code, out, _ = run(["models", "info", "horse2zebra"], capsys)
    assert code == 0 and "downloadable" in out and "resnet_9blocks" in out


def test_info_on_a_pulled_name_describes_the_file(capsys, served_registry):
    code, out, err = run(["models", "pull", "tiny"], capsys)
    assert code == 0, err
    code, out, _ = run(["models", "info", "tiny", "--json"], capsys)
    details = json.loads(out)
    assert details["status"] == "cached"
    assert details["path"] == str(registry.cached_model_path("tiny"))
    assert details["parameters"] == 715651  # the reference fixture's count for ngf 16
    assert details["architecture"] == "resnet_9blocks"
    assert details["location"] == f"{served_registry.url}/models/tiny.pth"


def test_info_unknown_name_is_one_line_exit_1(capsys):
    code, out, err = run(["models", "info", "hors2zebra"], capsys)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "did you mean horse2zebra" in err


def test_pull_prints_the_path_then_says_it_is_cached(capsys, served_registry):
    code, out, err = run(["models", "pull", "tiny"], capsys)
    assert code == 0, err
    assert out.strip() == str(registry.cached_model_path("tiny"))
    assert "downloaded" in err
    code, out, err = run(["models", "pull", "tiny"], capsys)
    assert code == 0 and out.strip() == str(registry.cached_model_path("tiny"))
    assert "already cached" in err and served_registry.total_hits == 1
    code, out, err = run(["models", "pull", "tiny", "--force", "--quiet"], capsys)
    assert code == 0 and err == "" and served_registry.total_hits == 2


def test_pull_offline_is_one_line_saying_what_to_do(capsys, tmp_path):
    code, out, err = run(["models", "pull", "style_monet"], capsys)
    assert code == 1 and out == ""
    assert err.count("\n") == 1
    assert "style_monet: not in the cache and cannot download" in err
    assert "img2img models pull style_monet" in err


def test_pull_refuses_a_path(capsys, tiny_generator):
    code, _, err = run(["models", "pull", str(tiny_generator)], capsys)
    assert code == 2 and "not a path" in err


def test_hf_specs_in_info_and_pull(capsys, hf_cache):
    code, out, err = run(["models", "info", "hf:owner/repo", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["architecture"] == "resnet_1blocks"
    code, out, err = run(["models", "pull", "hf:owner/repo/sub/file.safetensors"], capsys)
    assert code == 0 and out.strip().endswith("sub/file.safetensors") and "already cached" in err
    code, out, _ = run(["models", "info", "hf:owner/other", "--json"], capsys)
    assert code == 0 and json.loads(out)["status"] == "downloadable"
    code, _, err = run(["models", "pull", "hf:owner/other"], capsys)
    assert code == 1 and err.count("\n") == 1 and "not in the Hugging Face cache" in err


HELP = [["models", "--help"], *(["models", name, "--help"] for name in ("list", "info", "pull"))]


@pytest.mark.parametrize("args", [["models", "list"], *HELP])
def test_list_and_help_do_not_import_torch(args):
    code = (
        "import sys\n"
        "from img2img.cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit as exit:\n"
        "    assert exit.code in (0, None), exit.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
