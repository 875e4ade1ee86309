"""The command line: fast help, one-line errors with the right exit codes, convert."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from img2img import __version__
from img2img.cli import main
from img2img.models.weights import load_generator, read_metadata


def run_main(args, capsys):
    with pytest.raises(SystemExit) as excinfo:
        main(args)
    captured = capsys.readouterr()
    return excinfo.value.code, captured.out, captured.err


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["convert", "--help"]])
def test_help_and_version_do_not_import_torch(args):
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


def test_version(capsys):
    code, out, _ = run_main(["--version"], capsys)
    assert code in (0, None)
    assert out.strip() == f"img2img {__version__}"


def test_convert_then_translate_metadata(tmp_path, reference_fixtures, capsys):
    out = tmp_path / "horse.safetensors"
    code, _, err = run_main(
        [
            "convert",
            str(reference_fixtures / "unet_256_ngf8/checkpoint.pth"),
            "-o",
            str(out),
            "--arch",
            "unet_256",
            "--ngf",
            "8",
            "--direction",
            "BtoA",
        ],
        capsys,
    )
    assert code in (0, None), err
    metadata = read_metadata(out)
    assert metadata.generator.arch == "unet" and metadata.generator.num_downs == 8
    assert metadata.generator.norm == "batch" and metadata.generator.use_dropout
    assert metadata.direction == "BtoA" and metadata.task == "pix2pix"
    assert metadata.eval_mode is False  # pix2pix: per-image batch-norm statistics
    assert set(load_file(out)) == set(
        torch.load(reference_fixtures / "unet_256_ngf8/checkpoint.pth", weights_only=True)
    )
    assert load_generator(out).net(torch.zeros(1, 3, 256, 256)).shape == (1, 3, 256, 256)


def test_convert_refuses_to_overwrite(tmp_path, reference_fixtures, capsys):
    out = tmp_path / "exists.safetensors"
    out.write_bytes(b"keep me")
    args = ["convert", str(reference_fixtures / "resnet_9blocks_ngf16/checkpoint.pth"), "-o", str(out)]
    code, _, err = run_main([*args, "--arch", "resnet_9blocks", "--ngf", "16"], capsys)
    assert code == 2
    assert "already exists" in err and "--overwrite" in err
    assert out.read_bytes() == b"keep me"
    code, _, err = run_main([*args, "--arch", "resnet_9blocks", "--ngf", "16", "--overwrite"], capsys)
    assert code in (0, None), err
    assert read_metadata(out).generator.ngf == 16


def test_convert_wrong_architecture_is_one_line_exit_1(tmp_path, reference_fixtures, capsys):
    out = tmp_path / "out.safetensors"
    code, out_text, err = run_main(
        [
            "convert",
            str(reference_fixtures / "resnet_9blocks_ngf16/checkpoint.pth"),
            "-o",
            str(out),
            "--arch",
            "resnet_9blocks",
            "--ngf",
            "64",
        ],
        capsys,
    )
    assert code == 1
    assert out_text == ""
    assert err.count("\n") == 1 and err.startswith("img2img: error: ")
    assert "checkpoint.pth" in err and "--ngf 64 given, the checkpoint has 16" in err
    assert not out.exists()


def test_unknown_arch_is_a_usage_error(tmp_path, reference_fixtures, capsys):
    code, _, err = run_main(
        [
            "convert",
            str(reference_fixtures / "resnet_9blocks_ngf16/checkpoint.pth"),
            "-o",
            str(tmp_path / "x.safetensors"),
            "--arch",
            "resnet9",
        ],
        capsys,
    )
    assert code == 2
    assert "resnet_9blocks" in err and err.count("\n") == 1


def test_models_info_on_a_file(tiny_generator, capsys):
    code, out, _ = run_main(["models", "info", str(tiny_generator), "--json"], capsys)
    assert code in (0, None)
    assert '"architecture": "resnet_1blocks"' in out


def test_debug_shows_the_traceback(tmp_path):
    missing = tmp_path / "missing.pth"
    args = ["convert", str(missing), "-o", str(tmp_path / "o.safetensors"), "--arch", "unet_256"]
    quiet = subprocess.run([sys.executable, "-m", "img2img", *args], capture_output=True, text=True)
    assert quiet.returncode == 1
    assert quiet.stderr == f"img2img: error: {missing}: no such file\n"
    loud = subprocess.run([sys.executable, "-m", "img2img", *args, "--debug"], capture_output=True, text=True)
    assert loud.returncode == 1
    assert "Traceback" in loud.stderr
