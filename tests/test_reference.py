"""Reference checkpoints (pytorch-CycleGAN-and-pix2pix generator state dicts) used as they are:
the architecture is read from their keys and shapes, for every option the reference can build;
`convert` needs no flags, flags that contradict the checkpoint are refused, `translate --model
X.pth` converts once into the cache; files of the wrong kind are named for what they are.

The checkpoints are made here with torch.save of img2img.models.networks' reference-compatible
generators (their keys are the reference's: see test_converted_reference_checkpoint_* in
test_weights.py for the comparison with the reference's own outputs)."""

from __future__ import annotations

import gzip
import itertools

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from img2img.cli import main
from img2img.errors import WeightsError
from img2img.files import filetypes
from img2img.models.config import DiscriminatorConfig, GeneratorConfig
from img2img.models.networks import build_discriminator, build_generator, init_weights
from img2img.models.reference import infer_generator
from img2img.models.weights import (
    convert_reference_checkpoint,
    load_generator,
    load_reference_state_dict,
    read_metadata,
    read_reference_checkpoint,
)

REFERENCE_NETS = ["resnet_6blocks", "resnet_9blocks", "unet_128", "unet_256"]
NORMS = ["batch", "instance", "none"]
CHANNELS = [(3, 3), (1, 3), (3, 1), (1, 1)]


def reference_checkpoint(path, netg="resnet_9blocks", *, seed=0, **options):
    """torch.save(net.state_dict()) of a small generator, as the reference's save_networks does."""
    config = GeneratorConfig.from_reference(netg, **{"ngf": 4, **options})
    torch.manual_seed(seed)
    net = init_weights(build_generator(config))
    torch.save(net.state_dict(), path)
    return path, config, net


def run_main(args, capsys):
    with pytest.raises(SystemExit) as excinfo:
        main(args)
    captured = capsys.readouterr()
    return excinfo.value.code, captured.out, captured.err


# --- reading the architecture ---------------------------------------------------------------------


@pytest.mark.parametrize("netg, norm, dropout", list(itertools.product(REFERENCE_NETS, NORMS, [False, True])))
def test_every_reference_architecture_is_read_from_its_keys(tmp_path, netg, norm, dropout):
    for input_nc, output_nc in CHANNELS:
        path, config, net = reference_checkpoint(
            tmp_path / "latest_net_G.pth", netg, norm=norm, use_dropout=dropout,
            input_nc=input_nc, output_nc=output_nc,
        )  # fmt: skip
        _, inferred = read_reference_checkpoint(path)
        read = inferred.config
        assert (read.arch, read.reference_name, read.ngf, read.norm) == (
            config.arch, netg, 4, norm,
        )  # fmt: skip
        assert (read.input_nc, read.output_nc) == (input_nc, output_nc)
        if config.arch == "resnet":
            assert read.use_dropout == dropout  # dropout moves the residual blocks' keys
            assert "use_dropout" not in inferred.undecided
        else:
            assert "use_dropout" in inferred.undecided  # a U-Net's dropout moves no key
    # The last one converted with no options and loaded gives back the very same tensors.
    out = tmp_path / "converted.safetensors"
    metadata = convert_reference_checkpoint(path, out)
    assert metadata.generator.reference_name == netg and metadata.generator.norm == norm
    saved = load_file(out)
    assert set(saved) == set(net.state_dict())
    assert all(torch.equal(saved[key], value) for key, value in net.state_dict().items())
    assert load_generator(out).metadata.generator.reference_name == netg


@pytest.mark.parametrize("padding", ["reflect", "replicate", "zero"])
@pytest.mark.parametrize("dropout", [False, True])
def test_resnet_padding_is_read_where_the_keys_show_it(tmp_path, padding, dropout):
    path, _, _ = reference_checkpoint(tmp_path / "g.pth", "resnet_6blocks", padding_type=padding, use_dropout=dropout)
    _, inferred = read_reference_checkpoint(path)
    assert inferred.config.use_dropout == dropout
    if padding == "zero":
        assert inferred.config.padding_type == "zero"
    else:  # reflect and replicate pad with no tensors: the keys cannot tell them apart
        assert inferred.config.padding_type == "reflect" and "padding_type" in inferred.undecided
        _, chosen = read_reference_checkpoint(path, {"padding_type": padding})
        assert chosen.config.padding_type == padding


