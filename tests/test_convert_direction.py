"""`translate --model latest_net_G.pth --direction BtoA`: a reference checkpoint's file holds no
direction, so the one given is recorded in its conversion (cached per file and direction). A
reference CycleGAN file named for its generator (`*_net_G_A`, `*_net_G_B`) keeps the direction
its name says, and a contradicting --direction is refused, as for a weights file that records
its own."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from img2img.cli import main
from img2img.files.downloads import file_sha256
from img2img.models.config import GeneratorConfig
from img2img.models.networks import build_generator, init_weights
from img2img.models.weights import read_metadata


def reference_checkpoint(path, netg: str):
    """torch.save(net.state_dict()) of a small generator, as the reference's save_networks does."""
    torch.manual_seed(0)
    torch.save(init_weights(build_generator(GeneratorConfig.from_reference(netg, ngf=4))).state_dict(), path)
    return path


def translate(tmp_path, capsys, model, *extra: str) -> tuple[int, str, Image.Image | None]:
    out = tmp_path / f"out{len(list(tmp_path.glob('out*.png')))}.png"
    with pytest.raises(SystemExit) as excinfo:
        main(["translate", str(tmp_path / "in.png"), "--model", str(model), "-o", str(out), *extra])
    code = excinfo.value.code or 0
    return code, capsys.readouterr().err, Image.open(out) if out.exists() else None


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("IMG2IMG_CACHE", str(tmp_path / "cache"))
    Image.new("RGB", (20, 12), (200, 30, 90)).save(tmp_path / "in.png")
    return tmp_path


def converted(tmp_path) -> list[str]:
    folder = tmp_path / "cache" / "converted"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_a_pix2pix_checkpoint_trained_btoa_translates_with_direction_btoa(workspace, capsys):
    path = reference_checkpoint(workspace / "latest_net_G.pth", "unet_128")
    digest = file_sha256(path)
    code, err, forward = translate(workspace, capsys, path)  # no --direction: recorded AtoB
    assert code == 0, err
    code, err, backward = translate(workspace, capsys, path, "--direction", "BtoA")
    assert code == 0, err
    assert backward.tobytes() == forward.tobytes()  # the same network; only the record differs
    assert converted(workspace) == [f"{digest}.AtoB.safetensors", f"{digest}.BtoA.safetensors"]
    recorded = read_metadata(workspace / "cache" / "converted" / f"{digest}.BtoA.safetensors")
    assert recorded.direction == "BtoA" and recorded.task == "pix2pix"
    code, err, _ = translate(workspace, capsys, path, "--direction", "BtoA")  # converted once
    assert code == 0, err
    assert converted(workspace) == [f"{digest}.AtoB.safetensors", f"{digest}.BtoA.safetensors"]


def test_a_generator_named_for_its_direction_refuses_the_other_one(workspace, capsys):
    path = reference_checkpoint(workspace / "latest_net_G_B.pth", "resnet_6blocks")
    code, err, image = translate(workspace, capsys, path, "--direction", "AtoB")
    assert code == 2 and err.count("\n") == 1, err
    assert f"{path.name}" in err and "maps BtoA, not AtoB" in err
    assert image is None
    assert converted(workspace) == [f"{file_sha256(path)}.BtoA.safetensors"]
