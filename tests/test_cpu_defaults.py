"""Speed defaults follow what the CPU can do (issue #17): nothing that is only fast with native
bf16 is on by default on a CPU that emulates it."""

from __future__ import annotations

import torch

from img2img import devices
from img2img.inference import Translator, default_channels_last


def test_cpu_features_follow_torchs_own_probes():
    features = devices.cpu_features()
    assert set(features) == {"avx2", "avx512", "avx512_bf16", "amx"}
    assert features["avx512_bf16"] == torch.cpu._is_avx512_bf16_supported()
    assert devices.cpu_has_native_bf16() == (features["avx512_bf16"] or features["amx"])
    summary = devices.machine_summary()
    assert f"class {devices.cpu_class()}" in summary and torch.__version__ in summary


def test_translator_layout_default_and_override_give_the_same_output(tiny_generator):
    translator = Translator(tiny_generator, device="cpu", precision="fp32")
    assert translator.channels_last is default_channels_last(torch.device("cpu"), torch.float32)
    forced = Translator(tiny_generator, device="cpu", precision="fp32", channels_last=not translator.channels_last)
    x = torch.rand(1, 3, 12, 16) * 2 - 1
    assert torch.allclose(translator.translate_tensor(x), forced.translate_tensor(x), atol=1e-5)


def test_training_speed_defaults_follow_native_bf16(monkeypatch):
    from img2img.config import GeneratorConfig
    from img2img.train import runtime

    cpu = torch.device("cpu")
    unet, resnet = GeneratorConfig(arch="unet", num_downs=8), GeneratorConfig(arch="resnet")
    for native in (False, True):
        monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda native=native: native)
        amp = runtime.default_amp(cpu, "bf16")
        assert amp == native
        # channels-last was 18% slower for the U-Net in float32 on an AVX2-only CPU
        assert runtime.default_channels_last(cpu, unet, amp=amp) == native
        assert not runtime.default_channels_last(cpu, resnet, amp=amp)
    assert not runtime.default_amp(torch.device("cuda"), "bf16")
