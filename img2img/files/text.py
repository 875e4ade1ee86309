"""File names in messages and JSON, whatever bytes they hold.

Linux file names are bytes: they may hold newlines and other control characters, and bytes that
are not UTF-8 (Python carries those as lone surrogates, PEP 383). The policy:

- **stderr**: every message is one line. Control characters are written as escapes (``\\n``,
  ``\\t``, ``\\r``, ``\\xNN``) and each byte that is not UTF-8 as ``\\xNN``; everything else,
  backslashes included, is printed as is. A human reads it; a program reads the JSON.
  The same holds for every value read from a file and printed on the terminal (``models info``'s
  metadata, a weights file's ``source``, an ONNX file's metadata_props, errors and notes that
  quote a file's contents): ``say`` prints each such line through ``one_line``, so a newline in
  a value cannot forge another line (``direction BtoA``) and an ANSI escape cannot recolour,
  move the cursor or retitle the terminal; Unicode direction overrides are escaped too, so a
  value cannot display reversed.
- **JSON** (``--json``): ``"input"`` and ``"output"`` are the names as Unicode strings, with
  bytes that are not UTF-8 replaced by U+FFFD so every JSON parser accepts them; when that
  happened, ``"input_bytes"`` / ``"output_bytes"`` hold the exact name as base64 (``base64 -d``
  gives the bytes to open). Names that are valid UTF-8 (newlines included, escaped by JSON
  itself) map back exactly from ``"input"`` alone.
"""

from __future__ import annotations

import base64
import os

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Line and paragraph separators, and the bidirectional controls that make text display in
# another order than it is stored ("Trojan source", CVE-2021-42574).
_INVISIBLE = frozenset((0x85, 0x2028, 0x2029, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)))


def one_line(text: str) -> str:
    """``text`` with control characters and undecodable bytes escaped, so it fits on one line."""
    if text.isprintable():
        return text
    out = []
    for char in text:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif code < 0x20 or code == 0x7F or 0x80 <= code < 0xA0 or code in _INVISIBLE:
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        elif 0xD800 <= code <= 0xDFFF:  # any other lone surrogate
            out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


def json_name(key: str, name: str | os.PathLike[str] | None) -> dict[str, str | None]:
    """``{key: name}`` for a JSON record, plus ``{key}_bytes`` (base64) when the name is not
    valid UTF-8 (see the module's policy)."""
    if name is None:
        return {key: None}
    text = os.fspath(name)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            raw = os.fsencode(text)
        except UnicodeEncodeError:  # a surrogate that no file name produced
            raw = text.encode("utf-8", "surrogatepass")
        return {key: raw.decode("utf-8", "replace"), f"{key}_bytes": base64.b64encode(raw).decode("ascii")}
    return {key: text}


def json_text(text: str) -> str:
    """Free text (an error message) for JSON: valid Unicode, undecodable bytes as U+FFFD."""
    return "".join("\ufffd" if 0xD800 <= ord(char) <= 0xDFFF else char for char in text)


__all__ = ["json_name", "json_text", "one_line"]
