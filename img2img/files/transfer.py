"""The download policy, and the HTTP client that enforces it for every transfer.

One policy for every download, the registry's and the Hugging Face Hub's, reply headers
included: with ``T`` = ``$IMG2IMG_DOWNLOAD_TIMEOUT`` seconds and ``R`` =
``$IMG2IMG_DOWNLOAD_MIN_RATE`` bytes/s, a transfer is abandoned when

- the status line and headers of a reply are not complete ``T`` seconds after the request was
  sent (a server that sends a header byte every few seconds never trips a per-read timeout);
  the requests of one download share these ``T`` seconds (``one_download()``: redirects, the
  library's metadata calls), so a chain of redirects each just in time does not restart it;
- nothing arrives for ``T`` seconds (connecting counts as waiting for the reply);
- the body arrives at less than ``R`` bytes/s over any ``T``-second window.

It is enforced where the bytes are read: ``http_client()`` is an ``httpx2.Client`` (the HTTP
library huggingface_hub uses) whose connection pool reads through a network backend that
applies the policy of the request in progress (httpcore's ``NetworkBackend`` hook). The
registry's downloads use it directly; the Hub's through ``huggingface_hub.set_client_factory``
(``use_for_hub()``). A breach raises ``TransferTooSlow``, which is neither an ``OSError`` nor
an httpx error, so no library retries it: it reaches the caller, which names what it was
downloading.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import time
import urllib.parse
from typing import Any, Iterator

from img2img.errors import UsageError

ENV_DOWNLOAD_TIMEOUT = "IMG2IMG_DOWNLOAD_TIMEOUT"
ENV_DOWNLOAD_MIN_RATE = "IMG2IMG_DOWNLOAD_MIN_RATE"
DOWNLOAD_TIMEOUT = 30.0
DOWNLOAD_MIN_RATE = 10_000.0


def download_limits() -> tuple[float, float]:
    """(``T`` seconds, ``R`` bytes/s) from the environment or the defaults (30 s, 10 kB/s).
    Raises UsageError for a value that is not a number, or not positive (``R`` may be 0: no
    rate check)."""
    limits = []
    for variable, default in ((ENV_DOWNLOAD_TIMEOUT, DOWNLOAD_TIMEOUT), (ENV_DOWNLOAD_MIN_RATE, DOWNLOAD_MIN_RATE)):
        raw = os.environ.get(variable, "").strip()
        try:
            value = float(raw) if raw else default
        except ValueError:
            value = float("nan")
        if not (value > 0 if variable == ENV_DOWNLOAD_TIMEOUT else value >= 0) or value == float("inf"):
            raise UsageError(f"${variable} must be a positive number, got {raw!r}")
        limits.append(value)
    return limits[0], limits[1]


class TransferTooSlow(Exception):
    """A transfer broke the download policy; ``str()`` says how, naming the variables."""


class TransferWatch:
    """The policy for one HTTP request: fed the bytes read from its connection (headers and
    body), it raises TransferTooSlow when the transfer breaks the policy (module docstring)."""

    def __init__(self, timeout: float, min_rate: float, waited: float = 0.0) -> None:
        # ``waited``: seconds earlier requests of the same download waited for their headers.
        self.timeout, self.min_rate = timeout, min_rate
        self.started = time.monotonic() - waited
        self.headers_complete = False
        self.received = 0
        self._window_start, self._window_received = self.started, 0

    def read_timeout(self) -> float:
        """Seconds the next read may wait; raises TransferTooSlow once the headers are late."""
        if self.headers_complete:
            return self.timeout
        left = self.started + self.timeout - time.monotonic()
        if left <= 0:
            raise self._late_headers()
        return left

    def timed_out(self) -> TransferTooSlow:
        """The error for a read that waited ``read_timeout()`` seconds in vain."""
        if not self.headers_complete:
            return self._late_headers()
        return TransferTooSlow(f"nothing received for {self.timeout:g} s (${ENV_DOWNLOAD_TIMEOUT})")

    def headers_received(self) -> None:
        self.headers_complete = True
        self._window_start, self._window_received = time.monotonic(), self.received

    def count(self, n: int) -> None:
        """``n`` more bytes arrived; raises TransferTooSlow when the last window was too slow."""
        self.received += n
        if not self.headers_complete:
            return
        elapsed = time.monotonic() - self._window_start
        if elapsed < self.timeout:
            return
        rate = (self.received - self._window_received) / elapsed
        if rate < self.min_rate:
            raise TransferTooSlow(
                f"{format_rate(rate)} over the last {elapsed:.0f} s, below the minimum of "
                f"{format_rate(self.min_rate)} (${ENV_DOWNLOAD_MIN_RATE}, ${ENV_DOWNLOAD_TIMEOUT})"
            )
        self._window_start, self._window_received = time.monotonic(), self.received

    def _late_headers(self) -> TransferTooSlow:
        return TransferTooSlow(f"the reply headers did not arrive within {self.timeout:g} s (${ENV_DOWNLOAD_TIMEOUT})")


def format_rate(bytes_per_second: float) -> str:
    if bytes_per_second >= 1e6:
        return f"{bytes_per_second / 1e6:.1f} MB/s"
    if bytes_per_second >= 1e3:
        return f"{bytes_per_second / 1e3:.1f} kB/s"
    return f"{bytes_per_second:.1f} bytes/s"


# The watch of the request this thread is sending or reading; the network streams consult it.
# (httpx's sync client reads a response in the thread that asked for it.)
_CURRENT: contextvars.ContextVar[TransferWatch | None] = contextvars.ContextVar("img2img_transfer", default=None)


class _HeaderWait:
    """Seconds the requests of one download have waited for their reply headers."""

    def __init__(self) -> None:
        self.seconds = 0.0


_DOWNLOAD: contextvars.ContextVar[_HeaderWait | None] = contextvars.ContextVar("img2img_download", default=None)


@contextlib.contextmanager
def one_download() -> Iterator[None]:
    """Every request sent inside shares one ``T``-second allowance for reply headers: a chain of
    redirects (the client's own or huggingface_hub's), a metadata call and the download itself.
    Nested uses join the outer download. Bodies are judged per request, by the rate rule."""
    if _DOWNLOAD.get() is not None:
        yield
        return
    token = _DOWNLOAD.set(_HeaderWait())
    try:
        yield
    finally:
        _DOWNLOAD.reset(token)


def http_client(**options: Any):  # -> httpx2.Client
    """An ``httpx2.Client`` whose every transport (proxies from the environment included)
    enforces the download policy, read from the environment at each request. ``options`` go
    to ``httpx2.Client``."""
    import httpcore2
    import httpx2

    class WatchedStream(httpcore2.NetworkStream):
        """A connection's socket stream: each read waits at most what the policy allows."""

        def __init__(self, stream: Any) -> None:
            self._stream = stream

        def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            watch = _CURRENT.get()
            if watch is None:
                return self._stream.read(max_bytes, timeout)
            limit = watch.read_timeout()
            try:
                data = self._stream.read(max_bytes, limit if timeout is None else min(timeout, limit))
            except httpcore2.ReadTimeout:
                if timeout is not None and timeout < limit:
                    raise  # the caller's own, shorter timeout: its error
                raise watch.timed_out() from None
            watch.count(len(data))
            return data

        def write(self, buffer: bytes, timeout: float | None = None) -> None:
            self._stream.write(buffer, timeout)

        def close(self) -> None:
            self._stream.close()

        def start_tls(self, *args: Any, **kwargs: Any) -> WatchedStream:
            return WatchedStream(self._stream.start_tls(*args, **kwargs))

        def get_extra_info(self, info: str) -> Any:
            return self._stream.get_extra_info(info)

    class WatchedBackend(httpcore2.NetworkBackend):
        def __init__(self, backend: Any) -> None:
            self._backend = backend

        def connect_tcp(self, host: str, port: int, timeout: float | None = None, **kwargs: Any) -> WatchedStream:
            # Connecting is part of waiting for the reply: a host that drops packets (a CDN
            # behind a firewall) must not take the caller's timeout per retry, or none at all.
            watch = _CURRENT.get()
            if watch is not None:
                limit = watch.read_timeout()
                timeout = limit if timeout is None else min(timeout, limit)
            return WatchedStream(self._backend.connect_tcp(host, port, timeout, **kwargs))

        def connect_unix_socket(self, *args: Any, **kwargs: Any) -> WatchedStream:
            return WatchedStream(self._backend.connect_unix_socket(*args, **kwargs))

        def sleep(self, seconds: float) -> None:
            self._backend.sleep(seconds)

    class WatchedBody(httpx2.SyncByteStream):
        """A response body whose reads run under its request's watch."""

        def __init__(self, stream: Any, watch: TransferWatch) -> None:
            self._stream, self._watch = stream, watch

        def __iter__(self) -> Iterator[bytes]:
            chunks = iter(self._stream)
            while True:
                token = _CURRENT.set(self._watch)
                try:
                    chunk = next(chunks)
                except StopIteration:
                    return
                finally:
                    _CURRENT.reset(token)
                yield chunk

        def close(self) -> None:
            self._stream.close()

    class WatchedTransport(httpx2.HTTPTransport):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            # HTTPTransport takes no network backend; its connection pool (httpcore's
            # ConnectionPool, or a proxy, its subclass) keeps the one it was given here.
            self._pool._network_backend = WatchedBackend(self._pool._network_backend)

        def handle_request(self, request: Any) -> Any:
            wait = _DOWNLOAD.get()
            watch = TransferWatch(*download_limits(), waited=wait.seconds if wait else 0.0)
            started = time.monotonic()
            token = _CURRENT.set(watch)
            try:
                response = super().handle_request(request)
            finally:
                _CURRENT.reset(token)
                if wait is not None:
                    wait.seconds += time.monotonic() - started
            watch.headers_received()
            response.stream = WatchedBody(response.stream, watch)
            return response

    class WatchedClient(httpx2.Client):
        def send(self, request: Any, **kwargs: Any) -> Any:
            # The redirects httpx follows for this request are part of one download.
            with one_download():
                return super().send(request, **kwargs)

        # httpx builds the direct transport and one per proxy through these two methods.
        def _init_transport(self, transport: Any = None, **kwargs: Any) -> Any:
            return transport if transport is not None else WatchedTransport(**kwargs)

        def _init_proxy_transport(self, proxy: Any, **kwargs: Any) -> Any:
            return WatchedTransport(proxy=proxy, **kwargs)

    return WatchedClient(**options)


