"""Write files so that a reader never sees a half-written one and nothing is left behind.

Every file img2img writes (translated images, converted and cached weights, ``data combine``
pairs, checkpoints, exported weights, sample grids, run config) goes through :func:`atomic_path`:
the data goes to a temporary file beside the target, is synced, then moved onto the target's
name in one step. Either the whole file is there under its name, or nothing is.

- **No silent replacement.** With ``replace=False`` the move refuses to replace a file that
  exists *at that moment*, even one another process has just written: ``renameat2`` with
  ``RENAME_NOREPLACE`` (Linux ≥ 3.15) or ``renamex_np`` with ``RENAME_EXCL`` (macOS), else a hard
  link to the final name (which fails if it exists) and unlinking the temporary name, else (file
  systems without hard links) an exclusive create of the final name that the rename then fills.
  A file that exists raises ``FileExistsError``; there is no check-then-replace window.
- **Temporaries never outlive the process.** A temporary's name is recorded before the file is
  created, so whatever interrupts (an exception, or a signal turned into one by
  ``img2img.runtime.signals``) at whatever point, it is removed: by the ``with`` block's unwinding,
  or by :func:`remove_registered_temporaries` (called by the CLI on a signal and at exit).
- **Leftovers of killed processes are cleaned.** ``kill -9`` cannot be caught, so temporary names
  carry this host and the process id, ``.img2img-tmp.HOST.PID.RANDOM``; the first time a process
  writes into a folder, it removes the temporaries of that pattern whose process (on this
  host) is gone.
- **Names fit.** A temporary name is 38 bytes at most (PIDs have at most 7 digits), whatever the target's name, so any name
  the file system accepts for the target also works for its temporary.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import hashlib
import os
import re
import secrets
import socket
import sys
import threading
from pathlib import Path
from typing import Iterator

TEMP_PREFIX = ".img2img-tmp."
# The host part keeps a process from judging another machine's processes (a shared network
# folder) by its own process table.
_HOST = hashlib.sha256(socket.gethostname().encode(errors="surrogateescape")).hexdigest()[:8]
_TEMP_NAME = re.compile(r"^\.img2img-tmp\.(?P<host>[0-9a-f]{8})\.(?P<pid>[0-9]+)\.[0-9a-f]{8}$")

_live: set[str] = set()  # temporaries this process created and has not yet renamed or removed
_live_lock = threading.Lock()
_cleaned_folders: set[str] = set()
_written: list[Path] = []  # files this process has completed, in order


def temporary_name() -> str:
    """A fresh temporary file name (no folder) of this process: ``.img2img-tmp.HOST.PID.RANDOM``."""
    return f"{TEMP_PREFIX}{_HOST}.{os.getpid()}.{secrets.token_hex(4)}"


def create_temporary(folder: str | os.PathLike[str]) -> Path:
    """Create an empty temporary file in ``folder`` (mode 0666 minus the umask) and return its
    path. It is registered before it exists, so :func:`remove_registered_temporaries` removes it
    even if an exception interrupts this very call; the caller removes it with
    :func:`discard_temporary` (or renames it and then calls that). Stale temporaries of killed
    processes in ``folder`` are removed the first time a process uses the folder.

    Raises OSError when the folder cannot be written."""
    folder = os.fspath(folder)
    remove_stale_temporaries(folder)
    while True:
        path = os.path.join(folder, temporary_name())
        with _live_lock:
            _live.add(path)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:  # 32 random bits collided with one of our own names
            discard_temporary(path, unlink=False)
            continue
        except BaseException:
            # The file may exist even so (a signal right after open returned): remove it.
            discard_temporary(path)
            raise
        os.close(fd)
        return Path(path)


def discard_temporary(path: str | os.PathLike[str], *, unlink: bool = True) -> None:
    """Remove a temporary (if it is still there) and forget it."""
    path = os.fspath(path)
    if unlink:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    with _live_lock:
        _live.discard(path)


def remove_registered_temporaries() -> None:
    """Remove every temporary this process has created and not finished with. Safe to call from
    a signal handler's unwinding and at exit; registered with ``atexit``."""
    with _live_lock:
        paths = list(_live)
        _live.clear()
    for path in paths:
        with contextlib.suppress(OSError):
            os.unlink(path)


atexit.register(remove_registered_temporaries)


def remove_stale_temporaries(folder: str | os.PathLike[str], *, force: bool = False) -> list[Path]:
    """Remove the temporaries in ``folder`` left by processes of this host that have died
    (``kill -9``, power loss of a container). Done once per folder per process unless ``force``.
    Temporaries of live processes, of other hosts and files of any other name are left alone.
    Returns the files removed."""
    key = os.path.abspath(os.fspath(folder))
    if (key in _cleaned_folders and not force) or os.name != "posix":
        return []
    _cleaned_folders.add(key)
    removed = []
    try:
        entries = list(os.scandir(key))
    except OSError:  # missing or unreadable folder: whoever writes there will say so
        return []
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if not match or match["host"] != _HOST or _process_alive(int(match["pid"])):
            continue
        with contextlib.suppress(OSError):
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # ours (a name from an earlier process with our id is left: it is harmless)
    try:
        os.kill(pid, 0)  # POSIX only: signal 0 checks that the process exists
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # exists, owned by another user (or an impossible id: leave the file)
    return True


