"""Outputs keep the promises whatever computes them (issue 25 item 2): hostile or wrong ONNX
graphs, built here with onnx.helper, and PyTorch networks that misbehave, through translate.
Every network output passes img2img.translate.translator.check_output before it becomes pixels: shape
(the input's batch and size), the model's output channels, a float dtype, finiteness and the
[-1, 1] range; a failure is one line naming the input, exit 1, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from conftest import make_generator_file  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

from img2img.cli import main  # noqa: E402
from img2img.models.weights import read_metadata  # noqa: E402
from img2img.onnx.export import onnx_metadata  # noqa: E402
from img2img.translate.translator import BadOutputError, NonFiniteOutputError, Translator, check_output  # noqa: E402


def run(args, capture):
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out, err = capture.readouterr()
    return info.value.code or 0, out, err


def hostile_model(
    path: Path, weights: Path, nodes, *, initializers=(), output_type=TensorProto.FLOAT, output_shape=("N", 3, "H", "W")
) -> Path:
    """An ONNX file carrying ``weights``' img2img metadata (so translate takes it) whose graph
    is ``nodes``, from "input" to "output"."""
    metadata = read_metadata(weights)
    graph = helper.make_graph(
        list(nodes),
        "hostile",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("output", output_type, list(output_shape))],
        list(initializers),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    for key, value in onnx_metadata(metadata.to_json(), metadata.generator, None).items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


def ints(name: str, values) -> onnx.TensorProto:
    return helper.make_tensor(name, TensorProto.INT64, [len(values)], list(values))


def floats(name: str, values) -> onnx.TensorProto:
    return helper.make_tensor(name, TensorProto.FLOAT, [len(values)], list(values))


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    return make_generator_file(tmp_path / "g.safetensors")


@pytest.fixture
def picture(tmp_path: Path) -> Path:
    path = tmp_path / "in.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
    return path


# Each graph: (nodes, initializers, what the one error line must say).
GRAPHS = {
    # the issue's: the mean over H and W, a 1x1 image for a 32x32 input
    "mean over H and W": (
        [
            helper.make_node("ReduceMean", ["input", "axes"], ["m"], keepdims=1),
            helper.make_node("Tanh", ["m"], ["output"]),
        ],
        [ints("axes", [2, 3])],
        "1x1",
    ),
    # three times larger: cropping it back would write a corner of it
    "enlarged": (
        [helper.make_node("Resize", ["input", "", "scales"], ["output"], mode="nearest")],
        [floats("scales", [1, 1, 3, 3])],
        "96x96",
    ),
    # pixels in [0, 255] instead of [-1, 1]: clamping would write a white image
    "out of range": (
        [helper.make_node("Mul", ["input", "k"], ["output"])],
        [floats("k", [255.0])],
        "outside a generator's [-1, 1]",
    ),
    "not finite": (
        [helper.make_node("Div", ["input", "zero"], ["output"])],
        [floats("zero", [0.0])],
        "NaN or infinite",
    ),
}


@pytest.mark.parametrize("case", list(GRAPHS))
def test_a_hostile_graph_fails_the_image_in_one_line_and_writes_nothing(case, weights, picture, tmp_path, capsys):
    nodes, initializers, said = GRAPHS[case]
    model = hostile_model(
        tmp_path / "bad.onnx", weights, nodes, initializers=initializers, output_shape=("N", "C", "H2", "W2")
    )
    out_path = tmp_path / "out.png"
    code, out, err = run(["translate", picture, "--model", model, "-o", out_path, "--json"], capsys)
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert str(picture) in lines[0] and said in lines[0] and "bad.onnx" in lines[0]
    assert json.loads(out.strip().splitlines()[-1])["status"] == "error"
    assert not out_path.exists() and [p.name for p in tmp_path.iterdir() if p.suffix == ".png"] == ["in.png"]


LOAD_TIME = {
    # integers where a generator gives floats in [-1, 1]
    "int64": (
        [helper.make_node("Cast", ["input"], ["output"], to=TensorProto.INT64)],
        [],
        TensorProto.INT64,
        "tensor(int64)",
    ),
    # one channel where the metadata says three (onnxruntime infers the graph's output shape)
    "channels": (
        [helper.make_node("ReduceMean", ["input", "axes"], ["output"], keepdims=1)],
        [ints("axes", [1])],
        TensorProto.FLOAT,
        "returns 1 channels, its metadata says 3",
    ),
}


@pytest.mark.parametrize("case", list(LOAD_TIME))
def test_what_a_graph_declares_is_checked_before_any_image(case, weights, picture, tmp_path, capsys):
    nodes, initializers, output_type, said = LOAD_TIME[case]
    model = hostile_model(
        tmp_path / "bad.onnx",
        weights,
        nodes,
        initializers=initializers,
        output_type=output_type,
        output_shape=("N", "C", "H", "W"),
    )
    code, _, err = run(["translate", picture, "--model", model, "-o", tmp_path / "out.png"], capsys)
    assert code == 1
    [line] = err.strip().splitlines()
    assert "bad.onnx" in line and said in line
    assert not (tmp_path / "out.png").exists()


def test_check_output_refuses_integers_wrong_shapes_and_passes_a_generators_output():
    x = torch.zeros(2, 3, 8, 12)
    good = torch.tanh(torch.randn(2, 3, 8, 12))
    assert check_output(good.half(), x, 3, model="m", computed="fp16").dtype == torch.float32
    with pytest.raises(BadOutputError, match="int64"):
        check_output(torch.zeros(2, 3, 8, 12, dtype=torch.int64), x, 3, model="m", computed="fp32")
    with pytest.raises(BadOutputError, match="batch 1"):
        check_output(good[:1], x, 3, model="m", computed="fp32")
    with pytest.raises(BadOutputError, match="3-D"):
        check_output(good[0], x, 3, model="m", computed="fp32")
    with pytest.raises(NonFiniteOutputError):
        check_output(torch.full_like(good, float("inf")), x, 3, model="m", computed="fp32")
    slightly = good.clone()
    slightly[0, 0, 0, 0] = 1.0 + 1e-4  # a runtime's tanh rounding past 1 is still a generator's
    check_output(slightly, x, 3, model="m", computed="fp32")


class Scaled(torch.nn.Module):
    """A generator whose output is multiplied: out of range."""

    def __init__(self, net, factor):
        super().__init__()
        self.net, self.factor = net, factor

    def forward(self, x):
        return self.net(x) * self.factor


class Shrunk(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)[:, :, ::2, ::2]


@pytest.mark.parametrize("tile", ["off", 32])
@pytest.mark.parametrize("wrong", ["range", "shape"])
def test_pytorch_outputs_and_tiles_pass_the_same_check(weights, tile, wrong):
    translator = Translator(weights, device="cpu", engine="torch", tile=tile)
    translator.net = Scaled(translator.net, 300.0) if wrong == "range" else Shrunk(translator.net)
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (48, 70, 3), dtype=np.uint8))
    [result] = translator.translate_stream([("a", translator.to_input(image))])
    assert result.image is None and isinstance(result.error, BadOutputError)
    assert ("outside a generator's [-1, 1]" if wrong == "range" else "output for a") in str(result.error)


def test_a_graph_that_asks_for_too_much_memory_is_one_line_saying_so(weights, picture, tmp_path, capfd):
    """The issue's graph allocated 1.6e11 floats: onnxruntime's coloured log records reached the
    terminal and the message blamed the image's size."""
    big = 100_000_000  # 32*32*3 floats x 1e8 = 1.2e12 bytes: no machine gives that
    model = hostile_model(
        tmp_path / "greedy.onnx",
        weights,
        [
            helper.make_node("Unsqueeze", ["input", "last"], ["u"]),
            helper.make_node("Shape", ["u"], ["s"]),
            helper.make_node("Slice", ["s", "zero", "four"], ["head"]),
            helper.make_node("Concat", ["head", "many"], ["shape"], axis=0),
            helper.make_node("Expand", ["u", "shape"], ["e"]),
            helper.make_node("ReduceMean", ["e", "last"], ["output"], keepdims=0),
        ],
        initializers=[ints("last", [4]), ints("zero", [0]), ints("four", [4]), ints("many", [big])],
    )
    code, _, err = run(["translate", picture, "--model", model, "-o", tmp_path / "out.png"], capfd)
    assert code == 1
    [line] = err.strip().splitlines()
    assert str(picture) in line and "greedy.onnx" in line and "asked onnxruntime for 1228800000000 bytes" in line
    assert "1e+08 times the input's size" in line
    assert "\x1b" not in err and "BFCArena" not in err and "too large for this machine" not in line
    assert not (tmp_path / "out.png").exists()


def test_eval_models_translations_pass_the_same_check(weights, tmp_path, capsys):
    nodes, initializers, said = GRAPHS["mean over H and W"]
    model = hostile_model(
        tmp_path / "bad.onnx", weights, nodes, initializers=initializers, output_shape=("N", "C", "H2", "W2")
    )
    rng = np.random.default_rng(2)
    for folder in ("inputs", "targets"):
        (tmp_path / folder).mkdir()
        for index in range(2):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / folder / f"{index}.png")
    args = ["eval", "--model", model, "--input", tmp_path / "inputs", "--target", tmp_path / "targets",
            "--metrics", "psnr", "--save-outputs", tmp_path / "saved", "--json"]  # fmt: skip
    code, out, err = run(args, capsys)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 2 and all(said in line and "bad.onnx" in line for line in lines)
    assert {line.split(": ")[2] for line in lines} == {str(tmp_path / "inputs" / f"{i}.png") for i in range(2)}
    result = json.loads(out)
    assert result["failed"] == 2 and result["evaluations"][0]["scores"]["psnr"]["pairs"] == 0
    assert not list((tmp_path / "saved").glob("*")) if (tmp_path / "saved").exists() else True
