"""img2img.translate.ray: the map_batches class alone (no Ray), then through a local Ray with 2 CPUs
(started once for this module: Ray takes tens of seconds to start on a loaded machine)."""

from __future__ import annotations

import importlib.util
import io
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT, make_generator_file
from PIL import Image
from test_translate import make_image

from img2img.errors import UsageError


def make_folder(root: Path) -> dict[str, str]:
    """Images of mixed sizes and modes, a corrupt one, and files translate skips. Returns the
    relative names of the inputs with what each is."""
    make_image(root / "rgb.png", (20, 12), "RGB", seed=1)
    make_image(root / "sub" / "gray.png", (9, 13), "L", seed=2)
    make_image(root / "sub" / "alpha.png", (16, 24), "RGBA", seed=3)
    make_image(root / "photo.jpg", (33, 17), "RGB", seed=4)
    make_image(root / "deep" / "er" / "small.png", (5, 3), "RGB", seed=5)
    Image.fromarray((np.arange(11 * 15, dtype=np.uint16).reshape(11, 15) * 397)).save(root / "gray16.png")
    palette = Image.fromarray(np.random.default_rng(6).integers(0, 256, (14, 10, 3), dtype=np.uint8)).convert("P")
    palette.info["transparency"] = 0
    palette.save(root / "palette.gif", transparency=0)
    rotated = Image.fromarray(np.random.default_rng(7).integers(0, 256, (8, 18, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees on display
    rotated.save(root / "exif.jpg", exif=exif)
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but nothing after the signature")
    (root / "notes.txt").write_text("not an image")
    make_image(root / ".hidden.png")
    return {
        "rgb.png": "RGB",
        "sub/gray.png": "L",
        "sub/alpha.png": "RGBA",
        "photo.jpg": "JPEG",
        "deep/er/small.png": "tiny",
        "gray16.png": "I;16",
        "palette.gif": "P+transparency",
        "exif.jpg": "EXIF-rotated",
        "broken.png": "corrupt",
    }


@pytest.fixture
def actor_threads():
    """One torch thread, as Ray gives an actor with num_cpus=1, while translate (cli_outputs, a
    module fixture, so set up before this one) ran with torch's default: one per core. The
    outputs must not depend on it (img2img.models.determinism)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_generator_file(tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("inputs") / "photos"
    make_folder(root)
    return root


@pytest.fixture(scope="module")
def cli_outputs(model, folder, tmp_path_factory) -> Path:
    """What `img2img translate FOLDER --out-dir` writes: the reference for every comparison."""
    from img2img.cli import main

    out = tmp_path_factory.mktemp("cli") / "out"
    with pytest.raises(SystemExit) as info:
        main(["translate", str(folder), "-m", str(model), "--out-dir", str(out), "-q"])
    assert info.value.code == 1  # the corrupt file
    assert sorted(_files(out)) == sorted(n for n in make_folder_names() if n != "broken.png")
    return out


def make_folder_names() -> list[str]:
    return [
        "rgb.png",
        "sub/gray.png",
        "sub/alpha.png",
        "photo.jpg",
        "deep/er/small.png",
        "gray16.png",
        "palette.gif",
        "exif.jpg",
        "broken.png",
    ]


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _as_array(data: bytes) -> np.ndarray:
    """A lossless output file as the H x W x C array Translate returns."""
    array = np.asarray(Image.open(io.BytesIO(data)))
    return array[:, :, None] if array.ndim == 2 else array


# --- the class on its own (no Ray) ---------------------------------------------------------------


@pytest.fixture(scope="module")
def translate(model, cli_outputs):
    from img2img.translate.ray import Translate

    return Translate(str(model), device="cpu")


def test_binary_rows_match_the_cli_byte_for_byte_and_corrupt_is_a_row(model, folder, cli_outputs, actor_threads):
    from img2img.translate.ray import Translate

    names = make_folder_names()
    batch = {
        "bytes": np.array([(folder / n).read_bytes() for n in names], dtype=object),
        "path": np.array([str(folder / n) for n in names], dtype=object),
    }
    result = Translate(str(model), device="cpu", encode="auto")(batch)
    assert list(result["path"]) == [str(folder / n) for n in names]
    expected = _files(cli_outputs)
    for name, data, suffix, error in zip(names, result["bytes"], result["suffix"], result["error"]):
        if name == "broken.png":
            assert error == f"{folder}/broken.png: cannot identify image file" and data == b""
        else:
            assert error == "" and data == expected[str(Path(name).with_suffix(suffix))], name


def test_arrays_stacked_ragged_or_listed_keep_each_size_and_mode(translate, folder, cli_outputs, actor_threads):
    """read_images hands over a stacked array when all images share a shape, an object array
    (or a list) when they do not; 2-D arrays are grayscale, 4 channels RGBA, uint16 16-bit."""
    expected = _files(cli_outputs)
    rgb = np.asarray(Image.open(folder / "rgb.png"))
    stacked = {"image": np.stack([rgb, rgb]), "path": np.array(["a", "b"])}
    out = translate(stacked)
    assert [o.shape for o in out["image"]] == [(12, 20, 3)] * 2 and list(out["error"]) == ["", ""]
    assert np.array_equal(out["image"][0], _as_array(expected["rgb.png"]))

    names = ["rgb.png", "sub/gray.png", "sub/alpha.png", "gray16.png", "deep/er/small.png"]
    arrays = [np.asarray(Image.open(folder / n)) for n in names]
    assert [a.ndim for a in arrays] == [3, 2, 3, 2, 3] and arrays[3].dtype == np.uint16
    ragged = np.empty(len(arrays) + 1, dtype=object)
    for index, array in enumerate([*arrays, np.zeros((2, 2, 5), np.uint8)]):  # no mode has 5 channels
        ragged[index] = array
    for images in (ragged, list(ragged)):
        out = translate({"image": images, "path": [*names, "five.png"]})
        for name, array in zip(names, out["image"]):
            assert np.array_equal(array, _as_array(expected[name])), name
        assert list(out["error"])[:5] == [""] * 5 and out["error"][5].startswith("five.png: not an image array")
        assert out["image"][5].shape == (0, 0, 1)


def test_an_image_that_fails_in_the_network_is_an_error_row(model, folder, monkeypatch):
    from img2img.translate.ray import Translate

    translate = Translate(str(model), device="cpu", batch_size=4)
    forward = translate.translator._translate_inputs

    def fail_on_width_9(inputs):
        if any(item.size[0] == 9 for item in inputs):
            raise RuntimeError("boom")
        return forward(inputs)

    monkeypatch.setattr(translate.translator, "_translate_inputs", fail_on_width_9)
    names = ["rgb.png", "sub/gray.png", "sub/alpha.png"]
    for rows in (names, names[1:2]):  # in a batch with others, and alone
        out = translate({"bytes": [(folder / n).read_bytes() for n in rows], "path": rows})
        assert [e for e in out["error"]] == ["sub/gray.png: boom" if n == "sub/gray.png" else "" for n in rows]
        assert [a.size > 0 for a in out["image"]] == [n != "sub/gray.png" for n in rows]


def test_a_batch_without_image_columns_is_a_clear_error(translate):
    with pytest.raises(KeyError, match="expected a column 'bytes'"):
        translate({"path": ["a.png"], "pixels": [np.zeros((2, 2))]})


def test_missing_ray_names_the_extra(monkeypatch):
    from img2img.translate.ray import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    with pytest.raises(UsageError, match=r'pip install "img2img\[ray\]"'):
        import_ray()


def test_remote_listing_chooses_the_files_translate_chooses(tmp_path):
    """list_images (used for s3://, gs://... through pyarrow) against the local planner, on a
    file:// URI that pyarrow opens like any remote one."""
    from img2img.translate.ray import list_images, plan_inputs

    folder = tmp_path / "photos"
    make_folder(folder)
    (folder / ".cache").mkdir()
    make_image(folder / ".cache" / "thumb.png")  # inside a hidden folder: skipped by both
    root, files, errors = plan_inputs(str(folder), tmp_path / "out")
    assert errors == [] and root == str(folder)
    remote_root, remote_files = list_images(f"file://{folder}")
    assert remote_root == str(folder)
    assert remote_files == [f"file://{f}" for f in files]
    assert sorted(Path(f).relative_to(folder).as_posix() for f in files) == sorted(make_folder_names())
    with pytest.raises(UsageError, match="no such file or directory"):
        plan_inputs(str(folder / "missing"), tmp_path / "out")


def test_an_error_from_the_actors_is_found_in_rays_wrapping():
    """Ray reports a model that fails to load in an actor's __init__ as an ActorDiedError whose
    text holds the remote traceback; the example prints the img2img error behind it."""
    from img2img.errors import ModelNotFoundError
    from img2img.translate.ray import find_error

    remote = RuntimeError(
        "The actor died because of an error raised in its creation task\n"
        '  File "img2img/hub/registry.py", line 348, in _resolve\n'
        "img2img.errors.ModelNotFoundError: /m/x.safetensors: no such file"
    )
    found = find_error(remote)
    assert isinstance(found, ModelNotFoundError) and str(found) == "/m/x.safetensors: no such file"
    try:
        try:
            raise UsageError("unknown precision 'fp8'")
        except UsageError as exc:
            raise RuntimeError("wrapped") from exc
    except RuntimeError as wrapped:
        assert str(find_error(wrapped)) == "unknown precision 'fp8'"
    assert find_error(RuntimeError("something else")) is None


# --- through a local Ray --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    # loopback only: the tests send no traffic to any other address
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False, _node_ip_address="127.0.0.1"
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


def _with_deadline(fn, seconds: float):
    """fn() in a thread: a pipeline whose tasks never get a CPU waits forever; fail instead."""
    result: list = []
    thread = threading.Thread(target=lambda: result.append(fn()), daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"no result after {seconds} s: the pipeline is stuck")
    assert result, "the pipeline raised (see the thread's traceback above)"
    return result[0]


def _load_example():
    spec = importlib.util.spec_from_file_location("ray_translate", REPO_ROOT / "examples" / "ray_translate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_writes_what_translate_writes_and_reports_the_corrupt_file(
    ray_cluster, model, folder, cli_outputs, tmp_path, capsys
):
    out = tmp_path / "out"
    # Two actors with a CPU each take both of the cluster's CPUs: reading and writing still run.
    example = ["--model", str(model), "--batch-size", "4", "--concurrency", "2", "--quiet"]
    code = _with_deadline(lambda: _load_example().main([str(folder), str(out), *example]), seconds=600)
    stdout, stderr = capsys.readouterr()
    assert code == 1
    assert stderr.splitlines()[-1] == f"ray_translate: error: {folder}/broken.png: cannot identify image file"
    assert f"8 of 9 images written to {out}" in stdout and "1 failed" in stdout
    written = _files(out)
    assert written == _files(cli_outputs)  # the same names, byte for byte; no temporary files left

    # A second run refuses to overwrite, as translate does, and touches nothing.
    code = _load_example().main([str(folder), str(out), "--model", str(model), "--quiet"])
    stdout, stderr = capsys.readouterr()
    assert code == 1 and stderr.count("already exists (use --overwrite to replace it") == 8
    assert _files(out) == written


def test_entry_point_on_read_binary_files_and_read_images(ray_cluster, model, folder, cli_outputs):
    from img2img.translate.ray import Translate

    ray = ray_cluster
    names = make_folder_names()
    expected = _files(cli_outputs)
    pool = ray.data.ActorPoolStrategy(size=1)
    files = [str(folder / n) for n in names]
    rows = (
        ray.data.read_binary_files(files, include_paths=True)
        .map_batches(
            Translate, fn_constructor_kwargs={"model": str(model), "device": "cpu"}, batch_size=4, compute=pool
        )
        .take_all()
    )
    by_name = {Path(row["path"]).relative_to(folder).as_posix(): row for row in rows}
    assert sorted(by_name) == sorted(names)  # every input accounted for, once
    assert by_name.pop("broken.png")["error"].endswith("broken.png: cannot identify image file")
    for name, row in by_name.items():
        assert row["error"] == ""
        if name.endswith(".png"):  # lossless outputs: the very pixels
            assert np.array_equal(row["image"], _as_array(expected[name])), name
        else:  # JPEG and GIF outputs are lossy: their size
            assert row["image"].shape[1::-1] == Image.open(io.BytesIO(expected[name])).size, name

    # read_images decodes in Ray; mixed sizes in one batch still come back one per row.
    rgb = [n for n in names if n in ("rgb.png", "sub/alpha.png", "deep/er/small.png")]
    rows = (
        ray.data.read_images([str(folder / n) for n in rgb], include_paths=True)
        .map_batches(
            Translate, fn_constructor_kwargs={"model": str(model), "device": "cpu"}, batch_size=8, compute=pool
        )
        .take_all()
    )
    assert len(rows) == len(rgb)
    for row in rows:
        name = Path(row["path"]).relative_to(folder).as_posix()
        assert row["error"] == "" and np.array_equal(row["image"], _as_array(expected[name])), name


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--model", "photo2skech", "photo2skech: no such file, and not a known model name (did you mean photo2sketch"),
        ("--model", "missing.safetensors", "missing.safetensors: no such file"),
        ("--device", "gpu", "unknown device 'gpu'"),
        ("--ext", "xyz", "--ext xyz: extension '.xyz' is not an image format"),
    ],
)
def test_example_checks_its_arguments_before_starting_ray(
    model, folder, tmp_path, capsys, monkeypatch, option, value, message
):
    """A mistyped model (or device, or format) is one line before Ray starts, not every actor's
    traceback followed by that line."""
    ray = pytest.importorskip("ray")
    started = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda *a, **k: started.append(1))
    args = {"--model": str(model), "--device": "cpu", "--ext": "png", option: value}
    code = _load_example().main(
        [str(folder), str(tmp_path / "out"), *[x for kv in args.items() for x in kv], "--quiet"]
    )
    stdout, stderr = capsys.readouterr()
    assert code in (1, 2) and started == [] and stdout == ""
    assert stderr.count("\n") == 1 and stderr.startswith("ray_translate: error: ") and message in stderr, stderr
    assert not (tmp_path / "out").exists()


def test_example_skip_existing_completes_a_partial_run(ray_cluster, model, folder, cli_outputs, tmp_path, capsys):
    """A run that stopped part way (here: two outputs written, one of them damaged by hand to
    show it is kept) is completed by running it again with --skip-existing."""
    out = tmp_path / "out"
    expected = _files(cli_outputs)
    first, second = sorted(expected)[:2]
    for name in (first, second):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(expected[name])
    (out / second).write_bytes(b"kept as it is")
    args = [str(folder), str(out), "--model", str(model), "--quiet", "--skip-existing"]
    code = _with_deadline(lambda: _load_example().main(args), seconds=600)
    stdout, stderr = capsys.readouterr()
    assert code == 1  # broken.png still fails; nothing else does
    assert stderr.count("ray_translate: error:") == 1 and "broken.png" in stderr
    assert "6 of 9 images written" in stdout and "2 kept (already there)" in stdout and "1 failed" in stdout
    assert _files(out) == {**expected, second: b"kept as it is"}


def test_example_stops_on_sigterm_like_translate(model, tmp_path):
    """SIGTERM once the first output is there: exit 143, one line saying what was written, no
    Ray stack dumps, no traceback."""
    import os
    import signal
    import subprocess
    import time

    pytest.importorskip("ray")
    inputs = tmp_path / "in"
    inputs.mkdir()
    for index in range(60):
        make_image(inputs / f"{index:02d}.png", size=(24, 20), seed=index)
    out = tmp_path / "out"
    env = {**os.environ, "RAY_ADDRESS": "", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "examples" / "ray_translate.py"), str(inputs), str(out), "--model", str(model),
         "--batch-size", "1", "--quiet"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 600  # a hang guard only: the marker is the first output file
        while not (out.is_dir() and any(p.suffix == ".png" for p in out.iterdir())):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no output written"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, stderr
    assert "SIGTERM received" not in stderr and "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("ray_translate: interrupted by SIGTERM: wrote ") and last.endswith(f" to {out}")
    assert not [p for p in out.rglob(".img2img-tmp*")]
