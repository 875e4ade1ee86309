"""Stopping: signals end the current iteration and write a checkpoint, and the loader's worker
processes always end with the run.

SIGINT (Ctrl-C), SIGTERM and SIGHUP (the terminal closed) ask the training loop to stop after
the current iteration; a second SIGINT stops at once. DataLoader workers ignore these signals
(a Ctrl-C reaches the whole process group: the main process finishes the iteration that needs
their batches) and are ended by the main process however the run ends
(:func:`stop_loader_workers`), so the interpreter never waits at exit for a worker that ignores
SIGTERM. The exit code of a run stopped by a signal is 128 + the signal's number (130 for
SIGINT, 143 for SIGTERM, 129 for SIGHUP), as a shell reports a process killed by it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from typing import Any, Callable

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class StopSignals:
    """SIGINT, SIGTERM and SIGHUP ask the loop to stop after the current iteration; a second
    SIGINT stops at once (KeyboardInterrupt). Handlers are installed only in the main thread
    and restored on exit."""

    def __init__(self, notify: Callable[[str], None]):
        self.notify = notify
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                if signal.getsignal(signum) is not signal.SIG_IGN:  # nohup's SIGHUP stays ignored
                    self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        first = self.signum is None
        self.signum = signum
        if first:
            self.notify(
                f"{signal.Signals(signum).name}: stopping after this iteration and writing a checkpoint "
                "(press Ctrl-C again to stop at once)"
            )

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or signal.SIGINT)


def ignore_stop_signals(_worker_id: int) -> None:
    """A DataLoader ``worker_init_fn``: workers leave stopping to the main process, which
    finishes the iteration and then ends them (:func:`stop_loader_workers`)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def stop_loader_workers(loader: Any, timeout: float = 5.0) -> None:
    """End ``loader``'s worker processes (persistent ones included) and wait for them: asked
    to finish first, killed (SIGKILL: they ignore SIGTERM, and hold nothing worth saving) if
    still there after ``timeout`` seconds. Safe to call on a loader without workers, and
    twice."""
    iterator = getattr(loader, "_iterator", None)
    if iterator is None:
        return
    loader._iterator = None
    workers = list(getattr(iterator, "_workers", ()))
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if shutdown is not None:
        with contextlib.suppress(Exception):
            shutdown()
    deadline = time.monotonic() + timeout
    for worker in workers:
        with contextlib.suppress(Exception):
            worker.join(max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                worker.kill()
                worker.join(5.0)
