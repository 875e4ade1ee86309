"""One download policy for every transfer, reply headers included: a registry URL and an `hf:`
model are both abandoned, with one line naming what and why, when the server trickles its
headers (a status line, then a byte every so often) or its body. Nothing is left in either
cache. (A registry URL that trickles its body: test_downloads.py.) The servers are on 127.0.0.1.

No outcome depends on the machine's speed or load: IMG2IMG_DOWNLOAD_TIMEOUT (T) is 5 s, far
above what an honest local reply takes (milliseconds) and far below what the dishonest ones
take: a trickle goes on until the client hangs up (a 60-s hang guard ends it, so that code
without the policy fails with another message instead of hanging), a redirect's headers take
T/2 each (in time on its own, never as a chain), and a trickled body brings 10 bytes/s
against a minimum of 1000."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from test_registry import closed_port_url, tiny_entry, write_registry

from img2img.errors import DownloadError
from img2img.hub import registry

REPO_ROOT = Path(__file__).resolve().parent.parent
COMMIT = "0123456789abcdef0123456789abcdef01234567"
SIZE = 100_000
TIMEOUT = 5  # IMG2IMG_DOWNLOAD_TIMEOUT, seconds
TRICKLE_FOR = 60.0  # a hang guard: a trickle lasts until the client hangs up, or this long
INTERVAL = 0.1
HOPS = 6  # redirects of the /hop/ chain
HOP_SECONDS = TIMEOUT / 2  # each redirect's headers: within the policy, the chain's are not
LATE = f"reply headers did not arrive within {TIMEOUT} s"


def hub_headers(size: int) -> bytes:
    """What the Hub answers for a file: its size, ETag and the commit of the revision."""
    return (
        f"Content-Length: {size}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n"
        f'ETag: "tricklingetag{size}"\r\nX-Repo-Commit: {COMMIT}\r\n\r\n'
    ).encode()


class TricklingServer:
    """Serves registry files and a fake Hugging Face Hub. A path containing ``headers`` sends the
    status line, then its headers one byte every INTERVAL seconds; one containing ``body`` sends
    honest headers (the Hub's, on HEAD too), then one byte of the body every INTERVAL seconds.
    A trickle stops after TRICKLE_FOR seconds (the server hangs up); a second GET of a trickled
    body (a library retrying) gets HTTP 500. A path containing ``ok`` serves ``self.body`` at
    once."""

    def __init__(self) -> None:
        server = self
        self.closed = threading.Event()
        self.gets: dict[str, int] = {}
        self.body = b""

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_HEAD(self) -> None:  # noqa: N802 (http.server's spelling)
                self.reply(body=False)

            def do_GET(self) -> None:  # noqa: N802
                server.gets[self.path] = server.gets.get(self.path, 0) + 1
                if "body" in self.path and server.gets[self.path] > 1:
                    self.send_error(500)
                    return
                self.reply(body=True)

            def reply(self, body: bool) -> None:
                self.close_connection = True
                if "/ok/" in self.path:
                    self.wfile.write(b"HTTP/1.1 200 OK\r\n" + hub_headers(len(server.body)))
                    self.wfile.write(server.body if body else b"")
                    return
                if "/cdn/" in self.path:  # the Hub sends the file's bytes to a CDN that never answers
                    self.send_response(302)
                    self.send_header("Location", f"http://127.0.0.1:{server.blackhole_port}/file")
                    self.send_header("X-Repo-Commit", COMMIT)
                    self.send_header("X-Linked-Etag", '"cdnetag"')
                    self.send_header("X-Linked-Size", str(SIZE))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if "/hop/" in self.path:
                    last = self.path.rsplit("/", 1)[1]
                    self.hop(int(last) if last.isdigit() else 0)
                    return
                if "headers" not in self.path and "body" not in self.path:
                    self.send_error(404)  # the library's other requests
                    return
                headers = hub_headers(SIZE)
                try:
                    if "headers" in self.path:
                        self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                        self.trickle(headers)
                        return
                    self.wfile.write(b"HTTP/1.1 200 OK\r\n" + headers)
                    if body:
                        self.trickle(b"x" * SIZE)
                except OSError:
                    pass  # the client gave up

            def hop(self, n: int) -> None:
                """A redirect to the next hop whose headers take HOP_SECONDS, each in time on its
                own; after HOPS of them, a 404."""
                if n >= HOPS:
                    self.send_error(404)
                    return
                reply = f"HTTP/1.1 302 Found\r\nLocation: /hop/{n + 1}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
                pieces = 6
                step = -(-len(reply) // pieces)
                try:
                    for start in range(0, len(reply), step):
                        self.wfile.write(reply[start : start + step])
                        self.wfile.flush()
                        if server.closed.wait(HOP_SECONDS / pieces):
                            return
                except OSError:
                    pass  # the client gave up

            def trickle(self, data: bytes) -> None:
                self.wfile.flush()
                end = time.monotonic() + TRICKLE_FOR
                for byte in data:
                    if server.closed.is_set() or time.monotonic() > end:
                        return
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    server.closed.wait(INTERVAL)

            def log_message(self, *args) -> None:
                pass

        # A port whose connections never complete (a firewall that drops packets): its accept
        # queue is full and never drained.
        self.blackhole = socket.socket()
        self.blackhole.bind(("127.0.0.1", 0))
        self.blackhole.listen(0)
        self.blackhole_port = self.blackhole.getsockname()[1]
        self.filler = socket.create_connection(("127.0.0.1", self.blackhole_port))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.closed.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.filler.close()
        self.blackhole.close()


@pytest.fixture
def server():
    served = TricklingServer()
    yield served
    served.close()


@pytest.fixture
def environment(tmp_path, monkeypatch, server) -> dict[str, str]:
    """A private img2img cache and HF cache, registry entries and the Hub on ``server``, and a
    TIMEOUT-second policy."""
    models = {name: tiny_entry(f"{server.url}/{name}.pth") for name in ("headers", "body")}
    models["hops"] = tiny_entry(f"{server.url}/hop/0")
    write_registry(tmp_path / "registry.json", models)
    env = {
        "IMG2IMG_CACHE": str(tmp_path / "cache"),
        "IMG2IMG_REGISTRY": str(tmp_path / "registry.json"),
        "IMG2IMG_REGISTRY_BASE_URL": closed_port_url(),
        "IMG2IMG_DOWNLOAD_TIMEOUT": str(TIMEOUT),
        "IMG2IMG_DOWNLOAD_MIN_RATE": "1000",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_ENDPOINT": server.url,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("IMG2IMG_OFFLINE", "HF_HUB_OFFLINE", "HF_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)
    return env


def files_under(folder: Path) -> list[str]:
    """Every file under ``folder``, hidden ones included."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def pull(spec: str, environment: dict[str, str]) -> subprocess.CompletedProcess:
    env = {**os.environ, **environment, "PYTHONPATH": str(REPO_ROOT)}
    args = [sys.executable, "-m", "img2img", "models", "pull", spec, "--quiet"]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)


