"""`img2img export`: a generator as an ONNX model, checked against PyTorch before it is kept."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from img2img.cli._app import app
from img2img.cli._options import MaxPixelsOpt, OverwriteOpt, SkipExistingOpt, check_existing_options, kept_existing

_HELP = "\n\n".join(
    (
        "Export a generator (any model translate takes) to ONNX, with img2img's metadata inside.",
        "Batch, height and width are dynamic (height and width multiples of the network's size "
        "multiple: 4 for ResNet generators, 2^depth for U-Nets) unless --static HEIGHTxWIDTH fixes "
        "them (batch 1). Input and output: NCHW float32 in [-1, 1], RGB (or grayscale).",
        "The file is kept only if onnxruntime's outputs match PyTorch's within --tolerance "
        "(--no-check skips this); --quantize int8 keeps an int8 model only at 35 dB PSNR or more "
        "against fp32 on held-out calibration images (at least 8, cropped to the checked size, never resized). "
        "Otherwise exit 1 and no file is written.",
        'Needs the onnx extra: pip install "img2img\\[onnx]".',
    )
)


@app.command("export", help=_HELP)
def export(
    model: str = typer.Argument(..., help="A weights file, a model name or hf:OWNER/REPO\\[/FILE]."),
    output: Path = typer.Option(..., "-o", "--output", help="The .onnx file to write."),
    opset: Optional[int] = typer.Option(
        None,
        "--opset",
        min=7,
        help="ONNX opset (default: the exporter's; below 18 the TorchScript exporter writes it).",
    ),
    static: Optional[str] = typer.Option(
        None, "--static", metavar="HEIGHTxWIDTH", help="Fixed input size (and batch 1) for runtimes that need it."
    ),
    check: bool = typer.Option(
        True, "--check/--no-check", help="Compare onnxruntime with PyTorch before keeping the file."
    ),
    tolerance: Optional[float] = typer.Option(
        None,
        "--tolerance",
        min=0.0,
        help="Largest accepted max abs difference (outputs are in \\[-1, 1]; default 1e-3).",
    ),
    overwrite: OverwriteOpt = False,
    skip_existing: SkipExistingOpt = False,
    quantize: Optional[str] = typer.Option(
        None, "--quantize", metavar="int8", help="Quantise (int8: static, checked by PSNR against fp32, >= 35 dB)."
    ),
    calibration: Optional[Path] = typer.Option(
        None, "--calibration", metavar="DIR", help="Images to calibrate int8 on, like the ones you will translate."
    ),
    calibration_count: Optional[int] = typer.Option(
        None,
        "--calibration-count",
        min=1,
        help="At most this many calibration images (default 8, at least 4; as many held out).",
    ),
    max_pixels: MaxPixelsOpt = None,
) -> None:
    """Export a generator to ONNX, checked against PyTorch."""
    from img2img.cli._text import say
    from img2img.errors import OutputExistsError, UsageError, exists_message
    from img2img.onnx.export import DEFAULT_TOLERANCE, export_onnx, parse_static_size

    check_existing_options(overwrite, skip_existing)
    if output.suffix.lower() != ".onnx":
        raise UsageError(f"{output}: the output's extension must be .onnx")
    if kept_existing(output, overwrite=overwrite, skip_existing=skip_existing):
        return
    if max_pixels is not None:  # the limit of the --calibration images' reader
        from img2img.files.imageio import use_max_pixels

        use_max_pixels(max_pixels)
    size = parse_static_size(static) if static is not None else None
    try:
        result = export_onnx(
            model,
            output,
            opset=opset,
            static=size,
            check=check,
            tolerance=DEFAULT_TOLERANCE if tolerance is None else tolerance,
            report=lambda line: say(line, err=True),
            quantize=quantize,
            calibration=calibration,
            calibration_count=calibration_count,
            replace=overwrite,
        )
    except FileExistsError:  # written by another process while this one exported
        if skip_existing:
            say(f"kept {output} (it appeared while exporting; --skip-existing)", err=True)
            return
        raise OutputExistsError(exists_message(output)) from None
    shape = "x".join(str(dim) for dim in result.input_shape)
    say(
        f"wrote {output} (opset {result.opset}, {result.exporter} exporter, input {shape}, "
        f"{result.size_bytes / 1e6:.1f} MB, {result.seconds:.1f} s"
        + (f", {result.quantization}, {result.psnr_db:.1f} dB PSNR against fp32" if result.quantization else "")
        + ")",
        err=True,
    )
