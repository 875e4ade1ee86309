"""Speed defaults follow what the CPU can do (issue #17): nothing that is only fast with native
bf16 is on by default on a CPU that emulates it."""

from __future__ import annotations

import torch

from img2img.runtime import devices
from img2img.translate.translator import Translator, default_channels_last


def test_cpu_features_follow_torchs_own_probes(monkeypatch):
    features = devices.cpu_features()
    assert set(features) == {"avx2", "avx512", "avx512_bf16", "amx"}
    assert features["avx512_bf16"] == torch.cpu._is_avx512_bf16_supported()
    detected = devices.detected_cpu_class()
    assert devices.has_native_bf16(detected) == (features["avx512_bf16"] or features["amx"])
    monkeypatch.delenv(devices.ENV_CPU_CLASS)
    assert devices.cpu_class() == detected
    summary = devices.machine_summary()
    assert f"class {detected} |" in summary and torch.__version__ in summary


def test_the_environment_overrides_the_class_and_every_default_follows(cpu_class):
    from img2img.models.config import GeneratorConfig
    from img2img.train import runtime
    from img2img.translate.engines import resolve_engine
    from img2img.translate.translator import resolve_precision

    cpu = torch.device("cpu")
    native = cpu_class in ("avx512_bf16", "amx")
    assert devices.cpu_class() == cpu_class and devices.has_native_bf16(cpu_class) == native
    assert resolve_precision("auto", cpu) == (torch.bfloat16 if native else torch.float32)
    assert runtime.default_amp(cpu, "bf16") == native
    assert runtime.default_channels_last(cpu, GeneratorConfig(arch="unet", num_downs=8), amp=native) == native
    engine = resolve_engine("auto", cpu, torch.float32, weights=None, arch="resnet")
    assert (f"CPU class {cpu_class}" in engine.reason) == native
    if cpu_class != devices.detected_cpu_class():
        assert f"class {cpu_class} (simulated by IMG2IMG_CPU_CLASS" in devices.machine_summary()


def test_a_bad_class_in_the_environment_is_one_usage_line_naming_it(monkeypatch, tmp_path, capsys):
    import pytest

    from img2img.cli import main
    from img2img.errors import UsageError

    monkeypatch.setenv(devices.ENV_CPU_CLASS, "avx1024")
    with pytest.raises(UsageError, match="IMG2IMG_CPU_CLASS='avx1024'.*valid: other, avx2, avx512, avx512_bf16, amx"):
        devices.cpu_class()
    # every command refuses it before any work, whether or not it reads the class
    for args in (
        ["models", "list"],
        ["translate", str(tmp_path / "missing.png"), "-m", "x", "-o", str(tmp_path / "o.png")],
    ):
        with pytest.raises(SystemExit) as info:
            main(args)
        err = capsys.readouterr().err
        assert info.value.code == 2, err
        assert len(err.strip().splitlines()) == 1 and "IMG2IMG_CPU_CLASS" in err and "avx512_bf16" in err
    assert not (tmp_path / "o.png").exists()


def test_translator_layout_default_and_override_give_the_same_output(tiny_generator):
    translator = Translator(tiny_generator, device="cpu", precision="fp32")
    assert translator.channels_last is default_channels_last(torch.device("cpu"), torch.float32)
    forced = Translator(tiny_generator, device="cpu", precision="fp32", channels_last=not translator.channels_last)
    x = torch.rand(1, 3, 12, 16) * 2 - 1
    assert torch.allclose(translator.translate_tensor(x), forced.translate_tensor(x), atol=1e-5)


def test_training_speed_defaults_follow_native_bf16(monkeypatch):
    from img2img.models.config import GeneratorConfig
    from img2img.train import runtime

    cpu = torch.device("cpu")
    unet, resnet = GeneratorConfig(arch="unet", num_downs=8), GeneratorConfig(arch="resnet")
    for simulated, native in (("avx2", False), ("avx512", False), ("avx512_bf16", True), ("amx", True)):
        monkeypatch.setenv(devices.ENV_CPU_CLASS, simulated)
        amp = runtime.default_amp(cpu, "bf16")
        assert amp == native
        # channels-last was 18% slower for the U-Net in float32 on an AVX2-only CPU
        assert runtime.default_channels_last(cpu, unet, amp=amp) == native
        assert not runtime.default_channels_last(cpu, resnet, amp=amp)
    assert not runtime.default_amp(torch.device("cuda"), "bf16")
