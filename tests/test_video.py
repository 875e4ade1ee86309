"""`img2img translate` on videos (img2img.translate.video): clips made here with PyAV, outputs probed for
frame count, timestamps, copied packets and metadata; failures, existing outputs, signals."""

from __future__ import annotations

import hashlib
import json
import signal
import struct
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conftest import make_generator_file

from img2img.cli import main

av = pytest.importorskip("av", reason="PyAV (the [video] extra) is not installed; CI installs it with the dev extras")

TB = Fraction(1, 1000)


def make_clip(
    path: Path,
    pts: list[int],
    *,
    size=(64, 48),
    codec="libx264",
    pix_fmt="yuv420p",
    audio: str | None = None,
    subtitle: str | None = None,
    rotation: int | None = None,
    colour: bool = False,
    options: dict | None = None,
    seed: int = 0,
) -> Path:
    """A clip of moving noise with frames at ``pts`` (milliseconds), and optionally an audio
    stream (``aac``, ``libopus``), a subtitle stream (``mov_text``, ``subrip``) muxed as raw
    packets, a rotation and a BT.709 colour description."""
    rng = np.random.default_rng(seed)
    width, height = size
    with av.open(str(path), "w", options=options or {}) as out:
        video = out.add_stream(codec, rate=25)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        video.codec_context.time_base = TB
        if colour:
            context = video.codec_context
            context.color_primaries = context.color_trc = context.colorspace = 1  # BT.709
            context.color_range = 1  # limited (MPEG)
        if rotation is not None:
            video.set_display_rotation(rotation)
        sound = out.add_stream(audio, rate=48000) if audio else None
        if sound is not None:
            sound.layout = "mono"
        text = out.add_mux_stream(subtitle) if subtitle else None
        if text is not None:
            text.time_base = TB
        deep = "10" in pix_fmt
        for i, p in enumerate(pts):
            base = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
            if deep:
                frame = av.VideoFrame.from_ndarray(base.astype(np.uint16) * 257, format="rgb48le")
            else:
                frame = av.VideoFrame.from_ndarray(base, format="rgb24")
            frame.pts, frame.time_base = p, TB
            out.mux(video.encode(frame))
        out.mux(video.encode())
        if sound is not None:
            samples = 960 if audio == "libopus" else 1024
            for i in range(max(1, (pts[-1] * 48) // samples + 1)):
                chunk = np.sin(np.arange(samples, dtype=np.float32) * 0.05 + i)[None, :] * 0.3
                frame = av.AudioFrame.from_ndarray(chunk.astype(np.float32), format="fltp", layout="mono")
                frame.sample_rate, frame.pts = 48000, i * samples
                out.mux(sound.encode(frame))
            out.mux(sound.encode())
        if text is not None:
            for t in (0, pts[len(pts) // 2]):
                payload = b"caption %d" % t
                if subtitle == "mov_text":
                    payload = struct.pack(">H", len(payload)) + payload
                packet = av.Packet(payload)
                packet.stream, packet.pts, packet.dts, packet.duration, packet.time_base = text, t, t, 40, TB
                out.mux(packet)
    return path


def probe(path: Path) -> dict:
    """Frames (times in seconds, exact), the video stream's time base, size, pixel format,
    rotation, colour, and the payload hashes of every other stream."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        first = frames[0]
        info = {
            "times": [f.pts * stream.time_base for f in frames],
            "time_base": stream.time_base,
            "size": (first.width, first.height),
            "pix_fmt": first.format.name,
            "rotation": first.rotation,
            "colour": (int(first.color_primaries), int(first.color_trc), int(first.colorspace), int(first.color_range)),
            "frames": frames and [f.to_ndarray(format="rgb24") for f in frames],
        }
    with av.open(str(path)) as container:
        others = [s for s in container.streams if s.type in ("audio", "subtitle")]
        info["streams"] = {s.type: s.codec_context.name for s in others}
        payloads: dict[str, list[str]] = {s.type: [] for s in others}
        for packet in container.demux(*others) if others else ():
            # mov_text keeps empty cues between captions (the muxer adds them): only text counts
            if packet.size > 2:
                payloads[packet.stream.type].append(hashlib.sha256(bytes(packet)).hexdigest())
        info["payloads"] = payloads
    return info


def run(args: list, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["translate", *map(str, args), "--engine", "torch"])
    out, err = capsys.readouterr()
    return exit_info.value.code or 0, out, err


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_generator_file(tmp_path_factory.mktemp("model") / "tiny.safetensors")


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".img2img-tmp")]


def test_mp4_keeps_frames_timestamps_audio_subtitles_rotation_and_colour(model, tmp_path, capsys):
    pts = [0, 40, 80, 120, 160, 200, 240, 280]
    clip = make_clip(tmp_path / "clip.mp4", pts, audio="aac", subtitle="mov_text", rotation=90, colour=True)
    target = tmp_path / "out.mp4"
    code, stdout, stderr = run([clip, "-m", model, "-o", target, "--json", "--batch-size", "3"], capsys)
    assert code == 0, stderr
    record = json.loads(stdout)
    assert record["frames"] == len(pts) and record["status"] == "ok" and record["fps"] > 0
    before, after = probe(clip), probe(target)
    assert after["times"] == before["times"] and after["time_base"] == before["time_base"]
    assert after["size"] == (64, 48) and after["pix_fmt"] == "yuv420p"
    assert after["rotation"] == before["rotation"] == 90
    assert after["colour"] == before["colour"] == (1, 1, 1, 1)
    assert after["streams"] == {"audio": "aac", "subtitle": "mov_text"}
    assert after["payloads"] == before["payloads"] and len(after["payloads"]["subtitle"]) == 2
    # every frame was translated (the random network changes noise frames beyond codec loss)
    assert all(np.abs(a.astype(int) - b.astype(int)).mean() > 10 for a, b in zip(after["frames"], before["frames"]))
    assert leftovers(tmp_path) == []


def test_variable_frame_rate_mkv_with_opus_and_srt_stays_variable(model, tmp_path, capsys):
    pts = [0, 33, 50, 150, 160, 400, 433]  # irregular gaps
    clip = make_clip(tmp_path / "vfr.mkv", pts, audio="libopus", subtitle="subrip")
    out = tmp_path / "out"
    code, _, stderr = run([tmp_path, "-m", model, "--out-dir", out, "--video-codec", "libx264", "--crf", "30"], capsys)
    assert code == 0, stderr
    before, after = probe(clip), probe(out / "vfr.mkv")
    assert after["times"] == before["times"] == [Fraction(p, 1000) for p in pts]
    assert after["streams"] == before["streams"] and set(before["streams"]) == {"audio", "subtitle"}
    assert after["payloads"] == before["payloads"] and after["payloads"]["audio"]


def test_ext_names_the_container_of_videos_and_leaves_images_alone(model, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    make_clip(inputs / "a.mp4", [0, 40], size=(32, 24))
    from PIL import Image

    Image.new("RGB", (20, 12), (10, 200, 30)).save(inputs / "b.png")
    out = tmp_path / "out"
    code, _, stderr = run([inputs, "-m", model, "--out-dir", out, "--ext", "mkv"], capsys)
    assert code == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.mkv", "b.png"]
    with av.open(str(out / "a.mkv")) as container:
        assert container.format.name.startswith("matroska")


def test_ten_bit_odd_size_stays_ten_bit_and_same_size(model, tmp_path, capsys):
    if "yuv444p10le" not in [f.name for f in av.Codec("libx264", "w").video_formats or []]:
        pytest.skip("this FFmpeg's libx264 has no 10-bit formats")
    clip = make_clip(tmp_path / "deep.mov", [0, 40, 80, 120, 160], size=(33, 25), pix_fmt="yuv444p10le")
    target = tmp_path / "deep_out.mov"
    code, _, stderr = run([clip, "-m", model, "-o", target], capsys)
    assert code == 0, stderr
    after = probe(target)
    assert after["size"] == (33, 25) and after["pix_fmt"] == "yuv444p10le" and len(after["times"]) == 5


def test_webm_by_extension(model, tmp_path, capsys):
    clip = make_clip(tmp_path / "c.mp4", [0, 40, 80], size=(32, 24))
    target = tmp_path / "c.webm"
    code, _, stderr = run([clip, "-m", model, "-o", target, "--crf", "40"], capsys)
    assert code == 0, stderr
    with av.open(str(target)) as container:
        assert container.format.name.startswith("matroska") and container.streams.video[0].codec_context.name == "vp9"
    assert len(probe(target)["times"]) == 3


def test_truncated_video_fails_alone_naming_the_time_and_leaves_nothing(model, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    full = make_clip(tmp_path / "full.mp4", list(range(0, 1200, 40)), options={"movflags": "faststart"}, seed=3)
    (inputs / "cut.mp4").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    make_clip(inputs / "good.mp4", [0, 40, 80])
    out = tmp_path / "out"
    code, _, stderr = run([inputs, "-m", model, "--out-dir", out], capsys)
    assert code == 1
    lines = [line for line in stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and "cut.mp4" in lines[0] and "0:00:0" in lines[0], stderr
    assert sorted(p.name for p in out.iterdir()) == ["good.mp4"]


def test_existing_output_overwrite_and_skip_existing(model, tmp_path, capsys):
    clip = make_clip(tmp_path / "a.mp4", [0, 40, 80])
    target = tmp_path / "b.mp4"
    target.write_bytes(b"keep")
    code, _, stderr = run([clip, "-m", model, "-o", target], capsys)
    assert code == 1 and "already exists" in stderr and target.read_bytes() == b"keep"
    assert run([clip, "-m", model, "-o", target, "--skip-existing"], capsys)[0] == 0 and target.read_bytes() == b"keep"
    assert run([clip, "-m", model, "-o", target, "--overwrite"], capsys)[0] == 0
    assert len(probe(target)["times"]) == 3


def test_a_stream_the_container_cannot_hold_fails_before_work(model, tmp_path, capsys):
    clip = make_clip(tmp_path / "s.mp4", [0, 40], subtitle="mov_text")
    code, _, stderr = run([clip, "-m", model, "-o", tmp_path / "s.mkv"], capsys)
    assert code == 1 and "mov_text" in stderr and "s.mp4" in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.mp4"]


def test_an_encoder_the_container_cannot_hold_is_a_usage_error_before_work(model, tmp_path, capsys):
    clip = make_clip(tmp_path / "a.mp4", [0, 40])
    code, _, stderr = run([clip, "-m", model, "-o", tmp_path / "b.webm", "--video-codec", "libx264"], capsys)
    assert code == 2 and "libx264" in stderr and "webm" in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4"]


def test_encoder_options_reach_the_encoder_and_a_bad_one_is_a_usage_error(model, tmp_path, capsys):
    clip = make_clip(tmp_path / "a.mp4", [0, 40, 80], size=(32, 24))
    code, _, stderr = run([clip, "-m", model, "-o", tmp_path / "b.mp4", "--encoder-option", "preset=ultrafast"], capsys)
    assert code == 0, stderr
    with av.open(str(tmp_path / "b.mp4")) as container:  # x264 writes its settings into the stream
        packet = next(p for p in container.demux(container.streams.video[0]) if p.size)
        assert b"cabac=0" in bytes(packet)  # ultrafast turns CABAC off (medium: cabac=1)
    code, _, stderr = run([clip, "-m", model, "-o", tmp_path / "c.mp4", "--encoder-option", "preset"], capsys)
    assert code == 2 and "KEY=VALUE" in stderr


def test_without_pyav_one_line_and_exit_2(model, tmp_path, capsys, monkeypatch):
    clip = make_clip(tmp_path / "a.mp4", [0, 40])
    monkeypatch.setitem(sys.modules, "av", None)  # import av raises ImportError
    code, _, stderr = run([clip, "-m", model, "-o", tmp_path / "b.mp4"], capsys)
    assert code == 2 and 'pip install "img2img[video]"' in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "b.mp4").exists()


def test_sigint_and_sigterm_mid_video_leave_nothing(tmp_path):
    model = make_generator_file(tmp_path / "m.safetensors", ngf=8, n_blocks=3)
    clip = make_clip(tmp_path / "long.mkv", list(range(0, 300 * 40, 40)), audio="aac")
    runs = {}
    for signum in (signal.SIGINT, signal.SIGTERM):  # both at once: one start-up's wait
        out = tmp_path / f"out{int(signum)}"
        command = [
            sys.executable,
            "-m",
            "img2img",
            "translate",
            str(clip),
            "-m",
            str(model),
            "--out-dir",
            str(out),
            "--engine",
            "torch",
        ]
        runs[signum] = (out, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    deadline = time.monotonic() + 120  # a hang guard only
    pending = dict(runs)
    while pending and time.monotonic() < deadline:
        for signum, (out, process) in list(pending.items()):
            # The marker: the temporary output exists, so the video is being written.
            if (out.is_dir() and leftovers(out)) or process.poll() is not None:
                process.send_signal(signum)
                del pending[signum]
        time.sleep(0.002)
    for signum, (out, process) in runs.items():
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 128 + signum, stderr.decode()
        assert list(out.iterdir()) == []


def test_frames_enter_the_model_as_images_do():
    from PIL import Image

    from img2img.files.imageio import rgb_array_to_model_input, to_model_input

    pixels = np.random.default_rng(5).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    for channels in (1, 3):
        assert np.array_equal(
            rgb_array_to_model_input(pixels, channels).pixels, to_model_input(Image.fromarray(pixels), channels).pixels
        )
    deep = rgb_array_to_model_input(pixels.astype(np.uint16) * 257, 3).pixels
    assert np.allclose(deep, pixels / 255.0, atol=1e-6)


def test_grayscale_model_on_a_colour_video(tmp_path, capsys):
    gray = make_generator_file(tmp_path / "gray.safetensors", input_nc=1, output_nc=1)
    clip = make_clip(tmp_path / "c.mkv", [0, 40, 80], size=(32, 24))
    code, _, stderr = run([clip, "-m", gray, "-o", tmp_path / "g.mkv"], capsys)
    assert code == 0, stderr
    frames = probe(tmp_path / "g.mkv")["frames"]
    assert len(frames) == 3 and frames[0].shape == (24, 32, 3)
