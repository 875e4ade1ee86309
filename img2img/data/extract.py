"""Unpack a downloaded dataset archive (tar, tar.gz, zip) without trusting it.

Every member is checked before anything is written, and the archive is refused as a whole
(DatasetError naming the archive and the member) when one

- would land outside the target: an absolute path, a drive letter, a ``..`` component;
- is a symbolic or hard link whose target is absolute or leaves the target folder;
- is a device, a FIFO or anything but a file, a folder or such a link (a zip member marked as a
  symbolic link is refused: zip links are not needed by any image dataset);
- makes the declared total larger than the limit: ``$IMG2IMG_DATA_MAX_BYTES`` (default 64 GiB) or
  ``MAX_RATIO`` times the archive's own size, whichever is smaller (the zip-bomb guard: the
  reference's archives hold JPEG/PNG images, which hardly compress).

The bytes actually written are counted as well, against each member's declared size and the
same limit, so an archive whose headers lie is stopped while it is being unpacked. Tar files
are then extracted with the standard library's ``filter="data"`` (Python 3.11.4+, PEP 706), a
second guard that also drops permission bits such as set-uid; zip members are copied by
``_copy_limited``. The caller extracts into a temporary folder and moves the result into place.
"""

from __future__ import annotations

import os
import posixpath
import stat
import tarfile
import zipfile
from pathlib import Path

from img2img.errors import DatasetError, UsageError

ENV_MAX_BYTES = "IMG2IMG_DATA_MAX_BYTES"
MAX_EXTRACTED_BYTES = 64 << 30
MAX_RATIO = 50
_CHUNK = 1 << 20


def extraction_limit(compressed_size: int | None) -> int:
    """The most bytes an archive of ``compressed_size`` bytes may unpack to (see the module
    docstring). Raises UsageError for a ``$IMG2IMG_DATA_MAX_BYTES`` that is not a positive
    integer."""
    raw = os.environ.get(ENV_MAX_BYTES, "").strip()
    limit = MAX_EXTRACTED_BYTES
    if raw:
        if not raw.isdigit() or int(raw) <= 0:
            raise UsageError(f"${ENV_MAX_BYTES} must be a positive number of bytes, got {raw!r}")
        limit = int(raw)
    if compressed_size:
        limit = min(limit, compressed_size * MAX_RATIO)
    return limit


def extract_archive(archive: Path, target: Path, *, compressed_size: int | None = None) -> int:
    """Unpack ``archive`` (tar in any compression tarfile reads, or zip) into the existing folder
    ``target``; returns the bytes written. Raises DatasetError for an archive that cannot be read
    or breaks a rule of the module docstring; ``target`` may then hold part of the members (the
    caller removes it)."""
    limit = extraction_limit(compressed_size)
    try:
        if zipfile.is_zipfile(archive):
            return _extract_zip(archive, target, limit)
        if tarfile.is_tarfile(archive):
            return _extract_tar(archive, target, limit)
    except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        raise DatasetError(f"{archive}: cannot unpack ({_reason(exc)})") from None
    raise DatasetError(f"{archive}: neither a tar nor a zip archive")


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text.strip().splitlines()[0]


def _member_problem(name: str) -> str | None:
    """Why a member name would land outside the target, or None."""
    if not name or "\x00" in name:
        return "an empty or NUL-containing name"
    normal = name.replace("\\", "/")
    if normal.startswith("/") or (len(normal) > 1 and normal[1] == ":"):
        return "an absolute path"
    if ".." in normal.split("/"):
        return "a '..' component"
    return None


def _link_problem(member_name: str, link: str, *, hard: bool) -> str | None:
    """Why a link would point outside the target, or None. A symbolic link resolves from its
    own folder, a hard link from the archive's root."""
    if not link or link.startswith("/") or (len(link) > 1 and link[1] == ":"):
        return f"a link to an absolute path ({link!r})"
    base = "" if hard else posixpath.dirname(member_name.replace("\\", "/"))
    resolved = posixpath.normpath(posixpath.join(base, link.replace("\\", "/")))
    if resolved == ".." or resolved.startswith("../"):
        return f"a link pointing outside the dataset ({link!r})"
    return None


def _refuse(archive: Path, member: str, problem: str) -> DatasetError:
    return DatasetError(f"{archive}: refused: member {member!r} is {problem}; nothing was extracted")


def _too_big(archive: Path, total: int, limit: int, *, declared: bool) -> DatasetError:
    what = "declares" if declared else "unpacked to"
    return DatasetError(
        f"{archive}: refused: it {what} more than {limit} bytes ({total} so far), the limit "
        f"for an archive of its size (${ENV_MAX_BYTES}, at most {MAX_RATIO}x the archive)"
    )


def _extract_tar(archive: Path, target: Path, limit: int) -> int:
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        total = 0
        for member in members:
            problem = _member_problem(member.name)
            if problem is None and (member.issym() or member.islnk()):
                problem = _link_problem(member.name, member.linkname, hard=member.islnk())
            if problem is None and not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
                problem = "a device, FIFO or other special file"
            if problem:
                raise _refuse(archive, member.name, problem)
            total += max(member.size, 0)
            if total > limit:
                raise _too_big(archive, total, limit, declared=True)
        if hasattr(tarfile, "data_filter"):
            tar.extractall(target, members=members, filter="data")
        else:  # Python without PEP 706: the checks above are the guard
            tar.extractall(target, members=members)
    written = sum(f.stat().st_size for f in target.rglob("*") if f.is_file() and not f.is_symlink())
    if written > limit:
        raise _too_big(archive, written, limit, declared=False)
    return written


def _extract_zip(archive: Path, target: Path, limit: int) -> int:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        total = 0
        for info in infos:
            problem = _member_problem(info.filename)
            mode = info.external_attr >> 16
            if problem is None and mode and stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
                problem = "a symbolic link" if stat.S_ISLNK(mode) else "a device, FIFO or other special file"
            if problem:
                raise _refuse(archive, info.filename, problem)
            total += info.file_size
            if total > limit:
                raise _too_big(archive, total, limit, declared=True)
        written = 0
        root = target.resolve()
        for info in infos:
            path = (target / info.filename.replace("\\", "/")).resolve()
            if path != root and root not in path.parents:  # belt and braces after the name checks
                raise _refuse(archive, info.filename, "outside the target")
            if info.is_dir():
                path.mkdir(parents=True, exist_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as source, open(path, "xb") as out:
                written = _copy_limited(source, out, archive, info, written, limit)
    return written


def _copy_limited(source, out, archive: Path, info: zipfile.ZipInfo, written: int, limit: int) -> int:
    """Copy one member, stopping as soon as it exceeds its declared size or the total the limit;
    returns the new total."""
    member = 0
    while chunk := source.read(_CHUNK):
        member += len(chunk)
        written += len(chunk)
        if member > info.file_size:
            raise _refuse(archive, info.filename, f"larger than its declared {info.file_size} bytes")
        if written > limit:
            raise _too_big(archive, written, limit, declared=False)
        out.write(chunk)
    return written


__all__ = ["ENV_MAX_BYTES", "MAX_EXTRACTED_BYTES", "MAX_RATIO", "extract_archive", "extraction_limit"]
