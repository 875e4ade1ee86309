"""Stopping on request: SIGINT/SIGTERM end the current iteration and write a checkpoint."""

from __future__ import annotations

import signal
import threading
from typing import Any, Callable


class StopSignals:
    """SIGINT/SIGTERM ask the loop to stop after the current iteration; a second SIGINT stops
    at once (KeyboardInterrupt)."""

    def __init__(self, notify: Callable[[str], None]):
        self.notify = notify
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
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
        self.signum = signum
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


def _ignore_stop_signals(_worker_id: int) -> None:
    # DataLoader workers leave stopping to the main process, which finishes the iteration.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
