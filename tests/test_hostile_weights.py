"""Hostile or broken weights files fail fast and clearly: metadata is validated (types, enums,
ranges) and compared with the tensors in the header before any network is built; NaN/inf
weights are refused by loading, converting and saving; a network whose output is not finite
fails that input instead of writing a black image."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import make_generator_file
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from img2img.cli import main
from img2img.errors import WeightsError
from img2img.models import weights
from img2img.models.config import GeneratorConfig
from img2img.models.weights import (
    WeightsMetadata,
    check_finite,
    convert_reference_checkpoint,
    find_non_finite,
    load_generator,
    read_metadata,
    save_generator,
)


def run_main(args, capsys):
    with pytest.raises(SystemExit) as excinfo:
        main(args)
    captured = capsys.readouterr()
    return excinfo.value.code, captured.out, captured.err


def rewrite_metadata(source, target, change) -> None:
    """Copy ``source`` to ``target`` with its img2img metadata JSON changed by ``change(dict)``."""
    with safe_open(source, "pt") as handle:
        described = json.loads(handle.metadata()["img2img"])
    change(described)
    save_file(load_file(source), target, metadata={"format": "pt", "img2img": json.dumps(described)})


def no_network_may_be_built(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a network was built before the file was checked")

    monkeypatch.setattr(weights, "build_generator", refuse)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("n_blocks", 1_000_000, r"n_blocks must be in \[0, 128\], got 1000000"),
        ("n_blocks", "1", "n_blocks must be an integer, got '1'"),
        ("n_blocks", 1.0, "n_blocks must be an integer"),
        ("ngf", True, "ngf must be an integer, got True"),
        ("ngf", 0, r"ngf must be in \[1, 1024\]"),
        ("ngf", 10**9, r"ngf must be in \[1, 1024\]"),
        ("input_nc", -3, r"input_nc must be in \[1, 64\]"),
        ("output_nc", None, "output_nc must be an integer"),
        ("norm", "group", "unknown norm 'group'"),
        ("norm", 1, "norm must be a string"),
        ("arch", "vit", "unknown generator arch 'vit'"),
        ("padding_type", "circular", "unknown padding type 'circular'"),
        ("use_dropout", "false", "use_dropout must be true or false, got 'false'"),
        ("use_dropout", 0, "use_dropout must be true or false"),
        ("colour", "red", "unknown generator options: colour"),
    ],
)
def test_generator_metadata_is_strict(tmp_path, tiny_generator, monkeypatch, field, value, message):
    bad = tmp_path / "bad.safetensors"
    rewrite_metadata(tiny_generator, bad, lambda d: d["generator"].__setitem__(field, value))
    no_network_may_be_built(monkeypatch)
    with pytest.raises(WeightsError, match=message) as excinfo:
        load_generator(bad)
    assert str(excinfo.value).startswith(f"{bad}: invalid img2img metadata: generator: ")


def test_a_unet_a_thousand_levels_deep_is_refused_not_a_recursion_error(tmp_path, monkeypatch):
    unet = make_generator_file(tmp_path / "unet.safetensors", arch="unet", num_downs=5, norm="batch")
    bad = tmp_path / "deep.safetensors"
    rewrite_metadata(unet, bad, lambda d: d["generator"].__setitem__("num_downs", 1000))
    no_network_may_be_built(monkeypatch)
    with pytest.raises(WeightsError, match=r"num_downs must be in \[5, 12\], got 1000"):
        load_generator(bad)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("eval_mode", "false", "eval_mode must be true or false, got 'false'"),
        ("eval_mode", 0, "eval_mode must be true or false"),
        ("direction", "sideways", "direction must be one of AtoB, BtoA"),
        ("direction", None, "direction must be one of"),
        ("task", "stylegan", "task must be one of cyclegan, pix2pix"),
        ("schema", "1", "schema must be an integer"),
        ("generator", "resnet_9blocks", "generator must be a JSON object"),
        ("preprocess", [286, 256], "preprocess must be a JSON object"),
        ("source", 5, "source must be a string"),
    ],
)
def test_top_level_metadata_is_strict(tmp_path, tiny_generator, monkeypatch, field, value, message):
    bad = tmp_path / "bad.safetensors"
    rewrite_metadata(tiny_generator, bad, lambda d: d.__setitem__(field, value))
    no_network_may_be_built(monkeypatch)
    with pytest.raises(WeightsError, match=message):
        load_generator(bad)
    with pytest.raises(WeightsError, match=message):
        read_metadata(bad)


@pytest.mark.parametrize(
    "text, message",
    [("[1, 2]", "not a JSON object"), ("{", "not valid JSON"), ("[" * 100_000 + "]" * 100_000, "not valid JSON")],
)
def test_metadata_that_is_not_an_object_is_refused(tmp_path, tiny_generator, text, message):
    bad = tmp_path / "bad.safetensors"
    save_file(load_file(tiny_generator), bad, metadata={"format": "pt", "img2img": text})
    with pytest.raises(WeightsError, match=message):
        load_generator(bad)


@pytest.mark.parametrize(
    "change, holds",
    [
        ({"n_blocks": 100}, "resnet_1blocks"),  # in range, but the tensors have one block
        ({"ngf": 64}, "ngf 4"),
        ({"norm": "batch"}, "instance norm"),
        ({"use_dropout": True}, "no dropout"),
        ({"output_nc": 1}, "3->3 channels"),
        ({"arch": "unet", "num_downs": 8}, "resnet_1blocks"),
    ],
)
def test_declared_architecture_is_compared_with_the_header_before_building(
    tmp_path, tiny_generator, monkeypatch, change, holds
):
    bad = tmp_path / "bad.safetensors"
    rewrite_metadata(tiny_generator, bad, lambda d: d["generator"].update(change))
    no_network_may_be_built(monkeypatch)
    with pytest.raises(WeightsError, match=f"its metadata declares .* but its tensors hold .*{holds}"):
        load_generator(bad)


def test_integer_weights_are_refused(tmp_path, tiny_generator):
    tensors = load_file(tiny_generator)
    tensors["model.1.weight"] = tensors["model.1.weight"].to(torch.int8)
    bad = tmp_path / "int.safetensors"
    save_file(tensors, bad, metadata=safe_open(tiny_generator, "pt").metadata())
    with pytest.raises(WeightsError, match="tensor model.1.weight has dtype I8"):
        load_generator(bad)


# --- NaN and infinity ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad_value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_are_refused_when_loading(tmp_path, tiny_generator, bad_value):
    tensors = load_file(tiny_generator)
    tensors["model.4.weight"][0, 0, 0, 0] = bad_value
    bad = tmp_path / "nan.safetensors"
    metadata = safe_open(tiny_generator, "pt").metadata()
    save_file(tensors, bad, metadata=metadata)  # written around save_generator's own check
    with pytest.raises(
        WeightsError, match=r"nan.safetensors: refused: tensor model.4.weight holds NaN or infinite values \(1 in"
    ):
        load_generator(bad)


def test_non_finite_weights_are_never_written(tmp_path, tiny_generator):
    tensors = load_file(tiny_generator)
    tensors["model.1.bias"][1] = float("nan")
    tensors["model.4.weight"][:] = float("inf")
    target = tmp_path / "out" / "g.safetensors"
    with pytest.raises(WeightsError, match="refusing to write: tensor model.1.bias and 1 other tensors hold NaN"):
        save_generator(target, tensors, read_metadata(tiny_generator))
    assert not target.parent.exists() or list(target.parent.iterdir()) == []
    assert find_non_finite(tensors) == {"model.1.bias": 1, "model.4.weight": tensors["model.4.weight"].numel()}
    check_finite(load_file(tiny_generator), tiny_generator)  # a healthy one passes


def test_convert_refuses_a_checkpoint_with_nan(tmp_path, capsys):
    from img2img.models.networks import build_generator

    net = build_generator(GeneratorConfig.from_reference("resnet_6blocks", ngf=4))
    state = net.state_dict()
    state["model.10.conv_block.1.weight"][0] = float("nan")
    torch.save(state, tmp_path / "latest_net_G.pth")
    out = tmp_path / "g.safetensors"
    with pytest.raises(WeightsError, match="latest_net_G.pth: refused: tensor model.10.conv_block.1.weight holds NaN"):
        convert_reference_checkpoint(tmp_path / "latest_net_G.pth", out)
    code, _, err = run_main(["convert", str(tmp_path / "latest_net_G.pth"), "-o", str(out)], capsys)
    assert code == 1 and err.count("\n") == 1 and "NaN" in err
    assert not out.exists()


def exploding_generator(path):
    """Finite weights whose output is NaN for a bright input and finite for a black one: every
    conv weight is large and positive, so activations overflow to +inf from a positive input
    (and are cut to 0 by the first ReLU from a negative one); the last conv mixes signs, so
    inf - inf = NaN."""
    config = GeneratorConfig(arch="resnet", ngf=2, n_blocks=0, norm="none")
    from img2img.models.networks import build_generator

    net = build_generator(config)
    with torch.no_grad():
        for name, parameter in net.named_parameters():
            parameter.copy_(
                torch.full_like(parameter, 1e15) if name.endswith("weight") else torch.zeros_like(parameter)
            )
        last = net.model[-2].weight
        last[:, 1::2] *= -1
    save_generator(path, net.state_dict(), WeightsMetadata(generator=config))
    return path


@pytest.mark.parametrize("batch_size", ["1", "2"])
def test_non_finite_output_fails_that_input_and_writes_nothing(tmp_path, capsys, batch_size):
    model = exploding_generator(tmp_path / "boom.safetensors")
    Image.new("RGB", (16, 16), (255, 255, 255)).save(tmp_path / "bright.png")
    Image.new("RGB", (16, 16), (0, 0, 0)).save(tmp_path / "dark.png")
    out_dir = tmp_path / "out"
    code, _, err = run_main(
        ["translate", str(tmp_path / "bright.png"), str(tmp_path / "dark.png"), "--model", str(model),
         "--out-dir", str(out_dir), "--precision", "fp32", "--device", "cpu", "--batch-size", batch_size],
        capsys,
    )  # fmt: skip
    assert code == 1
    lines = err.strip().splitlines()
    assert len([line for line in lines if "NaN or infinite" in line]) == 1
    assert any("bright.png" in line and "NaN or infinite" in line for line in lines)
    assert sorted(p.name for p in out_dir.iterdir()) == ["dark.png"]


def test_translate_tensor_raises_on_non_finite_output(tmp_path):
    from img2img.translate.translator import NonFiniteOutputError, Translator

    translator = Translator(exploding_generator(tmp_path / "boom.safetensors"), device="cpu", precision="fp32")
    assert torch.isfinite(translator.translate_tensor(-torch.ones(1, 3, 8, 8))).all()
    with pytest.raises(NonFiniteOutputError, match="NaN or infinite"):
        translator.translate_tensor(torch.ones(1, 3, 8, 8))


def test_models_info_checks_the_header_too(tmp_path, tiny_generator, capsys):
    bad = tmp_path / "bad.safetensors"
    rewrite_metadata(tiny_generator, bad, lambda d: d["generator"].update(n_blocks=100))
    code, out, err = run_main(["models", "info", str(bad)], capsys)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "tensors hold resnet_1blocks" in err


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_weights_in_other_float_types_load_as_float32(tmp_path, tiny_generator, dtype):
    tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in load_file(tiny_generator).items()}
    half = tmp_path / "half.safetensors"
    save_file(tensors, half, metadata=safe_open(tiny_generator, "pt").metadata())
    net = load_generator(half).net
    assert all(p.dtype == torch.float32 for p in net.parameters())
    with torch.no_grad():
        assert net(torch.zeros(1, 3, 8, 8)).dtype == torch.float32


def test_hostile_headers_are_refused_quickly_without_walking_them():
    from img2img.models.reference import infer_generator

    deep = {"model.model.0.weight": [4, 3, 4, 4], "model.model.3.weight": [8, 3, 4, 4]}
    prefix = "model.model.1."
    for _ in range(5000):  # a U-Net 5000 levels deep
        deep[prefix + "model.1.weight"] = [8, 4, 4, 4]
        prefix += "model.3."
    with pytest.raises(WeightsError, match="deeper than 12 levels"):
        infer_generator(deep, "deep.safetensors")
    many = {"model.1.weight": [4, 3, 7, 7], f"model.{17 + 1000}.weight": [3, 4, 7, 7]}
    for i in range(1000):  # a thousand residual blocks
        many[f"model.{10 + i}.conv_block.1.weight"] = many[f"model.{10 + i}.conv_block.5.weight"] = [16, 16, 3, 3]
    with pytest.raises(WeightsError, match=r"unsupported generator \(n_blocks must be in \[0, 128\], got 1000\)"):
        infer_generator(many, "many.safetensors")


@pytest.mark.parametrize(
    "field, value",
    [("direction", "sideways"), ("eval_mode", "false"), ("task", "stylegan"), ("preprocess", {"a": [1]})],
)
def test_metadata_that_loading_would_refuse_is_never_written(tmp_path, field, value):
    with pytest.raises(WeightsError, match=f"invalid weights metadata: {field}"):
        WeightsMetadata(generator=GeneratorConfig(), **{field: value})


def test_a_non_finite_score_is_never_written():
    record = json.loads(json.dumps(VALIDATION))
    record["directions"]["AtoB"]["scores"]["psnr"]["value"] = float("nan")
    with pytest.raises(WeightsError, match="validation.directions.AtoB.scores.psnr.value"):
        WeightsMetadata(generator=GeneratorConfig(), validation=record)


# A record as a training run with --val-metrics writes it (img2img.eval.validation), so that the
# fields below are checked inside a file that is otherwise valid.
VALIDATION = {
    "epoch": 3,
    "directions": {
        "AtoB": {
            "scores": {"psnr": {"value": 21.5, "pairs": 4}, "kid": {"value": 0.01, "std": None}},
            "samples": {"fake": 4, "real": 4, "failed": 0},
            "settings": {"resize": "bilinear"},
        }
    },
}


def _set(data: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        data = data.setdefault(key, {})
    data[last] = value


# Every field of every section, each with values of the wrong type, out of range or not allowed:
# (dotted field, bad value, what the message names).
BAD_FIELDS = [
    ("schema", -1, "schema"),
    ("schema", True, "schema"),
    ("task", "stylegan", "task"),
    ("task", 1, "task"),
    ("direction", "sideways", "direction"),
    ("generator", [1], "generator"),
    ("generator.ngf", -4, "ngf"),
    ("preprocess", "resize_and_crop", "preprocess"),
    ("preprocess.preprocess", "zoom", "preprocess.preprocess"),
    ("preprocess.preprocess", 1, "preprocess.preprocess"),
    ("preprocess.load_size", -286, "preprocess.load_size"),
    ("preprocess.load_size", "286", "preprocess.load_size"),
    ("preprocess.load_size", 286.0, "preprocess.load_size"),
    ("preprocess.crop_size", -128, "preprocess.crop_size"),
    ("preprocess.crop_size", 0, "preprocess.crop_size"),
    ("preprocess.crop_size", 10**9, "preprocess.crop_size"),
    ("preprocess.crop_size", True, "preprocess.crop_size"),
    ("preprocess.crop_size", None, "preprocess.crop_size"),
    ("preprocess.flip", True, "'flip'"),
    ("eval_mode", "false", "eval_mode"),
    ("source", 5, "source"),
    ("img2img_version", 0.1, "img2img_version"),
    ("eval_mod", False, "'eval_mod'"),
    ("validation", [1], "validation"),
    ("validation.epoch", 0, "validation.epoch"),
    ("validation.epoch", "3", "validation.epoch"),
    ("validation.best", 1, "'best'"),
    ("validation.directions", ["AtoB"], "validation.directions"),
    ("validation.directions.sideways", {}, "'sideways'"),
    ("validation.directions.AtoB", 5, "validation.directions.AtoB"),
    ("validation.directions.AtoB.extra", 1, "'extra'"),
    ("validation.directions.AtoB.scores", [21.5], "validation.directions.AtoB.scores"),
    ("validation.directions.AtoB.scores.psnr", 21.5, "validation.directions.AtoB.scores.psnr"),
    ("validation.directions.AtoB.scores.psnr.value", "21.5", "validation.directions.AtoB.scores.psnr.value"),
    ("validation.directions.AtoB.scores.kid.std", True, "validation.directions.AtoB.scores.kid.std"),
    ("validation.directions.AtoB.samples", 4, "validation.directions.AtoB.samples"),
    ("validation.directions.AtoB.samples.fake", -1, "validation.directions.AtoB.samples.fake"),
    ("validation.directions.AtoB.samples.fake", 1.5, "validation.directions.AtoB.samples.fake"),
    ("validation.directions.AtoB.settings", "bilinear", "validation.directions.AtoB.settings"),
    # NaN and Infinity are no JSON (Python's json module reads and writes them unless told not
    # to); a standard deviation is never negative.
    ("validation.directions.AtoB.scores.psnr.value", float("nan"), "validation.directions.AtoB.scores.psnr.value"),
    ("validation.directions.AtoB.scores.psnr.value", float("inf"), "validation.directions.AtoB.scores.psnr.value"),
    ("validation.directions.AtoB.scores.kid.std", float("-inf"), "validation.directions.AtoB.scores.kid.std"),
    ("validation.directions.AtoB.scores.kid.std", -0.5, "validation.directions.AtoB.scores.kid.std"),
    ("validation.directions.AtoB.settings.scale", float("nan"), "validation.directions.AtoB.settings.scale"),
    ("validation.directions.AtoB.scores.psnr.pairs", float("inf"), "validation.directions.AtoB.scores.psnr.pairs"),
]


@pytest.fixture
def with_validation(tmp_path, tiny_generator):
    """The tiny generator with every metadata field present and valid."""
    full = tmp_path / "full.safetensors"
    rewrite_metadata(tiny_generator, full, lambda d: d.update(validation=json.loads(json.dumps(VALIDATION))))
    return full


def test_a_file_with_every_field_valid_loads(with_validation, capsys):
    assert read_metadata(with_validation).validation == VALIDATION
    code, out, err = run_main(["models", "info", str(with_validation)], capsys)
    assert code == 0 and err == "" and "psnr" in out


@pytest.mark.parametrize("field, value, named", BAD_FIELDS, ids=[f"{f}={v!r}" for f, v, _ in BAD_FIELDS])
def test_every_metadata_field_is_validated(tmp_path, with_validation, monkeypatch, capsys, field, value, named):
    bad = tmp_path / "bad.safetensors"
    rewrite_metadata(with_validation, bad, lambda d: _set(d, field, value))
    no_network_may_be_built(monkeypatch)
    with pytest.raises(WeightsError) as excinfo:
        load_generator(bad)
    assert str(excinfo.value).startswith(f"{bad}: invalid img2img metadata: ")
    assert named in str(excinfo.value)
    code, out, err = run_main(["models", "info", str(bad)], capsys)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and str(bad) in err and named in err


@pytest.mark.parametrize(
    "preprocess, named",
    [({"load_size": -286, "crop_size": 256}, "preprocess.load_size"), ({"crop_size": "256"}, "preprocess.crop_size")],
)
def test_a_registry_entry_with_a_bad_preprocess_is_refused(tmp_path, monkeypatch, capsys, preprocess, named):
    extra = tmp_path / "registry.json"
    entry = {
        "task": "cyclegan", "direction": "AtoB", "url": "http://127.0.0.1:9/x.pth", "preprocess": preprocess,
        "generator": {"netg": "resnet_9blocks", "norm": "instance", "use_dropout": False, "ngf": 64},
    }  # fmt: skip
    extra.write_text(json.dumps({"schema": 1, "models": {"mine": entry}}))
    monkeypatch.setenv("IMG2IMG_REGISTRY", str(extra))
    code, _, err = run_main(["models", "list"], capsys)
    assert code != 0 and err.count("\n") == 1
    assert str(extra) in err and "'mine'" in err and named in err
