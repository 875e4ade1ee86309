"""The weights format: self-describing safetensors, reference conversion, refusal of bad files."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from img2img.errors import WeightsError
from img2img.models.config import GeneratorConfig
from img2img.models.networks import build_generator
from img2img.models.weights import (
    SCHEMA_VERSION,
    WeightsMetadata,
    convert_reference_checkpoint,
    describe,
    load_generator,
    load_reference_state_dict,
    read_metadata,
    save_generator,
)

RESNET16 = GeneratorConfig.from_reference("resnet_9blocks", ngf=16, norm="instance")
UNET8 = GeneratorConfig.from_reference("unet_256", ngf=8, norm="batch", use_dropout=True)


def test_saved_file_has_reference_keys_and_metadata(tmp_path, tiny_generator):
    with safe_open(tiny_generator, "pt") as handle:
        metadata = handle.metadata()
        keys = set(handle.keys())
    assert metadata["format"] == "pt"
    described = json.loads(metadata["img2img"])
    assert described["schema"] == SCHEMA_VERSION
    assert described["generator"]["arch"] == "resnet"
    assert "model.1.weight" in keys and "model.4.conv_block.1.weight" not in keys
    assert keys == set(build_generator(read_metadata(tiny_generator).generator).state_dict())


@pytest.mark.parametrize("case, config", [("resnet_9blocks_ngf16", RESNET16), ("unet_256_ngf8", UNET8)])
def test_converted_reference_checkpoint_reproduces_reference_output(tmp_path, reference_fixtures, case, config):
    out = tmp_path / "converted.safetensors"
    # No architecture given: it is read from the checkpoint. eval_mode: the fixtures' outputs
    # are the reference's model.eval() ones.
    metadata = convert_reference_checkpoint(reference_fixtures / case / "checkpoint.pth", out, eval_mode=True)
    assert metadata.generator == config
    loaded = load_generator(out)
    io = load_file(reference_fixtures / case / "io.safetensors")
    with torch.no_grad():
        output = loaded.net(io["input"])
    assert (output - io["output"]).abs().max().item() <= 1e-5
    assert not loaded.net.training


def test_convert_strips_module_prefix_and_stale_instance_norm_stats(tmp_path, reference_fixtures):
    state_dict = torch.load(reference_fixtures / "resnet_9blocks_ngf16/checkpoint.pth", weights_only=True)
    # What DataParallel and PyTorch < 0.4 left in old checkpoints of the reference.
    old_style = {f"module.{key}": value for key, value in state_dict.items()}
    old_style["module.model.2.running_mean"] = torch.zeros(16)
    old_style["module.model.2.running_var"] = torch.ones(16)
    old_style["module.model.10.conv_block.2.num_batches_tracked"] = torch.tensor(0)
    checkpoint = tmp_path / "old.pth"
    torch.save(old_style, checkpoint)
    out = tmp_path / "out.safetensors"
    convert_reference_checkpoint(checkpoint, out, WeightsMetadata(generator=RESNET16))
    assert set(load_file(out)) == set(state_dict)


def test_convert_accepts_batch_norm_without_num_batches_tracked(tmp_path, reference_fixtures):
    state_dict = torch.load(reference_fixtures / "unet_256_ngf8/checkpoint.pth", weights_only=True)
    pre_041 = {k: v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
    assert len(pre_041) < len(state_dict)
    checkpoint = tmp_path / "old_pix2pix.pth"
    torch.save(pre_041, checkpoint)
    out = tmp_path / "out.safetensors"
    convert_reference_checkpoint(checkpoint, out, WeightsMetadata(generator=UNET8))
    assert set(load_file(out)) == set(state_dict)


def test_convert_reports_mismatched_architecture(tmp_path, reference_fixtures):
    wrong = GeneratorConfig.from_reference("resnet_6blocks", ngf=16)
    out = tmp_path / "out.safetensors"
    with pytest.raises(WeightsError, match="given is resnet_6blocks .* tensors hold resnet_9blocks"):
        convert_reference_checkpoint(
            reference_fixtures / "resnet_9blocks_ngf16/checkpoint.pth", out, WeightsMetadata(generator=wrong)
        )
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


class RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > " + str(self.marker),))


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_crafted_pickle_is_refused_and_never_runs(tmp_path, writer):
    marker = tmp_path / "pwned"
    payload = RunsCode()
    payload.marker = marker
    checkpoint = tmp_path / "evil.pth"
    if writer == "pickle":
        checkpoint.write_bytes(pickle.dumps({"model.1.weight": payload}))
    else:
        torch.save({"model.1.weight": payload}, checkpoint)
    # A raw protocol-4 pickle is rejected before its globals are even read.
    expected = "refused: the file would import .*system" if writer == "torch.save" else "safe loader"
    with pytest.raises(WeightsError, match=expected):
        load_reference_state_dict(checkpoint)
    assert not marker.exists()


def test_garbage_and_non_state_dict_checkpoints(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightsError, match="looks like a text file, not a PyTorch checkpoint"):
        load_reference_state_dict(garbage)
    a_list = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], a_list)
    with pytest.raises(WeightsError, match="not a state dict"):
        load_reference_state_dict(a_list)
    with pytest.raises(WeightsError, match="no such file"):
        load_reference_state_dict(tmp_path / "missing.pth")


def test_truncated_weights_file_is_refused(tmp_path, tiny_generator):
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(tiny_generator.read_bytes()[:-100])
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        load_generator(truncated)


def test_weights_without_metadata_say_how_to_convert(tmp_path, tiny_generator):
    bare = tmp_path / "bare.safetensors"
    save_file(load_file(tiny_generator), bare)
    with pytest.raises(WeightsError, match="no img2img metadata") as excinfo:
        load_generator(bare)
    assert "img2img convert" in str(excinfo.value)


def test_newer_schema_is_refused(tmp_path, tiny_generator):
    with safe_open(tiny_generator, "pt") as handle:
        described = json.loads(handle.metadata()["img2img"])
    described["schema"] = SCHEMA_VERSION + 1
    newer = tmp_path / "newer.safetensors"
    save_file(load_file(tiny_generator), newer, metadata={"format": "pt", "img2img": json.dumps(described)})
    with pytest.raises(WeightsError, match="newer than this img2img"):
        load_generator(newer)


def test_tensors_that_do_not_fit_the_metadata_are_refused(tmp_path, tiny_generator):
    tensors = load_file(tiny_generator)
    tensors["model.1.weight"] = tensors["model.1.weight"][:2]
    bad = tmp_path / "bad.safetensors"
    config = read_metadata(tiny_generator).generator
    save_generator(bad, tensors, WeightsMetadata(generator=config))
    with pytest.raises(WeightsError, match="wrong shape"):
        load_generator(bad)


def test_pth_given_to_loader_points_at_convert(reference_fixtures):
    with pytest.raises(WeightsError, match="img2img convert"):
        load_generator(reference_fixtures / "unet_256_ngf8/checkpoint.pth")


def test_describe_reports_architecture_and_size(tiny_generator):
    details = describe(tiny_generator)
    assert details["architecture"] == "resnet_1blocks"
    assert details["parameters"] == sum(
        p.numel() for p in build_generator(read_metadata(tiny_generator).generator).parameters()
    )
    assert details["size_bytes"] == Path(tiny_generator).stat().st_size


def test_save_is_atomic_when_writing_fails(tmp_path, tiny_generator, monkeypatch):
    import img2img.models.weights as weights

    target = tmp_path / "out" / "model.safetensors"
    target.parent.mkdir()
    target.write_bytes(b"previous")

    def failing_save(*args, **kwargs):
        Path(args[1]).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(weights, "save_file", failing_save)
    with pytest.raises(OSError):
        save_generator(target, load_file(tiny_generator), read_metadata(tiny_generator))
    assert target.read_bytes() == b"previous"
    assert [p.name for p in target.parent.iterdir()] == ["model.safetensors"]


def test_saved_file_gets_the_usual_permissions(tmp_path, tiny_generator):
    umask = os.umask(0)
    os.umask(umask)
    assert tiny_generator.stat().st_mode & 0o777 == 0o666 & ~umask
