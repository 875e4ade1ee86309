"""SIGINT, SIGTERM and SIGHUP unwind every command the same way.

The first of these signals raises :class:`Interrupted` in the main thread, so ``with`` blocks and
``finally`` clauses run (temporary files are removed, see ``img2img.files.atomic``) and the CLI prints
one line saying what was written and exits 128 + the signal number (130, 143, 129). A second
signal while unwinding removes the remaining temporaries at once and ends the process with the
signal's default action. A signal that was ignored when the process started (``nohup``, a
background job of a non-interactive shell) stays ignored.

Training installs its own handlers for the length of its loop (finish the iteration, write a
checkpoint); they take precedence while they are installed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from types import FrameType
from typing import Iterator

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class Interrupted(BaseException):
    """A stop signal arrived. A BaseException (like KeyboardInterrupt) so that ``except
    Exception`` does not swallow it; not a KeyboardInterrupt, so that Click does not turn it into
    a silent exit 130. ``summary`` is what the command had written, for the CLI's last line."""

    def __init__(self, signum: int, summary: str | None = None):
        super().__init__(signum)
        self.signum = signum
        self.summary = summary

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


_received: int | None = None


def install() -> dict[int, object]:
    """Install the handlers; returns the previous ones. Only the main thread can (elsewhere,
    e.g. the CLI called from a worker thread, nothing is installed)."""
    global _received
    _received = None
    previous: dict[int, object] = {}
    if threading.current_thread() is not threading.main_thread():
        return previous
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is signal.SIG_IGN:
            continue
        previous[signum] = signal.signal(signum, _handle)
    return previous


@contextlib.contextmanager
def installed() -> Iterator[None]:
    """The handlers for the length of a command (the CLI's entry point), then the previous ones
    again, so that calling the CLI from Python (tests) leaves the process as it was."""
    previous = install()
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def received() -> int | None:
    """The stop signal that arrived during this command, or None."""
    return _received


def raise_if_received() -> None:
    """Raise Interrupted when a stop signal arrived while code that swallows exceptions ran
    (torch's ONNX exporter turns the Interrupted its tracer meets into other errors). The error
    being handled, if any, is the signal's doing: the Interrupted does not carry it as its
    context (``from None``), so the CLI reports the signal, not that error."""
    if _received is not None:
        raise Interrupted(_received) from None


def _handle(signum: int, frame: FrameType | None) -> None:
    global _received
    if _received is None:
        _received = signum
        raise Interrupted(signum)
    # Already unwinding and asked again: stop now, but still leave no temporaries behind.
    from img2img.files.atomic import remove_registered_temporaries

    remove_registered_temporaries()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


__all__ = ["Interrupted", "STOP_SIGNALS", "install", "installed", "raise_if_received", "received"]
