"""translate's output does not depend on the number of torch threads (issue #15: Ray actors run
one thread each, `translate` one per core, shards whatever their host has)."""

from __future__ import annotations

import pytest
import torch
from conftest import make_generator_file
from torch import nn

from img2img.models.determinism import ConvTranspose2dInference, InstanceNormInference
from img2img.translate.translator import Translator


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _at_threads(fn, counts=(1, 2, 3)):
    outputs = {}
    for count in counts:
        torch.set_num_threads(count)
        with torch.inference_mode():
            outputs[count] = fn()
    return outputs


@pytest.mark.parametrize(
    "options",
    [
        {"arch": "resnet", "ngf": 4, "n_blocks": 1, "norm": "instance"},
        # pix2pix as translate runs it: batch norm with each image's own statistics
        {"arch": "unet", "num_downs": 5, "ngf": 4, "norm": "batch", "eval_mode": False},
    ],
    ids=["instance-norm", "per-image-batch-norm"],
)
def test_translator_output_is_bit_identical_at_1_2_and_3_threads(tmp_path, restore_threads, options):
    # 80x72: the first norm layers see 5760 pixels per channel; torch's channels-last group norm
    # (the layer used before) splits sums that long over the threads.
    translator = Translator(
        make_generator_file(tmp_path / "g.safetensors", **options), device="cpu", precision="fp32", tile="off"
    )
    x = torch.rand(2, 3, 72, 80, generator=torch.Generator().manual_seed(0)) * 2 - 1
    outputs = _at_threads(lambda: translator.translate_tensor(x))
    assert translator.channels_last  # the layout in which the old kernel depended on the threads
    for count, output in outputs.items():
        assert torch.equal(output, outputs[1]), f"{count} threads: {int((output != outputs[1]).sum())} values differ"


def test_transposed_convolution_is_bit_identical_across_thread_counts(restore_threads):
    """oneDNN's kernel differed at 4 threads for this shape; a tiny input differed in MKL's
    GEMM at 2 threads unless MKL runs in strict CNR mode (set by img2img.models.determinism)."""
    torch.manual_seed(0)
    for conv, shape in [
        (nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1), (1, 64, 60, 76)),
        (nn.ConvTranspose2d(128, 128, 4, stride=2, padding=1), (1, 128, 2, 3)),
    ]:
        layer = ConvTranspose2dInference(conv)
        x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
        outputs = _at_threads(lambda: layer(x), counts=(1, 2, 3, 4))
        for count, output in outputs.items():
            assert torch.equal(output, outputs[1]), f"{tuple(shape)} at {count} threads"
        with torch.inference_mode():
            expected = conv(x)
        assert outputs[1].is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(outputs[1], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("affine", [False, True])
def test_instance_norm_matches_torchs_within_rounding(affine):
    torch.manual_seed(0)
    norm = nn.InstanceNorm2d(6, affine=affine)
    if affine:
        nn.init.normal_(norm.weight)
        nn.init.normal_(norm.bias)
    x = (torch.randn(2, 6, 40, 33) * 3 + 5).contiguous(memory_format=torch.channels_last)
    layer = InstanceNormInference(6, norm.eps, norm.weight, norm.bias)
    with torch.inference_mode():
        y = layer(x)
        expected = nn.functional.instance_norm(
            x.double(),
            weight=None if norm.weight is None else norm.weight.double(),
            bias=None if norm.bias is None else norm.bias.double(),
            eps=norm.eps,
        )
    assert y.dtype == torch.float32 and y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, expected.float(), rtol=1e-5, atol=1e-5)


def test_statistics_of_a_single_channel_are_bit_identical_across_thread_counts(restore_threads):
    """One image of one channel: a single output of the reduction (the case torch could split
    over the threads); the statistics are the exact ones within float32 rounding."""
    from img2img.models.determinism import instance_norm_statistics

    x = torch.randn(1, 1, 300, 280, generator=torch.Generator().manual_seed(0)) * 2 + 3
    outputs = _at_threads(lambda: instance_norm_statistics(x), counts=(1, 2, 3, 4))
    for count, (mean, var) in outputs.items():
        assert torch.equal(mean, outputs[1][0]) and torch.equal(var, outputs[1][1]), f"{count} threads"
    torch.testing.assert_close(outputs[1][0].double().squeeze(), x.double().mean(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(outputs[1][1].double().squeeze(), x.double().var(unbiased=False), rtol=1e-5, atol=1e-5)


def test_the_faster_thread_count_dependent_path_gives_the_same_images(tmp_path):
    """thread_count_independent=False (group norm, oneDNN's transposed convolution) computes the
    same function: the two differ by float32 rounding only."""
    from img2img.models.determinism import ConvTranspose2dInference, GroupNormInference

    path = make_generator_file(tmp_path / "g.safetensors", norm="instance")
    exact = Translator(path, device="cpu", precision="fp32", tile="off")
    fast = Translator(path, device="cpu", precision="fp32", tile="off", thread_count_independent=False)
    kinds = {type(m) for m in fast.net.modules()}
    assert GroupNormInference in kinds and nn.ConvTranspose2d in kinds and ConvTranspose2dInference not in kinds
    x = torch.rand(1, 3, 40, 36, generator=torch.Generator().manual_seed(0)) * 2 - 1
    torch.testing.assert_close(fast.translate_tensor(x), exact.translate_tensor(x), rtol=0, atol=1e-5)
