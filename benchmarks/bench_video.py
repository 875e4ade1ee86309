"""Flicker of frame-by-frame video translation, and the speed of `translate` on a video.

    python benchmarks/bench_video.py                          # photo2night, 160x120, 24 frames
    python benchmarks/bench_video.py --model photo2sketch --size 320x240 --frames 24

The clip is procedural: a textured background panning by a known number of pixels per frame,
a disc moving across it, and Gaussian sensor noise of a few grey levels (the usual source of
flicker: the input changes a little everywhere, a GAN may answer with large changes). Figures,
all in 8-bit grey levels (0-255) of RGB, averaged over pixels and frame pairs:

- ``change``: mean absolute change between consecutive frames, for the input and the output
  (their ratio is the flicker gain: above 1, the network amplifies frame-to-frame change);
- ``warp error``: the same after undoing the known pan (the previous frame shifted by the pan),
  on the background away from the disc: what changes that motion does not explain;
- the candidate stabiliser "blend with the previous output where the input did not change"
  (``--blend-threshold``: a pixel whose input moved by less than that many grey levels keeps
  ``--blend`` of the previous output), its warp error and its PSNR against the unstabilised
  output on the moving disc (how much it smears what moves).

Speed: translate_video end to end (decode, network, encode with libx264) on the same clip
encoded as an mp4, frames per second. A shared machine skews times; say its load with them.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def make_frames(
    width: int, height: int, count: int, pan: int, noise: float, seed: int = 0
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """uint8 RGB frames (H, W, 3) and boolean masks of the disc (H, W) for each frame."""
    rng = np.random.default_rng(seed)
    wide = width + pan * count
    yy, xx = np.mgrid[0:height, 0:wide].astype(np.float32)
    texture = np.stack(
        [
            128 + 60 * np.sin(xx / 7.0) * np.cos(yy / 11.0),
            120 + 50 * np.sin((xx + yy) / 13.0),
            110 + 70 * np.cos(xx / 17.0 - yy / 5.0),
        ],
        axis=-1,
    )
    frames, masks = [], []
    gy, gx = np.mgrid[0:height, 0:width]
    radius = max(4, min(width, height) // 6)
    for t in range(count):
        frame = texture[:, t * pan : t * pan + width].copy()
        cx, cy = width * (0.2 + 0.6 * t / max(count - 1, 1)), height / 2
        disc = (gx - cx) ** 2 + (gy - cy) ** 2 < radius**2
        frame[disc] = (230, 60, 40)
        frame += rng.normal(0, noise, frame.shape)
        frames.append(np.clip(frame, 0, 255).round().astype(np.uint8))
        masks.append(disc)
    return frames, masks


def change(frames: list[np.ndarray]) -> float:
    return float(
        np.mean([np.abs(b.astype(np.float32) - a.astype(np.float32)).mean() for a, b in zip(frames, frames[1:])])
    )


def warp_error(frames: list[np.ndarray], masks: list[np.ndarray], pan: int) -> float:
    """Mean |O_t - shift(O_{t-1})| on the background both frames see (disc and its margin out)."""
    errors = []
    for t in range(1, len(frames)):
        prev, cur = frames[t - 1].astype(np.float32), frames[t].astype(np.float32)
        # the background moved left by `pan`: cur[:, x] shows what prev[:, x + pan] showed
        a, b = cur[:, : cur.shape[1] - pan], prev[:, pan:]
        moving = masks[t][:, : cur.shape[1] - pan] | masks[t - 1][:, pan:]
        grown = moving.copy()
        for axis in (0, 1):  # a few pixels of margin: the network's receptive field
            for step in (-4, 4):
                grown |= np.roll(moving, step, axis=axis)
        keep = ~grown
        errors.append(np.abs(a - b)[keep].mean())
    return float(np.mean(errors))


def blend_previous(
    inputs: list[np.ndarray], outputs: list[np.ndarray], threshold: float, weight: float
) -> list[np.ndarray]:
    """The candidate stabiliser: where the input changed by less than ``threshold`` grey levels
    (mean over RGB), keep ``weight`` of the previous stabilised output."""
    result = [outputs[0].astype(np.float32)]
    for t in range(1, len(outputs)):
        still = (
            np.abs(inputs[t].astype(np.float32) - inputs[t - 1].astype(np.float32)).mean(axis=-1, keepdims=True)
            < threshold
        )
        cur = outputs[t].astype(np.float32)
        result.append(np.where(still, weight * result[-1] + (1 - weight) * cur, cur))
    return [np.clip(r, 0, 255).round().astype(np.uint8) for r in result]


def psnr_on(masks: list[np.ndarray], a: list[np.ndarray], b: list[np.ndarray]) -> float:
    errors = [((x.astype(np.float32) - y.astype(np.float32)) ** 2)[m].mean() for x, y, m in zip(a, b, masks)]
    mse = float(np.mean(errors))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="photo2night")
    parser.add_argument("--size", default="160x120")
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--pan", type=int, default=2, help="background pan, pixels per frame")
    parser.add_argument("--noise", type=float, default=3.0, help="sensor noise, grey levels (sigma)")
    parser.add_argument("--blend-threshold", type=float, default=6.0)
    parser.add_argument("--blend", type=float, default=0.5)
    args = parser.parse_args()
    width, height = map(int, args.size.lower().split("x"))

    import torch
    from PIL import Image

    from img2img.runtime.devices import cpu_class, cpu_model_name
    from img2img.translate.translator import Translator

    print(
        f"# {cpu_model_name()} | class {cpu_class()} | {torch.get_num_threads()} torch threads | load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    translator = Translator(args.model, device="cpu", engine="torch")
    inputs, masks = make_frames(width, height, args.frames, args.pan, args.noise)
    start = time.perf_counter()
    outputs = [
        np.asarray(image.convert("RGB")) for image in translator.translate_images([Image.fromarray(f) for f in inputs])
    ]
    network = time.perf_counter() - start
    clean, _ = make_frames(width, height, args.frames, args.pan, 0.0)
    clean_out = [
        np.asarray(image.convert("RGB")) for image in translator.translate_images([Image.fromarray(f) for f in clean])
    ]
    stable = blend_previous(inputs, outputs, args.blend_threshold, args.blend)
    print(
        f"model {args.model}, {width}x{height}, {args.frames} frames, pan {args.pan}px/frame, noise sigma {args.noise}"
    )
    print("| clip | change in | change out | flicker gain | warp error in | warp error out |")
    print("|---|---|---|---|---|---|")
    for name, a, b in (("noisy", inputs, outputs), ("noise-free", clean, clean_out)):
        print(
            f"| {name} | {change(a):.2f} | {change(b):.2f} | {change(b) / max(change(a), 1e-9):.2f} | {warp_error(a, masks, args.pan):.2f} | {warp_error(b, masks, args.pan):.2f} |"
        )
    print(
        f"candidate: blend {args.blend} of the previous output where the input changed < {args.blend_threshold}: "
        f"change out {change(stable):.2f}, warp error out {warp_error(stable, masks, args.pan):.2f}, "
        f"PSNR vs unstabilised on the moving disc {psnr_on(masks, stable, outputs):.1f} dB, "
        f"on the background {psnr_on([~m for m in masks], stable, outputs):.1f} dB"
    )
    print(f"network alone: {args.frames / network:.2f} frames/s")

    import av

    from img2img.translate.video import translate_video

    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder) / "clip.mp4"
        with av.open(str(clip), "w") as out:
            stream = out.add_stream("libx264", rate=25, options={"crf": "12"})
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for i, frame in enumerate(inputs):
                video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
                video_frame.pts = i
                out.mux(stream.encode(video_frame))
            out.mux(stream.encode())
        result = translate_video(translator, clip, Path(folder) / "out.mp4")
        print(f"translate_video (decode, network, libx264 encode): {result.frames} frames, {result.fps:.2f} frames/s")


if __name__ == "__main__":
    main()