def test_old_checkpoints_with_module_prefixes_and_instance_norm_statistics(tmp_path):
    """DataParallel's module. prefixes and the running statistics PyTorch < 0.4 saved for
    instance norms: still an instance-norm ResNet, not a batch-norm one."""
    _, config, net = reference_checkpoint(tmp_path / "new.pth", "resnet_6blocks", norm="instance")
    old = {f"module.{key}": value for key, value in net.state_dict().items()}
    old["module.model.2.running_mean"] = torch.zeros(4)
    old["module.model.2.running_var"] = torch.ones(4)
    torch.save(old, tmp_path / "old.pth")
    _, inferred = read_reference_checkpoint(tmp_path / "old.pth")
    assert inferred.config == config
    convert_reference_checkpoint(tmp_path / "old.pth", tmp_path / "old.safetensors")
    assert set(load_file(tmp_path / "old.safetensors")) == set(net.state_dict())


def test_reference_fixtures_are_read_with_no_options(tmp_path, reference_fixtures, reference_manifest):
    for case, entry in reference_manifest["cases"].items():
        if entry["network"] != "generator":
            continue
        options = entry["reference_options"]
        metadata = convert_reference_checkpoint(
            reference_fixtures / case / "checkpoint.pth", tmp_path / f"{case}.safetensors"
        )
        generator = metadata.generator
        assert generator.reference_name == options["netG"]
        assert (generator.ngf, generator.norm) == (options["ngf"], options["norm"])
        assert (generator.input_nc, generator.output_nc) == (options["input_nc"], options["output_nc"])
        if generator.arch == "resnet":
            assert generator.use_dropout == options["use_dropout"]
        # Their outputs are compared with the reference's in test_weights.py.


def test_a_discriminator_is_named_as_one(tmp_path):
    for arch in ("basic", "pixel"):
        net = build_discriminator(DiscriminatorConfig(arch=arch, input_nc=6, ndf=4))
        torch.save(net.state_dict(), tmp_path / "latest_net_D.pth")
        with pytest.raises(
            WeightsError, match=r"latest_net_D.pth: a (PatchGAN|PixelGAN) discriminator .* not a generator"
        ):
            read_reference_checkpoint(tmp_path / "latest_net_D.pth")


def test_an_optimizer_state_and_a_training_checkpoint_are_named(tmp_path):
    net = build_generator(GeneratorConfig.from_reference("resnet_6blocks", ngf=4))
    # What torch.optim.Adam(...).state_dict() holds after a step (made by hand: creating an
    # optimizer imports torch's compiler stack, seconds on a loaded machine).
    optimizer_state = {
        "state": {
            i: {"step": torch.tensor(1.0), "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
            for i, p in enumerate(net.parameters())
        },
        "param_groups": [{"lr": 2e-4, "betas": (0.5, 0.999), "eps": 1e-8, "weight_decay": 0,
                          "params": list(range(len(list(net.parameters()))))}],
    }  # fmt: skip
    torch.save(optimizer_state, tmp_path / "optimizer.pth")
    with pytest.raises(WeightsError, match="optimizer.pth: an optimizer state"):
        load_reference_state_dict(tmp_path / "optimizer.pth")
    training = {"epoch": 3, "netG": net.state_dict(), "optimizer_G": optimizer_state}
    torch.save(training, tmp_path / "train.pth")
    with pytest.raises(WeightsError, match=r"train.pth: a training checkpoint .*'netG' entry looks like a generator"):
        load_reference_state_dict(tmp_path / "train.pth")
    # The common {"state_dict": ...} wrapper is opened.
    torch.save({"state_dict": net.state_dict(), "epoch": 3}, tmp_path / "wrapped.pth")
    assert read_reference_checkpoint(tmp_path / "wrapped.pth")[1].config.n_blocks == 6


def test_img2img_files_given_to_convert_are_named(tmp_path, tiny_generator):
    with pytest.raises(WeightsError, match="already an img2img weights file"):
        load_reference_state_dict(tiny_generator)
    from img2img.train.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "latest.safetensors", {"networks": {"G": {"w": torch.zeros(2)}}}, {"task": "pix2pix"})
    with pytest.raises(WeightsError, match="an img2img training checkpoint"):
        load_reference_state_dict(tmp_path / "latest.safetensors")


def test_a_plain_safetensors_state_dict_converts(tmp_path):
    _, config, net = reference_checkpoint(tmp_path / "g.pth", "unet_128", norm="none")
    save_file(net.state_dict(), tmp_path / "g.safetensors")
    assert read_reference_checkpoint(tmp_path / "g.safetensors")[1].config.reference_name == "unet_128"