def _hub_client():  # -> httpx2.Client
    """huggingface_hub's default client (its request hook: offline mode, request ids), with the
    download policy."""
    from huggingface_hub.utils import _http as hub_http

    hook = getattr(hub_http, "hf_request_event_hook", None)
    return http_client(event_hooks={"request": [hook] if hook else []}, follow_redirects=True, timeout=None)


_HUB_CLIENT_SET = False


def use_for_hub() -> None:
    """Make huggingface_hub send its requests through ``http_client()`` (once per process)."""
    global _HUB_CLIENT_SET
    if not _HUB_CLIENT_SET:
        from huggingface_hub import set_client_factory

        set_client_factory(_hub_client)
        _HUB_CLIENT_SET = True


_URL_SCHEMES = ("http", "https", "file")


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be downloaded from (None when it can): an absolute http(s) URL with a
    host, or a file: URL; no spaces or control characters."""
    if not url.strip() or any(ch.isspace() or ord(ch) < 32 for ch in url):
        return "it is empty or has spaces or control characters"
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError on a malformed port)
    except ValueError as exc:
        return str(exc)
    if parts.scheme.lower() not in _URL_SCHEMES:
        return f"scheme {parts.scheme + ':' if parts.scheme else 'missing'}; expected http:, https: or file:"
    if parts.scheme.lower() != "file" and not parts.hostname:
        return "no host name"
    return None


__all__ = [
    "url_problem",
    "DOWNLOAD_MIN_RATE",
    "DOWNLOAD_TIMEOUT",
    "ENV_DOWNLOAD_MIN_RATE",
    "ENV_DOWNLOAD_TIMEOUT",
    "TransferTooSlow",
    "TransferWatch",
    "download_limits",
    "format_rate",
    "http_client",
    "one_download",
    "use_for_hub",
]