from img2img.errors import Img2ImgError, OutputError  # noqa: E402


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for the caller to write; on success it is synced
    and moved onto ``path``, on failure (any exception, a signal included) it is removed and
    ``path`` is left as it was. The parent folder is created if needed.

    ``replace=False`` refuses to replace an existing ``path`` at the moment of the move and
    raises ``FileExistsError`` (the temporary is removed); ``replace=True`` replaces it
    atomically (checkpoints, the model cache). Other ``OSError``s (a name the file system
    refuses, no space, no permission), and a writer's own exception that carries one
    (:func:`os_error_of`), become an ``OutputError`` naming ``path``."""
    target = Path(path)
    if target.is_dir():
        # Checked first: the temporary file would otherwise be made beside the folder.
        raise _output_error(target, IsADirectoryError(errno.EISDIR, "is a folder, not a file"))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = create_temporary(target.parent)
    except OSError as exc:
        raise _output_error(target, exc) from None
    try:
        usual_mode = os.stat(tmp).st_mode & 0o777  # 0666 minus the umask, as created
        yield tmp
        # Some writers replace the file with one of their own making (safetensors: 0600).
        os.chmod(tmp, usual_mode)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        if replace:
            os.replace(tmp, target)
        else:
            rename_no_replace(tmp, target)
    except BaseException as exc:
        discard_temporary(tmp)
        # Name the file asked for, never our temporary; FileExistsError (no-replace) is the
        # callers' to handle.
        error = os_error_of(exc)
        if error is not None and not isinstance(exc, (Img2ImgError, FileExistsError)):
            raise _output_error(target, error) from exc
        raise
    discard_temporary(tmp, unlink=False)
    _written.append(target)
    _fsync_dir(target.parent)


# Rust's std::io::Error as text, e.g. safetensors' SafetensorError "Error while serializing: I/O
# error: No space left on device (os error 28)".
_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def os_error_of(exc: BaseException) -> OSError | None:
    """The operating-system error behind a failed write: ``exc`` itself when it is an OSError,
    an equivalent ``OSError(errno, strerror)`` when a library reports it in an exception of its
    own with the Rust I/O error's text (safetensors' ``save_file`` raises ``SafetensorError``, not
    OSError, on a full disk), else None. So that every writer's full disk (ENOSPC), read-only
    folder (EROFS), missing permission (EACCES) or size limit (EFBIG) becomes the same one-line
    error naming the file, whichever library did the writing."""
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, Exception) and (found := _RUST_OS_ERROR.search(str(exc))):
        code = int(found[1])
        return OSError(code, os.strerror(code))
    return None


def _output_error(target: Path, exc: OSError) -> OutputError:
    """One line naming the file the user asked for (not our temporary name) and why."""
    reason = exc.strerror or str(exc)
    error = OutputError(f"{target}: cannot write ({reason})")
    error.errno, error.strerror, error.filename = exc.errno, reason, str(target)
    return error


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, replace: bool = True) -> None:
    """Write ``data`` to ``path`` through :func:`atomic_path`."""
    with atomic_path(path, replace=replace) as tmp:
        tmp.write_bytes(data)


def written_files() -> list[Path]:
    """The files this process has completed through :func:`atomic_path`, oldest first."""
    return list(_written)


# --- moving without replacing ---------------------------------------------------------------------

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1  # linux/fs.h
_RENAME_EXCL = 0x4  # macOS sys/stdio.h


def _load_native_rename():
    """renameat2 (glibc ≥ 2.28) or renamex_np (macOS) as ``f(src, dst) -> 0 or -1``, or None."""
    if os.name != "posix":
        return None
    import ctypes  # here, not at the top: `img2img --help` need not load it

    try:
        libc = ctypes.CDLL(None, use_errno=True)  # the C library the interpreter runs on
    except OSError:
        return None
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is not None:
        renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        renameat2.restype = ctypes.c_int
        return lambda src, dst: renameat2(_AT_FDCWD, src, _AT_FDCWD, dst, _RENAME_NOREPLACE)
    renamex_np = getattr(libc, "renamex_np", None) if sys.platform == "darwin" else None
    if renamex_np is not None:
        renamex_np.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint]
        renamex_np.restype = ctypes.c_int
        return lambda src, dst: renamex_np(src, dst, _RENAME_EXCL)
    return None


_UNLOADED = object()
_native_rename = _UNLOADED  # loaded at the first move without replacing
# errnos that mean "this file system (or kernel) cannot do that", so the next method is tried
_UNSUPPORTED = {
    errno.EINVAL,
    errno.ENOSYS,
    errno.EPERM,
    getattr(errno, "ENOTSUP", -1),
    getattr(errno, "EOPNOTSUPP", -1),
}


def rename_no_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Move ``src`` to ``dst`` in one step unless ``dst`` exists: then raise FileExistsError and
    leave both as they were. Both must be on one file system (beside each other)."""
    global _native_rename
    if _native_rename is _UNLOADED:
        _native_rename = _load_native_rename()
    src_b, dst_b = os.fsencode(src), os.fsencode(dst)
    if _native_rename is not None:
        if _native_rename(src_b, dst_b) == 0:
            return
        import ctypes

        err = ctypes.get_errno()
        if err not in _UNSUPPORTED:  # EEXIST becomes FileExistsError
            raise OSError(err, os.strerror(err), os.fsdecode(dst_b))
    try:
        os.link(src_b, dst_b)  # fails with EEXIST if dst exists, whoever made it
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in _UNSUPPORTED | {errno.EMLINK}:
            raise
        # No hard links here (FAT, some network file systems): claim the name exclusively, then
        # fill it by renaming over our own claim. A reader may see the empty claim for a moment.
        fd = os.open(dst_b, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        os.close(fd)
        os.replace(src_b, dst_b)
        return
    os.unlink(src_b)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not every platform lets a directory be opened.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


__all__ = [
    "TEMP_PREFIX",
    "atomic_path",
    "atomic_write_bytes",
    "create_temporary",
    "discard_temporary",
    "os_error_of",
    "remove_registered_temporaries",
    "remove_stale_temporaries",
    "rename_no_replace",
    "temporary_name",
    "written_files",
]
