"""Notes from the library (files skipped on purpose, first frame used, fp16 fallback, ...): the
``img2img`` loggers' warnings, printed as one ``img2img: note: ...`` line each on stderr."""

from __future__ import annotations

import logging
import sys

from img2img.files.text import one_line


class _NoteHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            # sys.stderr looked up now: a progress bar replaces it while it runs
            # One line whatever the note quotes (a file's contents, onnxruntime's message).
            print(f"img2img: note: {one_line(self.format(record))}", file=sys.stderr, flush=True)
        except Exception:  # noqa: BLE001
            self.handleError(record)


def install() -> None:
    """Route the img2img loggers' warnings to stderr as notes (once per process)."""
    logger = logging.getLogger("img2img")
    if not any(isinstance(handler, _NoteHandler) for handler in logger.handlers):
        logger.addHandler(_NoteHandler(logging.WARNING))
        logger.propagate = False
