"""Write files so that a reader never sees a half-written one: temporary name, fsync, rename."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import Iterator

from img2img.errors import Img2ImgError, OutputError

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is synced and renamed onto ``path``,
    on failure it is removed and ``path`` is left as it was."""
    target = Path(path)
    if target.is_dir():
        # Checked first: the temporary file would otherwise be made beside the folder.
        raise _output_error(target, IsADirectoryError(errno.EISDIR, "is a folder, not a file"))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise _output_error(target, exc) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes 0600 (and some writers recreate the file): give it the usual mode.
        os.chmod(tmp, 0o666 & ~_UMASK)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, Img2ImgError):
            raise _output_error(target, exc) from exc
        raise
    _fsync_dir(target.parent)


def _output_error(target: Path, exc: OSError) -> OutputError:
    """One line naming the file the user asked for (not our temporary name) and why."""
    reason = exc.strerror or str(exc)
    error = OutputError(f"{target}: cannot write ({reason})")
    error.errno, error.strerror, error.filename = exc.errno, reason, str(target)
    return error


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not every platform lets a directory be opened.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
