"""Downloads: HTTP transfers with limits, Hugging Face Hub fetches, and their messages.

``download(url, dest, ...)`` fetches a registry URL into a temporary file of the cache;
``hf_file(repo, filename, ...)`` fetches one file through ``huggingface_hub`` into the HF cache.
Both transfers follow the download policy of ``img2img.files.transfer`` (deadline for the reply
headers, stall timeout, minimum rate), both give one-line ``DownloadError`` messages that say
what to do (offline, unreachable, too slow, cut short, wrong checksum), and neither leaves a
partial file behind.

Nothing here imports torch or huggingface_hub at module level: ``models list`` stays fast.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterator

from img2img import __version__
from img2img.errors import DownloadError, ModelNotFoundError, UsageError, first_line
from img2img.files.atomic import create_temporary, discard_temporary
from img2img.files.transfer import (  # noqa: F401 (the policy's names are public here too)
    DOWNLOAD_MIN_RATE,
    DOWNLOAD_TIMEOUT,
    ENV_DOWNLOAD_MIN_RATE,
    ENV_DOWNLOAD_TIMEOUT,
    TransferTooSlow,
    download_limits,
    http_client,
    one_download,
    use_for_hub,
)

ENV_OFFLINE = "IMG2IMG_OFFLINE"

HF_CONNECT_TIMEOUT = 10.0  # seconds for the Hub to answer before "no connection"
MAX_DOWNLOAD_BYTES = 2 << 30  # the reference generators are ~45-220 MB; stop a runaway server
_CHUNK = 1 << 20


def is_offline() -> bool:
    """``IMG2IMG_OFFLINE`` or ``HF_HUB_OFFLINE`` set: use what is on disk, never the network."""
    return any(_env_true(name) for name in (ENV_OFFLINE, "HF_HUB_OFFLINE"))


def _env_true(name: str) -> bool:
    # The same spelling huggingface_hub accepts for HF_HUB_OFFLINE.
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


@contextlib.contextmanager
def temporary_file(folder: Path, name: str) -> Iterator[Path]:
    # img2img.files.atomic's temporaries: removed whatever stops the process, and by the next run
    # after a kill -9.
    tmp = create_temporary(folder)
    try:
        yield tmp
    finally:
        discard_temporary(tmp)


def download(
    url: str,
    dest: Path,
    *,
    label: str,
    sha256: str | None,
    progress: bool | None,
    cache_path: Path,
    resume: bool = False,
    size: int | None = None,
    max_bytes: int = MAX_DOWNLOAD_BYTES,
    offline_hint: str | None = None,
    sha256_origin: str = "the registry expects",
    filename: str | None = None,
) -> str:
    """Fetch ``url`` into ``dest``, refusing short reads, oversized bodies, checksum mismatches,
    and servers that stall or trickle (see ``download_limits``). Returns the file's SHA-256 (hex).

    ``resume``: when ``dest`` already holds the first bytes of the file (an earlier, interrupted
    download), ask only for the rest (HTTP ``Range: bytes=N-``); a server that answers with the
    whole file (200, no Range support) or a range that does not start at N is read from the
    start again, and a 416 (the part is not a prefix of the file) starts over once. Without
    ``resume`` ``dest`` is overwritten. ``size``: the expected length in bytes (a pinned size), a
    mismatch is refused like a wrong hash. ``max_bytes``: the largest body accepted.
    ``cache_path``: where the file belongs in the cache, named by the offline message, which
    ``offline_hint`` (what to do instead) replaces; ``sha256_origin`` says where ``sha256`` came
    from in the mismatch message; ``filename`` names the file in messages (default ``dest``'s name). Raises DownloadError; the message names the
    file and, for a checksum mismatch, both hashes."""
    if is_offline():
        raise _cannot_download(label, f"offline: {offline_variable()} is set", cache_path, offline_hint)
    timeout, _ = download_limits()
    start = dest.stat().st_size if resume and dest.is_file() else 0
    shown = filename or dest.name
    validator_file = resume_validator(dest)
    if_range = None
    if start:
        try:
            if_range = validator_file.read_text(encoding="utf-8").strip() or None
        except OSError:
            if_range = None
    for attempt in (0, 1):
        digest = hashlib.sha256()
        with contextlib.ExitStack() as stack:
            opened = _open(
                url, stack, timeout=timeout, label=label, cache_path=cache_path, start=start,
                offline_hint=offline_hint, if_range=if_range,
            )  # fmt: skip
            if opened is None:  # 416: what we hold is no prefix of the file
                if attempt:
                    raise DownloadError(f"{label}: download of {url} failed: the server refused every byte range")
                start = 0
                continue
            chunks, total, offset, validator = opened
            if resume and not offset:
                # What identifies this version of the file, for the If-Range of a later resume.
                if validator:
                    validator_file.write_text(validator, encoding="utf-8")
                else:
                    validator_file.unlink(missing_ok=True)
            received = offset
            if offset:
                with open(dest, "rb") as held:  # the hash covers the bytes kept from before
                    while chunk := held.read(_CHUNK):
                        digest.update(chunk)
            try:
                with (
                    open(dest, "r+b" if offset else "wb") as out,
                    _progress_bar(label, total, progress, offset) as advance,
                ):
                    out.seek(offset)
                    out.truncate()
                    for chunk in chunks:
                        received += len(chunk)
                        if size is not None and received > size:
                            raise DownloadError(
                                f"{label}: download refused: {shown} from {url} is larger than "
                                f"the {size} bytes the registry expects"
                            )
                        if received > max_bytes:
                            raise DownloadError(
                                f"{label}: download refused: {url} sent more than {max_bytes >> 20} MiB"
                            )
                        out.write(chunk)
                        digest.update(chunk)
                        advance(len(chunk))
            except TransferTooSlow as exc:
                raise _abandoned(label, url, exc) from None
            except _transfer_errors() as exc:
                reason = _network_reason(exc)
                again = "; run the same command again to resume" if resume else ""
                raise DownloadError(f"{label}: download of {url} was interrupted ({reason}){again}") from None
        break
    if total is not None and received != total:
        again = "; run the same command again to resume" if resume else ""
        raise DownloadError(f"{label}: download of {url} was cut short ({received} of {total} bytes){again}")
    if size is not None and received != size:
        raise DownloadError(
            f"{label}: download refused: {shown} from {url} is {received} bytes, the registry expects {size}"
        )
    if resume:
        validator_file.unlink(missing_ok=True)  # complete: nothing left to resume
    found = digest.hexdigest()
    if sha256 and found != sha256:
        raise DownloadError(
            f"{label}: download refused: sha256 of {shown} from {url} is {found}, {sha256_origin} {sha256}"
        )
    return found


def _open(
    url: str,
    stack: contextlib.ExitStack,
    *,
    timeout: float,
    label: str,
    cache_path: Path,
    start: int = 0,
    offline_hint: str | None = None,
    if_range: str | None = None,
) -> tuple[Iterator[bytes], int | None, int, str | None] | None:
    """(the body's chunks, the whole file's length if declared, the offset the body starts at,
    the file's validator: its strong ETag, else its Last-Modified) of ``url``, asking for the
    bytes from ``start`` on when ``start`` > 0 — only if the file is still the version
    ``if_range`` names (HTTP If-Range: a changed file comes whole); None when the server
    answers 416 (range not satisfiable). The chunks raise TransferTooSlow or one of
    _transfer_errors(). http(s) goes through ``transfer.http_client()`` (the policy), file: URLs
    (a local mirror) through urllib, always from the start."""
    import httpx2

    if urllib.parse.urlsplit(url).scheme.lower() == "file":
        try:
            response = stack.enter_context(urllib.request.urlopen(url, timeout=timeout))
        except (urllib.error.URLError, OSError) as exc:
            raise _cannot_download(label, f"{_network_reason(exc)}: {url}", cache_path, offline_hint) from None
        length = response.headers.get("Content-Length")
        return iter(lambda: response.read(_CHUNK), b""), int(length) if length and length.isdigit() else None, 0, None
    client = stack.enter_context(http_client(follow_redirects=True, timeout=timeout))
    # identity: the declared length is then the file's, and the checksum is of the file.
    headers = {"User-Agent": f"img2img/{__version__}", "Accept-Encoding": "identity"}
    if start:
        headers["Range"] = f"bytes={start}-"
        if if_range:
            headers["If-Range"] = if_range
    try:
        response = stack.enter_context(client.stream("GET", url, headers=headers))
    except TransferTooSlow as exc:
        raise _abandoned(label, url, exc) from None
    except (httpx2.HTTPError, OSError) as exc:  # refused, DNS, timeout, TLS
        why = f"{_network_reason(exc)}: {url}{_through_proxy(url)}"
        raise _cannot_download(label, why, cache_path, offline_hint) from None
    # iter_raw() without a chunk size yields what arrives: bytes received before a connection
    # drops are written (and kept for a resume), not lost in a chunker's buffer.
    if start and response.status_code == 416:
        return None
    if response.status_code >= 400:
        raise DownloadError(
            f"{label}: download failed: HTTP {response.status_code} {response.reason_phrase} from {url}"
        )
    length = response.headers.get("Content-Length")
    length_value = int(length) if length and length.isdigit() else None
    etag = response.headers.get("ETag", "")
    validator = etag if etag and not etag.startswith("W/") else response.headers.get("Last-Modified")
    if start and response.status_code == 206:
        match = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", response.headers.get("Content-Range", ""))
        if match and int(match.group(1)) == start:
            whole = int(match.group(3)) if match.group(3) != "*" else None
            return response.iter_raw(), whole, start, validator
        # A range we did not ask for: read the file from the start instead.
        stack.close()
        return _open(url, stack, timeout=timeout, label=label, cache_path=cache_path, offline_hint=offline_hint)
    return response.iter_raw(), length_value, 0, validator


def resume_validator(dest: Path) -> Path:
    """The file beside a partial download ``dest`` that keeps its version's validator (ETag or
    Last-Modified) for the If-Range of a resume; removed when the download completes."""
    return dest.with_name(dest.name + ".validator")


def _http_errors() -> tuple[type[BaseException], ...]:
    """The HTTP clients' errors: the connection dropped, the server broke HTTP."""
    import httpx2

    return (http.client.HTTPException, httpx2.HTTPError)


def _transfer_errors() -> tuple[type[BaseException], ...]:
    """Errors of a transfer that had started."""
    return (OSError, *_http_errors())


def _abandoned(label: str, what: str, exc: TransferTooSlow, *, mirror: str | None = None) -> DownloadError:
    mirror = f", use a mirror (${mirror})" if mirror else ""
    return DownloadError(
        f"{label}: download of {what} abandoned: {exc}",
        hint=f"the server is too slow: try again later{mirror}, or change the limits",
    )


def _network_reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    if isinstance(reason, BaseException):
        text = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
    else:
        text = str(reason)
    if isinstance(exc, http.client.IncompleteRead):
        text = f"connection closed after {len(exc.partial)} bytes"
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def _through_proxy(url: str) -> str:
    """`` through the proxy P (from the environment)`` when the HTTP client sends ``url`` through
    a proxy named by $HTTP_PROXY/$HTTPS_PROXY/$ALL_PROXY (not bypassed by $NO_PROXY), else "":
    a connection that the proxy refuses is not the server's doing."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme.lower()) or proxies.get("all")
    if not proxy or (parts.hostname and urllib.request.proxy_bypass_environment(parts.hostname, proxies)):
        return ""
    return f" through the proxy {proxy} (from the environment)"


def offline_variable() -> str:
    """The variable that makes this process offline, for messages."""
    return ENV_OFFLINE if _env_true(ENV_OFFLINE) else "HF_HUB_OFFLINE"


def _cannot_download(label: str, why: str, cache_path: Path, hint: str | None = None) -> DownloadError:
    hint = hint or (
        f"on a connected machine run `img2img models pull {label}` and copy the file it prints to "
        f"{cache_path}, or pass a weights file path to --model"
    )
    return DownloadError(f"{label}: not in the cache and cannot download ({why}); {hint}")


@contextlib.contextmanager
def _progress_bar(label: str, total: int | None, enabled: bool | None, done: int = 0) -> Iterator[Any]:
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(f"downloading {label}", total=total, completed=done)
        yield lambda n: bar.advance(task, n)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# --- Hugging Face ---------------------------------------------------------------------------


def hf_file(
    repo: str,
    filename: str,
    revision: str | None,
    *,
    label: str,
    download: bool,
    force: bool,
    progress: bool | None,
    sha256: str | None = None,
) -> Path | None:
    """``filename`` from the HF repo, from the HF cache when there; None when it is not cached
    and ``download`` is false. Transfers obey the download policy (``img2img.files.transfer``)."""
    from huggingface_hub import constants as hf_constants
    from huggingface_hub import errors as hf
    from huggingface_hub import hf_hub_download

    offline = is_offline() or bool(hf_constants.HF_HUB_OFFLINE)
    if force and offline:
        raise DownloadError(f"{label}: cannot download again while offline ({offline_variable()} is set)")
    where = f"{filename} from {repo}" + (f"@{revision}" if revision else "")
    use_for_hub()
    try:
        with _hf_progress(progress), _hf_quiet(), _hf_over_http(), one_download():
            if download and not offline:
                _check_hub_reachable(repo, filename, revision, force=force)
            path = hf_hub_download(
                repo,
                filename,
                revision=revision,
                local_files_only=offline or not download,
                force_download=force,
                library_name="img2img",
                library_version=__version__,
            )
    except TransferTooSlow as exc:
        raise _abandoned(label, where, exc, mirror="HF_ENDPOINT") from None
    except _NoConnection as exc:
        raise DownloadError(
            f"{label}: cannot reach the Hugging Face Hub ({exc}) and {where} is not in its cache "
            f"({hf_constants.HF_HUB_CACHE}); on a connected machine run `img2img models pull "
            f"{label}` and copy the Hugging Face cache (HF_HOME), or pass a weights file path to "
            "--model"
        ) from None
    except hf.LocalEntryNotFoundError:  # before EntryNotFoundError, its base class
        if not download:
            return None
        why = f"offline: {offline_variable()} is set" if offline else "no connection to the Hub"
        raise DownloadError(
            f"{label}: {where} is not in the Hugging Face cache "
            f"({hf_constants.HF_HUB_CACHE}) and cannot download ({why}); on a "
            f"connected machine run `img2img models pull {label}` and copy the Hugging Face cache "
            "(HF_HOME), or pass a weights file path to --model"
        ) from None
    except hf.GatedRepoError:  # before RepositoryNotFoundError, its base class
        raise ModelNotFoundError(
            f"{label}: {repo} is gated: accept its terms on huggingface.co, then `hf auth login`"
        ) from None
    except hf.RepositoryNotFoundError:
        raise ModelNotFoundError(f"{label}: no Hugging Face repo {repo} (or it is private: `hf auth login`)") from None
    except hf.RevisionNotFoundError:
        raise ModelNotFoundError(f"{label}: {repo} has no revision {revision}") from None
    except hf.EntryNotFoundError:
        raise ModelNotFoundError(f"{label}: {repo} has no file {filename}") from None
    except hf.HFValidationError as exc:
        raise UsageError(f"{label}: not a valid Hugging Face repo ({first_line(exc)})") from None
    except hf.HfHubHTTPError as exc:
        raise DownloadError(f"{label}: download of {where} failed ({first_line(exc)})") from None
    except _http_errors() as exc:
        raise DownloadError(f"{label}: download of {where} was interrupted ({_network_reason(exc)})") from None
    except (OSError, ValueError) as exc:
        raise DownloadError(f"{label}: download of {where} failed ({first_line(exc)})") from None
    if sha256 and file_sha256(Path(path)) != sha256:
        raise DownloadError(f"{label}: refused {where}: its sha256 does not match the registry's")
    return Path(path)


class _NoConnection(Exception):
    """The Hub did not answer (refused, no DNS, timed out); the message says why."""


def _check_hub_reachable(repo: str, filename: str, revision: str | None, *, force: bool) -> None:
    """One request, without retries, for a file that is not in the HF cache yet: hf_hub_download
    would retry a dead connection with backoff for half a minute (and log every attempt) before
    saying it is offline. A cached file needs no check: the library falls back to the cache
    without retrying. Raises _NoConnection; HTTP answers (no such repo...) raise the library's
    own errors."""
    from huggingface_hub import constants as hf_constants
    from huggingface_hub import errors as hf
    from huggingface_hub import get_hf_file_metadata, hf_hub_url, try_to_load_from_cache

    if not force and isinstance(try_to_load_from_cache(repo, filename, revision=revision), str):
        return
    url = hf_hub_url(repo, filename, revision=revision)
    try:
        get_hf_file_metadata(url, timeout=HF_CONNECT_TIMEOUT)
    except (hf.HfHubHTTPError, hf.HFValidationError, TransferTooSlow):
        raise
    except Exception as exc:  # the HTTP client's connection errors (its own exception types)
        endpoint = urllib.parse.urlsplit(hf_constants.ENDPOINT).netloc or hf_constants.ENDPOINT
        raise _NoConnection(f"{endpoint}{_through_proxy(url)}: {_network_reason(exc)}") from None


@contextlib.contextmanager
def _hf_over_http() -> Iterator[None]:
    """Xet storage off: hf_xet (Rust) fetches a Xet-stored file with its own HTTP stack, which
    the download policy cannot see; without it the Hub serves the same file over plain HTTP,
    through our client."""
    from huggingface_hub import constants as hf_constants

    disabled = hf_constants.HF_HUB_DISABLE_XET
    hf_constants.HF_HUB_DISABLE_XET = True
    try:
        yield
    finally:
        hf_constants.HF_HUB_DISABLE_XET = disabled


@contextlib.contextmanager
def _hf_quiet() -> Iterator[None]:
    """huggingface_hub logs a warning per retry; our one-line error says what happened."""
    import logging

    logger = logging.getLogger("huggingface_hub")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _hf_progress(enabled: bool | None) -> Iterator[None]:
    """huggingface_hub draws its own bars; keep them off when ours would be off."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if enabled:
        yield
        return
    import warnings

    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    with warnings.catch_warnings():  # it warns when HF_HUB_DISABLE_PROGRESS_BARS overrides it
        warnings.simplefilter("ignore")
        was_disabled = are_progress_bars_disabled()
        disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                enable_progress_bars()


__all__ = [
    "DOWNLOAD_MIN_RATE",
    "DOWNLOAD_TIMEOUT",
    "download",
    "download_limits",
    "file_sha256",
    "hf_file",
    "is_offline",
    "offline_variable",
    "resume_validator",
    "temporary_file",
]
