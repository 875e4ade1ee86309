"""Named models: the registry, downloads from a local HTTP server, the conversion cache, and the
Hugging Face cache. Nothing here reaches the internet: every URL is 127.0.0.1, the shipped
registry's base URL is pointed at a closed port, and the Hub is only ever read offline."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import make_generator_file

from img2img.errors import DownloadError, Img2ImgError, ModelNotFoundError, UsageError, WeightsError
from img2img.hub import registry

CYCLEGAN_NAMES = {
    "horse2zebra", "zebra2horse", "monet2photo", "style_monet", "style_cezanne", "style_ukiyoe",
    "style_vangogh", "summer2winter_yosemite", "winter2summer_yosemite", "apple2orange",
    "orange2apple", "sat2map", "map2sat", "cityscapes_photo2label", "cityscapes_label2photo",
    "facades_photo2label", "facades_label2photo", "iphone2dslr_flower",
}  # fmt: skip
PIX2PIX_NAMES = {  # registry name -> the reference's file name
    "edges2shoes": "edges2shoes",
    "sat2map_pix2pix": "sat2map",
    "map2sat_pix2pix": "map2sat",
    "facades_label2photo_pix2pix": "facades_label2photo",
    "day2night": "day2night",
}
SHIPPED_NAMES = {"photo2sketch", "photo2night", "night2photo"}  # trained by img2img itself, files in weights/
TINY_GENERATOR = {"netg": "resnet_9blocks", "ngf": 16, "norm": "instance", "use_dropout": False}


# --- a local download server ------------------------------------------------------------------


class FileServer:
    """Serves ``routes[path]`` (bytes) on 127.0.0.1 and counts the requests per path.

    A route may be a tuple (body, declared_length) to send a Content-Length that lies."""

    def __init__(self) -> None:
        self.routes: dict[str, bytes | tuple[bytes, int]] = {}
        self.hits: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's spelling)
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                body, length = route if isinstance(route, tuple) else (route, len(route))
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def total_hits(self) -> int:
        return sum(self.hits.values())

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def closed_port_url() -> str:
    """A URL on a port nobody listens on: connection refused, as on a machine without network."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path, monkeypatch):
    """A private cache, no offline flags, and the shipped registry's URLs on a closed port."""
    monkeypatch.setenv("IMG2IMG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("IMG2IMG_REGISTRY_BASE_URL", closed_port_url())
    for name in ("IMG2IMG_OFFLINE", "HF_HUB_OFFLINE", "IMG2IMG_REGISTRY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server():
    served = FileServer()
    yield served
    served.close()


@pytest.fixture
def checkpoint_bytes(reference_fixtures) -> bytes:
    return (reference_fixtures / "resnet_9blocks_ngf16" / "checkpoint.pth").read_bytes()


def write_registry(path: Path, models: dict, base_url: str | None = None) -> Path:
    data = {"schema": 1, "models": models}
    if base_url is not None:
        data["base_url"] = base_url
    path.write_text(json.dumps(data))
    return path


def tiny_entry(url: str, **extra) -> dict:
    return {"task": "cyclegan", "direction": "AtoB", "generator": TINY_GENERATOR, "url": url, **extra}


@pytest.fixture
def served_registry(tmp_path, monkeypatch, server, checkpoint_bytes):
    """Extra registry entries served by ``server``; returns the server."""
    server.routes["/models/tiny.pth"] = checkpoint_bytes
    models = {"tiny": tiny_entry("models/tiny.pth")}
    write_registry(tmp_path / "registry.json", models)
    monkeypatch.setenv("IMG2IMG_REGISTRY", str(tmp_path / "registry.json"))
    monkeypatch.setenv("IMG2IMG_REGISTRY_BASE_URL", server.url)
    return server


def add_entries(monkeypatch, tmp_path, **models) -> None:
    path = tmp_path / "registry.json"
    data = json.loads(path.read_text())
    data["models"].update(models)
    path.write_text(json.dumps(data))


def cache_contents(tmp_path) -> list[str]:
    """Everything under the cache, hidden temporary files included."""
    root = tmp_path / "cache"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


# --- the shipped registry ---------------------------------------------------------------------


def test_shipped_registry_lists_the_reference_models(monkeypatch):
    monkeypatch.delenv("IMG2IMG_REGISTRY_BASE_URL")
    entries = registry.load_registry()
    assert set(entries) == CYCLEGAN_NAMES | set(PIX2PIX_NAMES) | SHIPPED_NAMES
    for name in SHIPPED_NAMES:
        assert entries[name].file == f"{name}.safetensors" and entries[name].url is None
    for name in CYCLEGAN_NAMES:
        entry = entries[name]
        assert entry.task == "cyclegan" and entry.eval_mode is True
        assert entry.generator.reference_name == "resnet_9blocks"
        generator = entry.generator
        assert (generator.norm, generator.use_dropout, generator.ngf) == ("instance", False, 64)
        assert entry.url == f"http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models/{name}.pth"
    for name, reference_name in PIX2PIX_NAMES.items():
        entry = entries[name]
        # The reference's test.py runs pix2pix without --eval: batch norm on each image's statistics.
        assert entry.task == "pix2pix" and entry.eval_mode is False
        assert entry.generator.reference_name == "unet_256"
        generator = entry.generator
        assert (generator.norm, generator.use_dropout, generator.ngf) == ("batch", True, 64)
        assert entry.url == f"http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch/{reference_name}.pth"
    assert entries["horse2zebra"].direction == "AtoB"
    assert entries["zebra2horse"].direction == "BtoA"
    assert entries["style_monet"].direction == "BtoA"


def test_shipped_architectures_have_the_reference_parameter_counts():
    import torch

    from img2img.models.networks import build_generator, count_parameters

    entries = registry.load_registry()
    with torch.device("meta"):
        resnet = build_generator(entries["horse2zebra"].generator)
        unet = build_generator(entries["edges2shoes"].generator)
    # The reference prints "[Network G] Total number of parameters : 11.378 M" and "54.414 M".
    assert round(count_parameters(resnet) / 1e6, 3) == 11.378
    assert round(count_parameters(unet) / 1e6, 3) == 54.414


def test_base_url_override_rebases_relative_urls(monkeypatch):
    monkeypatch.setenv("IMG2IMG_REGISTRY_BASE_URL", "http://mirror.example/")
    assert registry.get_model_entry("horse2zebra").url == (
        "http://mirror.example/cyclegan/pretrained_models/horse2zebra.pth"
    )


@pytest.mark.parametrize(
    "entry, message",
    [
        ({**tiny_entry("a.pth"), "file": "x.safetensors"}, "exactly one of url, hf, file"),
        ({**tiny_entry("a.pth"), "colour": "red"}, "unknown keys colour"),
        (tiny_entry("a.pth", sha256="abc"), "sha256"),
        ({**tiny_entry("a.pth"), "task": "stylegan"}, "task"),
        ({**tiny_entry("a.pth"), "generator": {"ngf": 16}}, "netg"),
    ],
)
def test_malformed_registry_entries_fail_loudly(tmp_path, entry, message):
    path = write_registry(tmp_path / "bad.json", {"bad": entry})
    with pytest.raises(Img2ImgError, match=message):
        registry.read_registry_file(path)


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ModelNotFoundError) as excinfo:
        registry.resolve_model("horse2zebr")
    message = str(excinfo.value)
    assert "did you mean horse2zebra" in message and "img2img models list" in message
    assert "\n" not in message


def test_unknown_name_without_close_matches_lists_the_names():
    with pytest.raises(ModelNotFoundError, match="known names: .*edges2shoes"):
        registry.get_model_entry("qqqqqqq")


def test_missing_path_says_no_such_file(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no such file$"):
        registry.resolve_model(str(tmp_path / "nothing.safetensors"))


# --- local files: paths, shipped, cache ---------------------------------------------------------


def test_an_existing_path_wins(tiny_generator):
    assert registry.resolve_model(str(tiny_generator)) == tiny_generator


def test_a_folder_named_like_a_model_is_not_the_model(tmp_path, monkeypatch, served_registry):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny").mkdir()  # e.g. a dataset folder
    assert registry.resolve_model("tiny") == registry.cached_model_path("tiny")
    (tmp_path / "unknown").mkdir()
    with pytest.raises(WeightsError, match="is a folder"):
        registry.resolve_model("unknown")


def test_shipped_file_comes_before_the_cache(tmp_path, monkeypatch):
    shipped_dir = tmp_path / "weights"
    shipped_dir.mkdir()
    shipped = make_generator_file(shipped_dir / "horse2zebra.safetensors")
    make_generator_file(registry.cached_model_path("horse2zebra"))
    monkeypatch.setattr(registry, "WEIGHTS_DIR", shipped_dir)
    assert registry.resolve_model("horse2zebra") == shipped
    assert registry.pull_model("horse2zebra").status == "shipped"
    assert registry.pull_model("horse2zebra", force=True).status == "shipped"


def test_a_cached_model_is_used_without_the_network(tmp_path):
    cached = make_generator_file(registry.cached_model_path("horse2zebra"))
    # The registry URL is a closed port: any download attempt would fail.
    assert registry.resolve_model("horse2zebra") == cached
    assert registry.model_status(registry.get_model_entry("horse2zebra")) == ("cached", cached)


# --- downloads ----------------------------------------------------------------------------------


def test_download_convert_cache_and_reuse(served_registry, reference_fixtures, tmp_path):
    import torch
    from safetensors.torch import load_file

    from img2img.models.weights import load_generator

    path = registry.resolve_model("tiny")
    assert path == registry.cached_model_path("tiny")
    assert cache_contents(tmp_path) == ["models/tiny.safetensors"]
    assert served_registry.hits == {"/models/tiny.pth": 1}

    loaded = load_generator(path)
    assert loaded.metadata.eval_mode is True and loaded.metadata.task == "cyclegan"
    assert served_registry.url in loaded.metadata.source
    io = load_file(reference_fixtures / "resnet_9blocks_ngf16" / "io.safetensors")
    with torch.no_grad():
        output = loaded.net(io["input"])
    assert (output - io["output"]).abs().max().item() <= 1e-5

    assert registry.resolve_model("tiny") == path
    assert served_registry.total_hits == 1  # the second resolve used the cache


def test_pull_then_already_cached_then_force(served_registry):
    first = registry.pull_model("tiny")
    assert first.status == "downloaded" and first.path.is_file()
    again = registry.pull_model("tiny")
    assert again.status == "cached" and served_registry.total_hits == 1
    forced = registry.pull_model("tiny", force=True)
    assert forced.status == "downloaded" and served_registry.total_hits == 2


def test_pull_refuses_a_path(tiny_generator):
    with pytest.raises(UsageError):
        registry.pull_model(str(tiny_generator))


def test_find_local_model_never_downloads(served_registry):
    assert registry.find_local_model("tiny") is None
    assert served_registry.total_hits == 0


def test_sha256_is_checked_when_given(served_registry, tmp_path, monkeypatch, checkpoint_bytes):
    good = hashlib.sha256(checkpoint_bytes).hexdigest()
    add_entries(
        monkeypatch, tmp_path,
        good=tiny_entry("models/tiny.pth", sha256=good.upper()),
        bad=tiny_entry("models/tiny.pth", sha256="0" * 64),
    )  # fmt: skip
    with pytest.raises(DownloadError, match="sha256") as excinfo:
        registry.resolve_model("bad")
    assert "\n" not in str(excinfo.value)
    assert cache_contents(tmp_path) == []
    assert registry.resolve_model("good").is_file()


def test_http_404_is_one_line_and_leaves_nothing(served_registry, tmp_path, monkeypatch):
    add_entries(monkeypatch, tmp_path, gone=tiny_entry("models/gone.pth"))
    with pytest.raises(DownloadError, match="HTTP 404") as excinfo:
        registry.resolve_model("gone")
    assert "\n" not in str(excinfo.value) and "/models/gone.pth" in str(excinfo.value)
    assert cache_contents(tmp_path) == []


@pytest.mark.parametrize(
    "body, message",
    [
        (
            b"<html>this is not a checkpoint</html>",
            "refused the checkpoint .*looks like an HTML page, not a PyTorch checkpoint",
        ),
        ("half", "refused the checkpoint .*not a readable"),
        ("cut short", "cut short|interrupted"),
    ],
)
def test_broken_downloads_are_refused_and_leave_nothing(
    served_registry, tmp_path, monkeypatch, checkpoint_bytes, body, message
):
    half = checkpoint_bytes[: len(checkpoint_bytes) // 2]
    if body == "half":  # a truncated file, honestly declared
        body = half
    elif body == "cut short":  # the server promises the whole file, then hangs up
        body = (half, len(checkpoint_bytes))
    served_registry.routes["/models/broken.pth"] = body
    add_entries(monkeypatch, tmp_path, broken=tiny_entry("models/broken.pth"))
    with pytest.raises(DownloadError, match=message) as excinfo:
        registry.resolve_model("broken")
    assert "\n" not in str(excinfo.value)
    assert cache_contents(tmp_path) == []


class _Payload:
    """Unpickling this would create a folder: proof that the code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_a_crafted_pickle_is_refused_and_never_run(served_registry, tmp_path, monkeypatch):
    import io

    import torch

    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    torch.save({"model.1.weight": torch.zeros(1), "payload": _Payload(marker)}, buffer)
    served_registry.routes["/models/evil.pth"] = buffer.getvalue()
    add_entries(monkeypatch, tmp_path, evil=tiny_entry("models/evil.pth"))
    with pytest.raises(DownloadError, match="refused") as excinfo:
        registry.resolve_model("evil")
    assert "\n" not in str(excinfo.value)
    assert not marker.exists()
    assert cache_contents(tmp_path) == []


def test_a_checkpoint_of_another_architecture_is_refused(served_registry, tmp_path, monkeypatch):
    add_entries(
        monkeypatch, tmp_path,
        wide={**tiny_entry("models/tiny.pth"), "generator": {**TINY_GENERATOR, "ngf": 64}},
    )  # fmt: skip
    with pytest.raises(DownloadError, match=r"registry entry says .*ngf 64.* tensors hold .*ngf 16"):
        registry.resolve_model("wide")
    assert cache_contents(tmp_path) == []


def test_connection_refused_says_how_to_get_the_model(tmp_path):
    with pytest.raises(DownloadError) as excinfo:
        registry.resolve_model("horse2zebra")
    message = str(excinfo.value)
    assert message.startswith("horse2zebra: not in the cache and cannot download (")
    assert "img2img models pull horse2zebra" in message
    assert str(registry.cached_model_path("horse2zebra")) in message
    assert "\n" not in message
    assert cache_contents(tmp_path) == []


@pytest.mark.parametrize("variable", ["IMG2IMG_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_flags_stop_downloads(served_registry, monkeypatch, variable):
    monkeypatch.setenv(variable, "1")
    with pytest.raises(DownloadError, match=f"offline: {variable} is set.*models pull tiny"):
        registry.resolve_model("tiny")
    assert served_registry.total_hits == 0


def test_download_with_a_progress_bar(served_registry):
    assert registry.resolve_model("tiny", progress=True).is_file()


def test_import_does_not_pull_in_torch_or_the_hub():
    code = (
        "import sys, img2img.hub.registry as r\n"
        "r.load_registry()\n"
        "assert 'torch' not in sys.modules and 'huggingface_hub' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --- Hugging Face -------------------------------------------------------------------------------

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def fill_hf_cache(hub: Path, repo: str, files: dict[str, Path], commit: str = COMMIT) -> None:
    """The HF cache layout: models--OWNER--NAME/{refs/main, snapshots/COMMIT/FILE}. Real
    caches link snapshot files to blobs/; a plain file is found the same way."""
    folder = hub / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    for name, source in files.items():
        target = folder / "snapshots" / commit / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())


@pytest.fixture
def hf_cache(tmp_path, monkeypatch, tiny_generator):
    """An offline Hub with owner/repo holding model.safetensors and sub/file.safetensors."""
    from huggingface_hub import constants

    hub = tmp_path / "hf" / "hub"
    files = {"model.safetensors": tiny_generator, "sub/file.safetensors": tiny_generator}
    fill_hf_cache(hub, "owner/repo", files)
    # huggingface_hub reads these at import; patching the constants is what its functions consult.
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return hub


def test_hf_specs_resolve_from_the_hf_cache(hf_cache):
    snapshot = hf_cache / "models--owner--repo" / "snapshots" / COMMIT
    assert registry.resolve_model("hf:owner/repo") == snapshot / "model.safetensors"
    in_folder = registry.resolve_model("hf:owner/repo/sub/file.safetensors")
    assert in_folder == snapshot / "sub" / "file.safetensors"
    assert registry.resolve_model(f"hf:owner/repo@{COMMIT}") == snapshot / "model.safetensors"


def test_hf_missing_repo_offline_is_one_line(hf_cache):
    with pytest.raises(DownloadError) as excinfo:
        registry.resolve_model("hf:owner/missing")
    message = str(excinfo.value)
    assert "not in the Hugging Face cache" in message and "HF_HUB_OFFLINE" in message
    assert "\n" not in message
    assert registry.find_local_model("hf:owner/missing") is None
    with pytest.raises(DownloadError, match="repo has no|not in the Hugging Face cache"):
        registry.resolve_model("hf:owner/repo/nope.safetensors")


@pytest.mark.parametrize("spec", ["hf:", "hf:owner", "hf:/repo"])
def test_bad_hf_specs_are_usage_errors(spec):
    with pytest.raises(UsageError):
        registry.resolve_model(spec)


def test_hf_registry_entries(hf_cache, tmp_path, monkeypatch, reference_fixtures):
    fill_hf_cache(
        hf_cache, "owner/reference",
        {"latest_net_G.pth": reference_fixtures / "resnet_9blocks_ngf16" / "checkpoint.pth"},
    )  # fmt: skip
    models = {
        "from_hub": tiny_entry(None, hf={"repo": "owner/repo", "file": "sub/file.safetensors"}),
        "converted_from_hub": tiny_entry(None, hf={"repo": "owner/reference", "file": "latest_net_G.pth"}),
    }
    monkeypatch.setenv("IMG2IMG_REGISTRY", str(write_registry(tmp_path / "registry.json", models)))
    entries = registry.load_registry()
    assert registry.model_status(entries["from_hub"])[0] == "cached"
    assert registry.resolve_model("from_hub").name == "file.safetensors"
    assert registry.model_status(entries["converted_from_hub"])[0] == "downloadable"
    converted = registry.resolve_model("converted_from_hub")
    assert converted == registry.cached_model_path("converted_from_hub")
    assert registry.model_status(entries["converted_from_hub"]) == ("cached", converted)


def test_hf_environment_is_honoured_in_a_fresh_process(tmp_path, tiny_generator):
    fill_hf_cache(tmp_path / "hf" / "hub", "owner/repo", {"model.safetensors": tiny_generator})
    env = {
        **os.environ,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": "1",
        "IMG2IMG_CACHE": str(tmp_path / "cache"),
    }
    env.pop("HF_HUB_CACHE", None)
    code = "from img2img.hub.registry import resolve_model; print(resolve_model('hf:owner/repo'))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(
        tmp_path / "hf" / "hub" / "models--owner--repo" / "snapshots" / COMMIT / "model.safetensors"
    )
