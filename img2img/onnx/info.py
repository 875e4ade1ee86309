"""`img2img models info model.onnx`: what an exported ONNX file says about itself.

`img2img export` writes the weights format's JSON and how to feed the model (layout, value
ranges, channel order, size multiple, minimum and static size) into the ONNX model's
``metadata_props`` (:func:`img2img.onnx.export.onnx_metadata`); :func:`describe_onnx` reads them
back and shows them as ``models info`` shows a safetensors file (:func:`img2img.models.weights.describe`),
plus the graph's opset and input shape. Reading needs the ``onnx`` package of the optional extra
``img2img[onnx]``; without it, MissingExtraError names the install command.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from img2img.errors import WeightsError
from img2img.onnx.runtime import (
    INPUT_CHANNELS_KEY,
    INPUT_RANGE_KEY,
    LAYOUT_KEY,
    MINIMUM_SIZE_KEY,
    OUTPUT_CHANNELS_KEY,
    OUTPUT_RANGE_KEY,
    QUANTIZATION_KEY,
    QUANTIZATION_PSNR_KEY,
    SIZE_MULTIPLE_KEY,
    STATIC_SIZE_KEY,
    import_extra,
    onnx_metadata_of,
)

# metadata_props shown by `models info`, under these names (PIXELS_KEY, a sentence, is left to the file).
_SHOWN = {
    LAYOUT_KEY: "layout",
    INPUT_RANGE_KEY: "input_range",
    OUTPUT_RANGE_KEY: "output_range",
    INPUT_CHANNELS_KEY: "input_channels",
    OUTPUT_CHANNELS_KEY: "output_channels",
    SIZE_MULTIPLE_KEY: "size_multiple",
    MINIMUM_SIZE_KEY: "minimum_size",
    STATIC_SIZE_KEY: "static_size",
    QUANTIZATION_KEY: "quantization",
    QUANTIZATION_PSNR_KEY: "quantization_psnr",
}


def describe_onnx(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What ``models info`` shows about an ONNX file written by ``img2img export``: the same
    keys as for a weights file (architecture, generator, size_bytes, task, direction,
    preprocess, source, ...) plus ``format``, ``opset``, ``input`` (the graph's input shape, e.g.
    ``batch x 3 x 4*h x 4*w``: names for dynamic sides, which state the size multiple) and the feeding metadata (layout, ranges, channels, size
    multiple, minimum and static size). No parameter count: the exporter folds some tensors
    away (a convolution's bias before instance norm) and adds constants, so the graph's count
    is not the network's (``models info`` of the weights file gives that).

    Raises MissingExtraError without the onnx package, WeightsError for a missing file, a file
    that is not an ONNX model, or one without img2img's metadata (exported elsewhere)."""
    (onnx,) = import_extra("onnx")
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    try:
        # External data (files beside a >2 GB model) is not needed to count shapes.
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends: not an ONNX file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"{path}: not an ONNX model ({reason})") from None
    properties = {prop.key: prop.value for prop in model.metadata_props}
    metadata = onnx_metadata_of(path, properties)
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    shape = "-"
    if len(inputs) == 1:
        dims = inputs[0].type.tensor_type.shape.dim
        shape = " x ".join(str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in dims)
    opsets = {entry.domain or "ai.onnx": entry.version for entry in model.opset_import}
    return {
        "path": str(path),
        "format": "onnx",
        "architecture": metadata.generator.reference_name,
        "generator": metadata.generator.to_dict(),
        "size_bytes": path.stat().st_size,
        "task": metadata.task,
        "direction": metadata.direction,
        "eval_mode": metadata.eval_mode,
        "preprocess": dict(metadata.preprocess),
        "source": metadata.source,
        "img2img_version": metadata.img2img_version,
        "opset": opsets.get("ai.onnx"),
        "input": shape,
        **{name: properties[key] for key, name in _SHOWN.items() if key in properties},
    }
