"""Translating videos frame by frame with PyAV: timing, audio and metadata kept.

    from img2img.translate.video import translate_video
    result = translate_video(translator, Path("clip.mp4"), Path("night.mp4"), label="clip.mp4")

A video is decoded, its frames are batched through the same :class:`img2img.translate.translator.Translator`
as images (tiling included), and the translations are encoded as they come, so memory holds a
few frames (the decoder's and encoder's own buffers, x264's look-ahead, and ``batch_size``
frames), never the clip. The guarantees:

- **Exact timing.** Every decoded frame gives one output frame with the same presentation
  timestamp in the input's time base (the encoder and the video stream are given that time base;
  variable frame rate stays variable). Containers that fix their own time base (Matroska: 1/1000)
  keep the same times in seconds to the precision of that base.
- **Same size**, and the input's pixel format when the encoder takes it (10-bit stays 10-bit;
  the network's output is 8-bit, stored in 10 bits); odd sizes of 4:2:0 input, which H.264
  cannot hold, become 4:4:4.
- **Metadata**: the display matrix (rotation, flips) and the colour description (primaries,
  transfer, matrix, range) of the input are written on the output's stream; RGB conversions
  both ways use the input's matrix and range.
- **Other streams copied, not re-encoded**: audio and subtitle packets go into the output as they
  are (the same bytes); data and attachment streams are left out with a note. A stream the
  output container cannot hold (mov_text subtitles into Matroska) fails that video before any
  work, naming the stream.
- **Reliable**: written under a temporary name beside the output and moved into place
  (:func:`img2img.files.atomic.atomic_path`); any error or stop signal removes it. Unreadable data
  (a truncated or corrupt file) stops that video with :class:`VideoError` naming the file and
  the time of the failure; nothing is written for it.

PyAV is the optional extra ``img2img[video]``; without it :func:`import_av` raises
:class:`VideoExtraMissing` (exit code 2) with the install command.
"""

from __future__ import annotations

import importlib
import os
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from img2img.errors import ImageError, MissingExtraError, UsageError

EXTRA_HINT = 'pip install "img2img[video]"'

#: Output containers by extension (FFmpeg muxer names).
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}
#: Extensions read as videos (outputs of other extensions go to .mkv under --out-dir).
VIDEO_SUFFIXES = frozenset(CONTAINERS) | {
    ".avi",
    ".ts",
    ".mts",
    ".m2ts",
    ".mpg",
    ".mpeg",
    ".flv",
    ".wmv",
    ".3gp",
    ".ogv",
}
# Encoders tried in order when --video-codec is not given, per container.
_DEFAULT_CODECS = {
    "webm": ("libvpx-vp9", "libaom-av1", "libvpx"),
    "mp4": ("libx264", "h264", "libx265", "mpeg4"),
    "mov": ("libx264", "h264", "libx265", "mpeg4"),
    "matroska": ("libx264", "h264", "libx265", "libvpx-vp9", "ffv1"),
}
_COPIED_TYPES = ("audio", "subtitle")


class VideoError(ImageError):
    """A video that cannot be read or written: one line naming the file (and, for data that
    cannot be decoded, the time in the video where it failed)."""


class VideoExtraMissing(MissingExtraError):
    """PyAV is not installed: nothing can be done for videos, found before any work (exit 2)."""

    exit_code = 2


def import_av() -> Any:
    """The ``av`` module; VideoExtraMissing naming the install command when PyAV is missing."""
    try:
        return importlib.import_module("av")
    except ImportError as exc:
        raise VideoExtraMissing(f"videos need PyAV, which is not installed ({exc})", hint=EXTRA_HINT) from None


def is_video_path(path: str | os.PathLike[str]) -> bool:
    """Whether a file name's extension is one of :data:`VIDEO_SUFFIXES` (any case)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def container_for(path: str | os.PathLike[str]) -> str:
    """The FFmpeg muxer for an output file's extension; UsageError naming the file otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix not in CONTAINERS:
        raise UsageError(
            f"{path}: {suffix or 'no extension'} is not a video container img2img writes "
            f"({', '.join(sorted(CONTAINERS))})"
        )
    return CONTAINERS[suffix]


def video_output_suffix(name: str | os.PathLike[str], ext: str | None = None) -> str:
    """The extension of a video's output under --out-dir: ``ext`` when it names a container,
    else the input's when it is one, else .mkv (Matroska holds any stream)."""
    for suffix in (("." + ext.lower().lstrip(".")) if ext else None, Path(name).suffix.lower()):
        if suffix in CONTAINERS:
            return suffix
    return ".mkv"


