"""The networks reproduce the reference implementation's checkpoints and outputs exactly."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from img2img.errors import UsageError
from img2img.models.config import DiscriminatorConfig, GeneratorConfig, parse_generator_name
from img2img.models.networks import (
    build_discriminator,
    build_generator,
    count_parameters,
    init_weights,
    use_per_image_batch_norm,
)

CASES = ["resnet_9blocks_ngf16", "unet_256_ngf8", "basic_d_ndf16"]


def build_from_reference_options(case: dict) -> torch.nn.Module:
    options = case["reference_options"]
    if case["network"] == "generator":
        return build_generator(
            GeneratorConfig.from_reference(
                options["netG"],
                input_nc=options["input_nc"],
                output_nc=options["output_nc"],
                ngf=options["ngf"],
                norm=options["norm"],
                use_dropout=options["use_dropout"],
            )
        )
    return build_discriminator(
        DiscriminatorConfig(
            arch=options["netD"],
            input_nc=options["input_nc"],
            ndf=options["ndf"],
            n_layers=options["n_layers_D"],
            norm=options["norm"],
        )
    )


@pytest.mark.parametrize("name", CASES)
def test_reference_checkpoint_loads_strictly_and_reproduces_output(name, reference_fixtures, reference_manifest):
    case = reference_manifest["cases"][name]
    net = build_from_reference_options(case)
    assert count_parameters(net) == case["n_params"]
    state_dict = torch.load(reference_fixtures / name / "checkpoint.pth", weights_only=True)
    net.load_state_dict(state_dict, strict=True)
    net.eval()
    io = load_file(reference_fixtures / name / "io.safetensors")
    assert list(io["input"].shape) == case["input_shape"]
    with torch.no_grad():
        output = net(io["input"])
    assert list(output.shape) == case["output_shape"]
    assert (output - io["output"]).abs().max().item() <= 1e-5


@pytest.mark.parametrize(
    "net_g, expected_keys, n_params",
    [
        # The reference's training logs print these totals as 11.378 M, 7.838 M and 54.414 M.
        ("resnet_9blocks", 48, 11_378_179),
        ("resnet_6blocks", 36, 7_837_699),
        ("unet_256", None, 54_413_955),
        ("unet_128", None, None),
    ],
)
def test_default_generators_forward(net_g, expected_keys, n_params):
    norm = "instance" if net_g.startswith("resnet") else "batch"
    cfg = GeneratorConfig.from_reference(net_g, norm=norm, use_dropout=norm == "batch")
    net = build_generator(cfg).eval()
    if expected_keys is not None:
        assert len(net.state_dict()) == expected_keys
    if n_params is not None:
        assert count_parameters(net) == n_params
    size = cfg.size_multiple if cfg.arch == "unet" else 64
    with torch.no_grad():
        out = net(torch.zeros(1, 3, size, size))
    assert out.shape == (1, 3, size, size)


def test_default_discriminators_forward():
    basic = build_discriminator(DiscriminatorConfig())
    pixel = build_discriminator(DiscriminatorConfig(arch="pixel"))
    five = build_discriminator(DiscriminatorConfig(arch="n_layers", n_layers=5))
    x = torch.zeros(1, 6, 256, 256)
    assert basic(x).shape == (1, 1, 30, 30)  # the 70x70 PatchGAN on 256x256
    assert pixel(x).shape == (1, 1, 256, 256)
    assert five(x).shape == (1, 1, 6, 6)
    assert count_parameters(basic) == 2_768_705  # the reference's pix2pix log: 2.769 M


@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
@pytest.mark.parametrize("arch", ["resnet", "unet"])
def test_norm_variants_build_and_keep_size(arch, norm):
    cfg = GeneratorConfig(arch=arch, ngf=4, norm=norm, n_blocks=2, num_downs=5, use_dropout=True)
    net = build_generator(cfg).eval()
    with torch.no_grad():
        assert net(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)


@pytest.mark.parametrize("padding_type", ["reflect", "replicate", "zero"])
def test_resnet_padding_types(padding_type):
    net = build_generator(GeneratorConfig(ngf=4, n_blocks=1, padding_type=padding_type))
    assert net(torch.zeros(1, 3, 16, 16)).shape == (1, 3, 16, 16)


@pytest.mark.parametrize("init_type", ["normal", "xavier", "kaiming", "orthogonal"])
def test_init_types(init_type):
    torch.manual_seed(0)
    net = init_weights(build_generator(GeneratorConfig(ngf=8, n_blocks=1)), init_type, gain=0.02)
    first_conv = net.model[1].weight
    assert torch.all(net.model[1].bias == 0)
    if init_type == "normal":
        assert abs(first_conv.std().item() - 0.02) < 0.005


def test_unknown_names_fail_loudly_with_valid_names():
    with pytest.raises(UsageError, match="resnet_9blocks"):
        parse_generator_name("resnet9")
    with pytest.raises(UsageError, match="basic, n_layers, pixel"):
        DiscriminatorConfig(arch="nlayer")
    with pytest.raises(UsageError, match="batch, instance, none"):
        GeneratorConfig(norm="group")
    with pytest.raises(UsageError, match="init type"):
        init_weights(build_generator(GeneratorConfig(ngf=4, n_blocks=1)), "uniform")


def test_generator_config_round_trips_through_dict():
    for cfg in (GeneratorConfig(), GeneratorConfig.from_reference("unet_128", norm="batch", ngf=32)):
        assert GeneratorConfig.from_dict(cfg.to_dict()) == cfg
    assert "num_downs" not in GeneratorConfig().to_dict()
    assert GeneratorConfig.from_reference("unet_256").size_multiple == 256
    assert GeneratorConfig.from_reference("resnet_6blocks").reference_name == "resnet_6blocks"


def test_per_image_batch_norm_matches_train_mode_batch_of_one_and_ignores_batching():
    torch.manual_seed(0)
    cfg = GeneratorConfig(arch="unet", ngf=4, norm="batch", num_downs=5)
    net = init_weights(build_generator(cfg))
    images = torch.randn(3, 3, 32, 32)
    net.train()
    with torch.no_grad():
        one_by_one_train_mode = torch.cat([net(image[None]) for image in images])
    use_per_image_batch_norm(net).eval()
    with torch.no_grad():
        batched = net(images)
    assert torch.allclose(batched, one_by_one_train_mode, atol=1e-5)