FOREIGN_FILES = {
    "page.pth": (b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head></html>", "an HTML page"),
    "lfs.pth": (
        b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64 + b"\nsize 45575747\n",
        "a Git LFS pointer",
    ),
    "empty.pth": (b"", "an empty file"),
    "error.pth": (b"404: Not Found", "a text file"),
    "json.pth": (b'{"error": "not found"}', "a JSON text file"),
    "archive.pth": (gzip.compress(b"x" * 100), "a gzip-compressed file"),
    # A safetensors download cut short inside its header (8-byte length, then JSON).
    "cut.pth": (
        (300).to_bytes(8, "little") + b'{"__metadata__": {"format": "pt"}, "model.0.weight": {"dt',
        "a truncated safetensors file",
    ),
}


@pytest.mark.parametrize("name", sorted(FOREIGN_FILES))
def test_files_that_are_not_checkpoints_say_what_they_are(tmp_path, name):
    content, what = FOREIGN_FILES[name]
    (tmp_path / name).write_bytes(content)
    with pytest.raises(WeightsError) as excinfo:
        load_reference_state_dict(tmp_path / name)
    assert str(excinfo.value).startswith(f"{tmp_path / name}: looks like {what}, not a PyTorch checkpoint")
    # As weights, the same files are refused the same way.
    (tmp_path / "as.safetensors").write_bytes(content)
    with pytest.raises(WeightsError, match=f"looks like {what}, not a safetensors weights file"):
        load_generator(tmp_path / "as.safetensors")


def test_a_pickle_named_safetensors_is_named(tmp_path):
    path, _, _ = reference_checkpoint(tmp_path / "model.safetensors")
    with pytest.raises(WeightsError, match=r"model.safetensors: is a PyTorch checkpoint \(pickle\), not a safetensors"):
        load_generator(path)
    assert filetypes.sniff(path) == filetypes.PYTORCH_ZIP


def test_a_truncated_checkpoint_is_still_called_a_checkpoint(tmp_path):
    path, _, _ = reference_checkpoint(tmp_path / "g.pth")
    (tmp_path / "half.pth").write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(WeightsError, match="half.pth: not a readable PyTorch checkpoint"):
        load_reference_state_dict(tmp_path / "half.pth")


# --- the command line -----------------------------------------------------------------------------


def test_convert_needs_no_flags_for_a_resnet_trained_with_dropout(tmp_path, capsys):
    path, config, _ = reference_checkpoint(
        tmp_path / "latest_net_G_A.pth", "resnet_9blocks", use_dropout=True, norm="batch"
    )
    out = tmp_path / "g.safetensors"
    code, _, err = run_main(["convert", str(path), "-o", str(out)], capsys)
    assert code in (0, None), err
    assert "resnet_9blocks" in err and "dropout" in err
    assert read_metadata(out).generator == config


@pytest.mark.parametrize(
    "flags, said",
    [
        (["--arch", "unet_256"], "--arch unet_256 given, the checkpoint is resnet_9blocks"),
        (["--arch", "resnet_6blocks"], "--arch resnet_6blocks given, the checkpoint is resnet_9blocks"),
        (["--ngf", "64"], "--ngf 64 given, the checkpoint has 4"),
        (["--norm", "instance"], "--norm instance given, the checkpoint has batch norm"),
        (["--no-dropout"], "--no-dropout given, the checkpoint has dropout layers"),
        (["--input-nc", "1"], "--input-nc 1 given, the checkpoint has 3"),
        (["--output-nc", "1"], "--output-nc 1 given, the checkpoint has 3"),
        (["--padding-type", "zero"], "--padding-type zero given"),
    ],
)
def test_convert_flags_that_contradict_the_checkpoint_are_refused(tmp_path, capsys, flags, said):
    path, _, _ = reference_checkpoint(tmp_path / "g.pth", "resnet_9blocks", use_dropout=True, norm="batch")
    out = tmp_path / "g.safetensors"
    code, stdout, err = run_main(["convert", str(path), "-o", str(out), *flags], capsys)
    assert code == 1 and stdout == ""
    assert err.count("\n") == 1
    assert "the checkpoint holds resnet_9blocks (ngf 4, batch norm, 3->3 channels, dropout)" in err
    assert said in err
    assert not out.exists()


def test_convert_flags_that_agree_or_decide_are_accepted(tmp_path, capsys):
    path, _, _ = reference_checkpoint(tmp_path / "g.pth", "unet_128", norm="batch")
    out = tmp_path / "g.safetensors"
    args = ["convert", str(path), "-o", str(out), "--arch", "unet_128", "--ngf", "4", "--norm", "batch", "--no-dropout"]
    code, _, err = run_main(args, capsys)
    assert code in (0, None), err
    assert read_metadata(out).generator.use_dropout is False  # the keys could not say; the flag did


def test_translate_takes_a_reference_checkpoint_and_converts_it_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IMG2IMG_CACHE", str(tmp_path / "cache"))
    path, _, net = reference_checkpoint(tmp_path / "latest_net_G_B.pth", "resnet_6blocks", use_dropout=True)
    Image.new("RGB", (20, 12), (200, 30, 90)).save(tmp_path / "in.png")
    for run in range(2):
        out = tmp_path / f"out{run}.png"
        code, _, err = run_main(["translate", str(tmp_path / "in.png"), "--model", str(path), "-o", str(out)], capsys)
        assert code in (0, None), err
        assert Image.open(out).size == (20, 12)
        cached = list((tmp_path / "cache" / "converted").iterdir())
        assert len(cached) == 1
        if run == 0:
            first = cached[0].stat().st_mtime_ns
    assert cached[0].stat().st_mtime_ns == first  # the second run used the cached conversion
    from img2img.hub.registry import file_sha256

    assert cached[0].name == f"{file_sha256(path)}.BtoA.safetensors"  # latest_net_G_B maps B to A
    assert Image.open(tmp_path / "out0.png").tobytes() == Image.open(tmp_path / "out1.png").tobytes()


def test_translate_names_a_broken_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IMG2IMG_CACHE", str(tmp_path / "cache"))
    (tmp_path / "latest_net_G.pth").write_bytes(FOREIGN_FILES["page.pth"][0])
    Image.new("RGB", (8, 8)).save(tmp_path / "in.png")
    code, _, err = run_main(
        [
            "translate",
            str(tmp_path / "in.png"),
            "--model",
            str(tmp_path / "latest_net_G.pth"),
            "-o",
            str(tmp_path / "o.png"),
        ],
        capsys,
    )
    assert code == 1
    assert (
        err
        == f"img2img: error: {tmp_path / 'latest_net_G.pth'}: looks like an HTML page, not a PyTorch checkpoint ({filetypes.describe_kind('html')[1]})\n"
    )
    assert not (tmp_path / "o.png").exists()
    assert not (tmp_path / "cache" / "converted").exists() or not any((tmp_path / "cache" / "converted").iterdir())


def test_inference_works_on_header_shapes_without_tensors(tiny_generator):
    from safetensors import safe_open

    with safe_open(tiny_generator, "pt") as handle:
        shapes = {key: handle.get_slice(key).get_shape() for key in handle.keys()}
    assert infer_generator(shapes, tiny_generator).config == read_metadata(tiny_generator).generator


def test_translate_names_a_cache_it_cannot_write(tmp_path, monkeypatch, capsys):
    (tmp_path / "cache").write_text("a file where the cache folder should be")
    monkeypatch.setenv("IMG2IMG_CACHE", str(tmp_path / "cache"))
    path, _, _ = reference_checkpoint(tmp_path / "latest_net_G.pth", "resnet_6blocks")
    Image.new("RGB", (8, 8)).save(tmp_path / "in.png")
    code, _, err = run_main(
        ["translate", str(tmp_path / "in.png"), "--model", str(path), "-o", str(tmp_path / "o.png")], capsys
    )
    assert code == 1 and err.count("\n") == 1
    assert f"cannot write the conversion of {path}" in err and "IMG2IMG_CACHE" in err


def test_a_killed_conversions_leftover_is_removed_on_a_cache_hit(tmp_path, monkeypatch):
    import subprocess
    import sys

    from img2img.files import atomic
    from img2img.hub import registry

    monkeypatch.setenv("IMG2IMG_CACHE", str(tmp_path / "cache"))
    path, _, _ = reference_checkpoint(tmp_path / "latest_net_G.pth", "resnet_6blocks")
    converted = registry.resolve_model(str(path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftover = converted.parent / f".img2img-tmp.{atomic._HOST}.{dead.pid}.deadbeef"
    leftover.write_bytes(b"half a conversion")
    atomic._cleaned_folders.clear()  # as in a new process
    assert registry.resolve_model(str(path)) == converted
    assert not leftover.exists()
