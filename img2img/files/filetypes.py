"""What a file is, from its first bytes: so that a refusal can say "this is an HTML page" rather
than echo a parser's complaint.

Only the kinds someone could plausibly hand in as weights are told apart: the two formats we
read (safetensors; PyTorch checkpoints, zip or legacy pickle) and what a failed download, a
misnamed file or another framework leaves (HTML, JSON, text, Git LFS pointers, archives, HDF5,
ONNX, NumPy). Nothing here imports torch.
"""

from __future__ import annotations

import json
import os
import stat
import zipfile
from pathlib import Path

SAFETENSORS = "safetensors"
PYTORCH_ZIP = "pytorch-zip"  # torch.save since PyTorch 1.6: a zip holding data.pkl
PYTORCH_LEGACY = "pytorch-legacy"  # older torch.save, or a bare pickle: pickle protocol 2+

#: Kinds a PyTorch weights-only load may read.
PYTORCH_KINDS = (PYTORCH_ZIP, PYTORCH_LEGACY)

_DESCRIPTIONS = {  # kind -> (what it is, a hint or "")
    SAFETENSORS: ("a safetensors file", ""),
    "safetensors-truncated": ("a truncated safetensors file", "an interrupted download or copy?"),
    PYTORCH_ZIP: ("a PyTorch checkpoint (torch.save zip)", ""),
    PYTORCH_LEGACY: ("a PyTorch checkpoint or pickle (legacy format)", ""),
    "empty": ("an empty file", "an interrupted download or copy?"),
    "html": ("an HTML page", "a download that returned a web page, e.g. a login or error page?"),
    "lfs": ("a Git LFS pointer", "the file itself was never fetched: run `git lfs pull` where it came from"),
    "json": ("a JSON text file", ""),
    "text": ("a text file", "an error message saved by a failed download?"),
    "zip": ("a zip archive", "unpack it first"),
    "gzip": ("a gzip-compressed file", "unpack it first"),
    "tar": ("a tar archive", "unpack it first"),
    "hdf5": ("an HDF5 file", "Keras/TensorFlow weights are not supported"),
    "numpy": ("a NumPy array file", ""),
    "onnx": ("an ONNX model", "ONNX models are an export format; img2img reads safetensors or .pth"),
    "gguf": ("a GGUF model file", ""),
    "unknown": ("a file of unknown format", ""),
}


def sniff(path: str | os.PathLike[str]) -> str:
    """The kind of file at ``path``: one of the keys of ``describe_kind``'s table (``safetensors``,
    ``pytorch-zip``, ``pytorch-legacy``, ``html``, ``lfs``, ``json``, ``text``, ``zip``, ``gzip``,
    ``tar``, ``hdf5``, ``numpy``, ``onnx``, ``gguf``, ``safetensors-truncated`` (its header is cut
    off), ``empty`` or ``unknown``).

    Reads at most a few kilobytes (plus a zip's directory). Raises OSError if it cannot be read."""
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(4096)
        size = os.fstat(handle.fileno()).st_size
    if not head:
        return "empty"
    if _is_safetensors(head, size):
        return SAFETENSORS
    if _is_cut_safetensors(head, size):
        return "safetensors-truncated"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            # A truncated zip has no directory; its first entry's name still says what it was
            # (torch.save writes ARCHIVE/data.pkl first).
            name_length = int.from_bytes(head[26:28], "little")
            first_name = head[30 : 30 + name_length]
            return PYTORCH_ZIP if first_name.endswith(b"data.pkl") else "zip"
        return PYTORCH_ZIP if any(name.endswith("data.pkl") for name in names) else "zip"
    if head[:1] == b"\x80" and 2 <= head[1] <= 5:
        return PYTORCH_LEGACY
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if len(head) > 262 and head[257:262] == b"ustar":
        return "tar"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5"
    if head.startswith(b"\x93NUMPY"):
        return "numpy"
    if head.startswith(b"GGUF"):
        return "gguf"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or (
        text.startswith(b"<") and b"<html" in text
    ):
        return "html"
    if text.startswith(b"version https://git-lfs.github.com/spec"):
        return "lfs"
    if _is_text(head):
        return "json" if text[:1] in (b"{", b"[") else "text"
    if head[:1] == b"\x08" and b"onnx" in head[:512].lower():  # protobuf: ir_version field first
        return "onnx"
    return "unknown"


def describe_kind(kind: str) -> tuple[str, str]:
    """(what it is, a hint or ""), e.g. ("an HTML page", "a download that returned a web page...")
    for ``html``, and so on for every kind ``sniff`` returns."""
    return _DESCRIPTIONS.get(kind, _DESCRIPTIONS["unknown"])


def _is_safetensors(head: bytes, size: int) -> bool:
    # An 8-byte little-endian header length, then that many bytes of JSON starting with "{".
    if len(head) < 10:
        return False
    length = int.from_bytes(head[:8], "little")
    if not 2 <= length <= size - 8 or head[8:9] != b"{":
        return False
    if length <= len(head) - 8:
        try:
            return isinstance(json.loads(head[8 : 8 + length]), dict)
        except ValueError:
            return False
    return True


def _is_cut_safetensors(head: bytes, size: int) -> bool:
    # A safetensors header (its length, then a JSON object of tensor entries) that the file
    # ends inside of. The library caps headers at 100 MB; a bigger "length" is something else.
    length = int.from_bytes(head[:8], "little") if len(head) >= 10 else 0
    return size - 8 < length <= 100_000_000 and head[8:10] == b'{"'


def _is_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        # A multi-byte character cut at the end of the sample is still text.
        try:
            head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return not any(byte < 9 or 13 < byte < 32 for byte in head if byte != 27)


_SPECIAL_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def special_file_kind(mode: int) -> str | None:
    """'a FIFO (named pipe)', 'a socket', ... for a ``st_mode`` that is none of file, folder."""
    for test, kind in _SPECIAL_KINDS:
        if test(mode):
            return kind
    return None


__all__ = [
    "PYTORCH_KINDS",
    "PYTORCH_LEGACY",
    "PYTORCH_ZIP",
    "SAFETENSORS",
    "describe_kind",
    "sniff",
    "special_file_kind",
]