def format_time(seconds: float | None) -> str:
    """Seconds -> H:MM:SS.mmm (what players show), or '?' when unknown."""
    if seconds is None:
        return "?"
    millis = int(round(max(seconds, 0.0) * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours}:{minutes:02d}:{rest // 1000:02d}.{rest % 1000:03d}"


@dataclass
class VideoResult:
    """What translate_video wrote: frames, their size, seconds of wall time, frames per second
    of the whole run (decode, network, encode), the encoder and pixel format chosen."""

    frames: int
    width: int
    height: int
    seconds: float
    codec: str
    pix_fmt: str
    copied_streams: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Probe:
    """What the first decoded frame says about the video stream."""

    width: int
    height: int
    pix_fmt: str
    bits: int
    colorspace: int
    color_range: int
    color_primaries: int
    color_trc: int
    display_matrix: list[int] | None


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.strip().splitlines()[0] if text and text.strip() else type(exc).__name__


def _open_input(av: Any, source: Path, label: str):
    try:
        container = av.open(os.fspath(source), "r")
    except av.error.FFmpegError as exc:
        raise VideoError(f"{label}: cannot read as a video ({_reason(exc)})") from None
    except OSError as exc:
        raise VideoError(f"{label}: cannot read ({_reason(exc)})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{label}: has no video stream")
    return container


def _bits(av: Any, pix_fmt: str) -> int:
    try:
        return max(component.bits for component in av.VideoFormat(pix_fmt).components)
    except Exception:  # noqa: BLE001  (hardware or unusual formats: treat as 8-bit)
        return 8


def _holds_size(av: Any, pix_fmt: str, width: int, height: int) -> bool:
    """Whether the format holds this size: chroma subsampled in a direction needs an even side
    there (encoders refuse odd 4:2:0)."""
    components = av.VideoFormat(pix_fmt, 64, 64).components
    across = any(c.width < 64 for c in components)
    down = any(c.height < 64 for c in components)
    return not (across and width % 2) and not (down and height % 2)


def _probe(av: Any, source: Path, label: str) -> _Probe:
    """Decode the first frame: size, format, colour and the display matrix, before any work."""
    with _open_input(av, source, label) as container:
        stream = container.streams.video[0]
        try:
            frame = next(container.decode(stream), None)
        except av.error.FFmpegError as exc:
            raise VideoError(
                f"{label}: unreadable video data at 0:00:00.000 ({_reason(exc)}); nothing written"
            ) from None
        if frame is None:
            raise VideoError(f"{label}: the video stream has no frames")
        matrix = None
        for kind in frame.side_data:  # a mapping: side data type -> buffer
            if getattr(kind, "name", "") == "DISPLAYMATRIX":
                raw = np.frombuffer(bytes(frame.side_data[kind]), dtype="=i4")
                matrix = [int(v) for v in raw[:9]] if raw.size >= 9 else None
        context = stream.codec_context
        pix_fmt = frame.format.name
        return _Probe(
            frame.width, frame.height, pix_fmt, _bits(av, pix_fmt),
            int(frame.colorspace), int(frame.color_range),
            int(getattr(frame, "color_primaries", context.color_primaries)),
            int(getattr(frame, "color_trc", context.color_trc)),
            matrix,
        )  # fmt: skip


def choose_encoder(av: Any, container: Any, fmt: str, requested: str | None) -> Any:
    """The encoder (av.Codec) for the video stream: ``requested`` (an FFmpeg encoder name such
    as libx264, libx265, libvpx-vp9, ffv1) or the first of the container's defaults this FFmpeg
    has. UsageError when the name is unknown or the container cannot hold it."""
    names = (requested,) if requested else _DEFAULT_CODECS.get(fmt, (container.default_video_codec,))
    supported = container.supported_codecs
    for name in names:
        try:
            codec = av.Codec(name, "w")
        except Exception:  # noqa: BLE001  (UnknownCodecError, ValueError by version)
            if requested:
                raise UsageError(f"--video-codec {requested}: this FFmpeg has no such encoder") from None
            continue
        if codec.type != "video":
            if requested:
                raise UsageError(f"--video-codec {requested}: not a video encoder")
            continue
        if codec.name in supported or getattr(codec, "canonical_name", codec.name) in supported:
            return codec
        if requested:
            raise UsageError(f"--video-codec {requested}: the {fmt} container cannot hold it")
    raise UsageError(f"no video encoder for the {fmt} container in this FFmpeg", hint="name one with --video-codec")


def check_encoder(fmt: str, requested: str | None) -> str:
    """The encoder a video in container ``fmt`` (an FFmpeg muxer name) would get, checked before
    any work: UsageError as :func:`choose_encoder`."""
    import io

    av = import_av()
    with av.open(io.BytesIO(), "w", format=fmt) as container:
        return choose_encoder(av, container, fmt, requested).name


def choose_pixel_format(av: Any, codec: Any, probe: _Probe) -> str:
    """The input's pixel format when the encoder takes it at this size; else a format of the
    same bit depth (4:2:0, then 4:4:4), 4:4:4 for odd sizes that 4:2:0 cannot hold; else the
    encoder's first format that fits."""
    supported = [f.name for f in (codec.video_formats or [])]
    if not supported:
        return probe.pix_fmt
    deep = probe.bits > 8

    def fits(name: str) -> bool:
        return name in supported and _holds_size(av, name, probe.width, probe.height)

    suffix = "10le" if deep else ""
    for name in (probe.pix_fmt, f"yuv420p{suffix}", f"yuv444p{suffix}", "yuv420p", "yuv444p"):
        if fits(name):
            return name
    for name in supported:
        if fits(name) and not name.startswith("gray"):
            return name
    raise VideoError(
        f"{codec.name} holds no pixel format for a {probe.width}x{probe.height} video",
        hint="choose another --video-codec",
    )


def translate_video(
    translator: Any,
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    label: str | None = None,
    codec: str | None = None,
    crf: int | None = None,
    batch_size: int = 1,
    replace: bool = False,
    on_frames: Callable[[int, int | None], None] | None = None,
    on_note: Callable[[str], None] | None = None,
    encoder_options: dict[str, str] | None = None,
) -> VideoResult:
    """Translate every frame of the video ``source`` into ``target`` (see the module's
    guarantees). ``codec`` names an FFmpeg encoder (default: H.264 where the container and this
    FFmpeg have it), ``crf`` its constant rate factor (x264/x265/VP9 scale; default: the
    encoder's). ``on_frames(done, total)`` is called as frames are written (``total`` from the
    container, None when unknown); ``on_note`` gets one-line notes (streams left out);
    ``encoder_options`` are passed to the FFmpeg encoder as they are (e.g. ``{"preset": "slow"}``).

    Raises VideoExtraMissing (no PyAV), UsageError (encoder choice), VideoError (unreadable or
    truncated input, a stream the container cannot hold), OutputExistsError (``target`` exists
    and not ``replace``), OutputError (cannot write), and lets Interrupted through; in every case
    nothing is left at ``target``."""
    from img2img.errors import OutputExistsError
    from img2img.files.atomic import atomic_path
    from img2img.files.imageio import rgb_array_to_model_input

    av = import_av()
    source, target = Path(source), Path(target)
    label = label or str(source)
    note = on_note or (lambda message: None)
    start = time.perf_counter()
    fmt = container_for(target)
    if not source.is_file():
        # The first frame is probed before the work (size, format, rotation), then the file is
        # opened again: a pipe would be consumed by the probe, or block the second open.
        raise VideoError(f"{label}: videos are read from regular files, not pipes or devices")
    probe = _probe(av, source, label)

    inp = _open_input(av, source, label)
    try:
        vin = inp.streams.video[0]
        time_base = vin.time_base or Fraction(1, 90000)
        copied = []
        for stream in inp.streams:
            if stream is vin:
                continue
            if stream.type in _COPIED_TYPES:
                copied.append(stream)
            else:
                note(f"{label}: stream {stream.index} ({stream.type}) is not copied")
        if target.exists() and not replace:
            raise OutputExistsError(
                f"{target}: already exists (use --overwrite to replace it, or --skip-existing to keep it)"
            )
        try:
            with atomic_path(target, replace=replace) as tmp:
                with av.open(os.fspath(tmp), "w", format=fmt) as out:
                    for stream in copied:
                        name = stream.codec_context.name
                        if name not in out.supported_codecs:
                            raise VideoError(
                                f"{label}: its {stream.type} stream {stream.index} ({name}) cannot be copied into "
                                f"{target.suffix} ({fmt})",
                                hint="choose an output container that holds it, e.g. the input's extension",
                            )
                    encoder = choose_encoder(av, out, fmt, codec)
                    pix_fmt = choose_pixel_format(av, encoder, probe)
                    options = dict(encoder_options or {})
                    if crf is not None:
                        options["crf"] = str(crf)
                        if "vpx" in encoder.name:
                            options["b"] = "0"  # VP9 is constant-quality only with no bitrate target
                    rate = vin.average_rate or vin.guessed_rate or Fraction(25)
                    vout = out.add_stream(encoder.name, rate=rate, options=options)
                    vout.width, vout.height, vout.pix_fmt = probe.width, probe.height, pix_fmt
                    vout.time_base = time_base
                    context = vout.codec_context
                    context.time_base = time_base
                    context.color_range = probe.color_range
                    context.colorspace = probe.colorspace
                    context.color_primaries = probe.color_primaries
                    context.color_trc = probe.color_trc
                    if vin.sample_aspect_ratio:
                        vout.sample_aspect_ratio = vin.sample_aspect_ratio
                    if probe.display_matrix is not None and hasattr(vout, "set_display_matrix"):
                        vout.set_display_matrix(probe.display_matrix)
                    mapping = {}
                    for stream in copied:
                        if hasattr(out, "add_stream_from_template"):  # PyAV 13 and later
                            mapping[stream.index] = out.add_stream_from_template(stream)
                        else:
                            mapping[stream.index] = out.add_stream(template=stream)
                        mapping[stream.index].metadata.update(stream.metadata)
                    copied_names = [f"{s.type}:{s.codec_context.name}" for s in copied]
                    vout.metadata.update(vin.metadata)
                    out.metadata.update(inp.metadata)
                    frames = _encode_all(
                        av, translator, inp, vin, out, vout, mapping, probe, pix_fmt, batch_size,
                        label=label, on_frames=on_frames, to_input=rgb_array_to_model_input,
                    )  # fmt: skip
        except FileExistsError:
            raise OutputExistsError(f"{target}: already exists (written by another process meanwhile)") from None
    finally:
        inp.close()
    return VideoResult(
        frames, probe.width, probe.height, time.perf_counter() - start, encoder.name, pix_fmt,
        copied_names,
    )  # fmt: skip


def _encode_all(
    av, translator, inp, vin, out, vout, mapping, probe, pix_fmt, batch_size, *, label, on_frames, to_input
) -> int:
    """Demux, decode, translate in batches, encode: returns the frames written."""
    deep = probe.bits > 8 and _bits(av, pix_fmt) > 8
    rgb = "rgb48le" if probe.bits > 8 else "rgb24"
    channels = translator.config.input_nc
    pending: dict[int, tuple[int | None, Any]] = {}  # frame index -> (pts, duration)
    total = vin.frames or None
    last_time: list[float | None] = [0.0]

    def decoded() -> Iterator[tuple[int, Any]]:
        index = 0
        try:
            for packet in inp.demux(vin, *[inp.streams[i] for i in mapping]):
                if packet.stream.index != vin.index:
                    if packet.dts is None:
                        continue  # the demuxer's end-of-stream marker
                    packet.stream = mapping[packet.stream.index]
                    out.mux(packet)
                    continue
                if packet.pts is not None and packet.time_base is not None:
                    last_time[0] = float(packet.pts * packet.time_base)
                for frame in packet.decode():
                    # Pixels enter the model through the one decoder module's conversion.
                    pixels = frame.to_ndarray(
                        format=rgb, src_colorspace=frame.colorspace, src_color_range=frame.color_range
                    )
                    pending[index] = (frame.pts, getattr(frame, "duration", None))
                    if frame.pts is not None and frame.time_base is not None:
                        last_time[0] = float(frame.pts * frame.time_base)
                    yield index, to_input(pixels, channels)
                    index += 1
        except av.error.FFmpegError as exc:
            raise VideoError(
                f"{label}: unreadable video data at {format_time(last_time[0])} (after {index} frames: "
                f"{_reason(exc)}); stopped, nothing written for it"
            ) from None
        if total is not None and index < total:
            raise VideoError(
                f"{label}: the video ends at {format_time(last_time[0])} after {index} of the {total} frames "
                "its index lists (truncated?); stopped, nothing written for it"
            )

    written = 0
    ready: dict[int, np.ndarray] = {}
    for result in translator.translate_stream(decoded(), batch_size=batch_size):
        if result.error is not None:
            raise VideoError(f"{label}: frame {result.key}: {result.error}")
        pixels = np.asarray(result.image)  # L (one output channel) or RGB, 8-bit
        ready[result.key] = np.repeat(pixels[:, :, None], 3, axis=2) if pixels.ndim == 2 else pixels
        while written in ready:  # frames are encoded in decoding order
            pixels = ready.pop(written)
            if deep:
                frame = av.VideoFrame.from_ndarray(pixels.astype(np.uint16) * 257, format="rgb48le")
            else:
                frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame = frame.reformat(format=pix_fmt, dst_colorspace=probe.colorspace, dst_color_range=probe.color_range)
            pts, duration = pending.pop(written)
            frame.pts = pts
            frame.time_base = vin.time_base
            if duration:
                frame.duration = duration
            out.mux(vout.encode(frame))
            written += 1
            if on_frames is not None:
                on_frames(written, total)
    out.mux(vout.encode(None))
    return written


__all__ = [
    "CONTAINERS",
    "EXTRA_HINT",
    "VIDEO_SUFFIXES",
    "VideoError",
    "VideoExtraMissing",
    "VideoResult",
    "choose_encoder",
    "check_encoder",
    "choose_pixel_format",
    "container_for",
    "format_time",
    "import_av",
    "is_video_path",
    "translate_video",
    "video_output_suffix",
]