def test_a_registry_url_that_trickles_its_headers_is_abandoned(environment, tmp_path):
    with pytest.raises(DownloadError) as excinfo:
        registry.resolve_model("headers")
    message = str(excinfo.value)
    assert message.startswith("headers: download of ") and "/headers.pth abandoned: " in message
    assert LATE in message and "IMG2IMG_DOWNLOAD_TIMEOUT" in message
    assert "\n" not in message
    assert files_under(tmp_path / "cache") == []


def test_redirects_do_not_restart_the_headers_clock(environment, tmp_path, server):
    # Six redirects whose headers each take T/2: every reply is in time on its own, but the
    # download has waited 3 T for headers; a hostile server could hold a run for 20 redirects
    # (the clients' limit) times the timeout.
    with pytest.raises(DownloadError) as excinfo:
        registry.resolve_model("hops")
    message = str(excinfo.value)
    assert "/hop/0 abandoned: " in message and LATE in message, message
    assert files_under(tmp_path / "cache") == []


@pytest.mark.parametrize("repo, reason", [
    ("owner/headers", LATE),
    ("owner/body", "below the minimum of 1.0 kB/s"),
    ("owner/hop", LATE),  # the Hub's redirects, each in time
    ("owner/cdn", LATE),  # connecting counts, retries too
])  # fmt: skip
def test_an_hf_model_that_trickles_is_abandoned(environment, tmp_path, server, repo, reason):
    result = pull(f"hf:{repo}", environment)
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"img2img: error: hf:{repo}: download of model.safetensors from {repo} ")
    assert "abandoned: " in result.stderr and reason in result.stderr and "IMG2IMG_DOWNLOAD_TIMEOUT" in result.stderr
    leftovers = files_under(tmp_path / "hf")
    assert not [name for name in leftovers if name.endswith(".incomplete") or "/blobs/" in name], leftovers
    assert files_under(tmp_path / "cache") == []
    if "body" in repo:
        assert server.gets[f"/{repo}/resolve/main/model.safetensors"] == 1  # no retry


def test_an_hf_model_from_a_prompt_server_downloads(environment, tmp_path, server, tiny_generator):
    # The policy's client is the one huggingface_hub downloads through: a normal transfer passes.
    server.body = tiny_generator.read_bytes()
    result = pull("hf:owner/ok", environment)
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip().splitlines()[0])
    assert path.read_bytes() == server.body and path.is_relative_to(tmp_path / "hf")
