"""Test hook: hold a process at a named point until the test lets it go.

A test that must act while the code under test is at a known point (send a signal mid-training,
kill a run between two checkpoints) cannot race it: a fast CPU finishes first, a busy one has
not got there yet. Instead the test asks the process to stop and wait there:

- it sets ``IMG2IMG_TEST_HOLD`` to a folder and creates ``FOLDER/POINT.hold`` there for each
  point to hold at (:func:`hold_at`);
- the library calls :func:`hold` with the point's name when it gets there (training: before
  iteration N runs, ``iteration-N``); with such a file present, the process writes
  ``FOLDER/POINT.reached.PID`` and waits until the ``.hold`` file is removed (:func:`release`);
- the test waits for the ``.reached`` file (:func:`wait_until_held`), acts, then releases it.

Signals arrive normally while a process is held: a handler that raises (a second Ctrl-C, the
CLI's stop) ends the wait. Off unless the variable is set (one ``os.environ`` look-up per
call); never set it outside tests. The points the library offers are listed in POINTS.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

ENV_TEST_HOLD = "IMG2IMG_TEST_HOLD"
# Where the library calls hold(): name -> where.
POINTS = {"iteration-N": "training, before iteration N (1-based, counted over the whole run) runs"}
# A held process whose test went away goes on after this long instead of waiting forever.
_GIVE_UP_AFTER = 600.0
_POLL = 0.01


def hold(point: str) -> None:
    """Called by the library at ``point``: returns at once unless a test asked to hold there
    (module docstring), else waits until the test releases it (or ``_GIVE_UP_AFTER`` s)."""
    folder = os.environ.get(ENV_TEST_HOLD)
    if not folder:
        return
    held = Path(folder) / f"{point}.hold"
    if not held.exists():
        return
    (Path(folder) / f"{point}.reached.{os.getpid()}").touch()
    give_up = time.monotonic() + _GIVE_UP_AFTER
    while held.exists() and time.monotonic() < give_up:
        time.sleep(_POLL)


# --- the test's side ----------------------------------------------------------------------------


def hold_at(folder: Path, *points: str) -> dict[str, str]:
    """Ask processes started with the returned environment entries to hold at ``points``."""
    folder.mkdir(parents=True, exist_ok=True)
    for point in points:
        (folder / f"{point}.hold").touch()
    return {ENV_TEST_HOLD: str(folder)}


def wait_until_held(
    folder: Path, point: str, alive: Callable[[], bool], count: int = 1, hang_guard: float = 300.0
) -> list[int]:
    """Wait until ``count`` processes are held at ``point``; returns their process ids. Raises
    AssertionError when ``alive()`` turns false first (the process ended without getting
    there) or after ``hang_guard`` seconds (a guard against a hang, not a measure)."""
    give_up = time.monotonic() + hang_guard
    while True:
        reached = sorted(int(p.name.rsplit(".", 1)[1]) for p in folder.glob(f"{point}.reached.*"))
        if len(reached) >= count:
            return reached
        if not alive():
            raise AssertionError(f"the process ended before reaching {point}")
        if time.monotonic() > give_up:
            raise AssertionError(f"nothing reached {point} within {hang_guard:g} s")
        time.sleep(_POLL)


def release(folder: Path, point: str) -> None:
    """Let the processes held at ``point`` go on."""
    (folder / f"{point}.hold").unlink(missing_ok=True)


__all__ = ["ENV_TEST_HOLD", "POINTS", "hold", "hold_at", "release", "wait_until_held"]
