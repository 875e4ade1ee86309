"""Whether a training run is in progress, and how it ended: ``RUN/status.json``.

A run folder alone cannot tell a run in progress from one whose process was killed: both have a
last checkpoint and no closing line. So the trainer (rank 0) records its state in the folder:
at the start of every session, at every checkpoint, and when the session ends, each time
atomically (:mod:`img2img.files.atomic`)::

    {"schema": 1, "state": "running", "pid": 4242, "host": "gpu7",
     "started": "2026-11-30T15:04:32+00:00", "updated": "...",
     "epoch": 3, "iteration": 120, "total_epochs": 200,
     "checkpoint": {"epoch": 3, "epoch_iter": 0, "iteration": 120}}

``state`` is ``running``, ``finished``, ``stopped`` (``stop_after_epochs`` from Python),
``interrupted`` (with ``signal``: SIGINT, SIGTERM, SIGHUP), ``diverged`` or ``failed`` (with
``reason``: the error's first line). ``epoch`` is the number of epochs completed, ``iteration``
the iterations done; ``checkpoint`` is where the last checkpoint was written.

A process killed with ``kill -9`` (or by the OOM killer, or a power cut) cannot write its end:
it leaves ``running``. :func:`describe` tells the two apart with ``os.kill(pid, 0)`` when the
file's host is this host; a run recorded on another host is ``unknown``, since this machine
cannot see that one's processes. A process id can be reused by another process after the run's
has died (in a container, the first processes get the same small ids at every start), so on
Linux the record also holds ``process_start``, the boot id and the process's start time in
clock ticks (``/proc/PID/stat`` field 22): a live process with the run's id but another start
is not the run.

This module imports neither torch nor anything heavy: ``img2img report`` uses it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
from pathlib import Path
from typing import Any, Mapping

from img2img.files.atomic import atomic_write_bytes

STATUS_FILE = "status.json"
SCHEMA = 1
STATES = ("running", "finished", "stopped", "interrupted", "diverged", "failed")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class StatusWriter:
    """Writes ``RUN/status.json`` for one session of a run (one process: rank 0).

    :meth:`start` at the start, :meth:`checkpoint` after each checkpoint, :meth:`end` when the
    session ends. Each write replaces the file atomically; an OSError propagates (the caller
    decides whether it matters)."""

    def __init__(self, root: str | os.PathLike[str], *, total_epochs: int):
        self.path = Path(root) / STATUS_FILE
        self.record: dict[str, Any] = {
            "schema": SCHEMA,
            "state": "running",
            "pid": os.getpid(),
            "process_start": process_start(os.getpid()),
            "host": socket.gethostname(),
            "started": _now(),
            "updated": None,
            "epoch": 0,
            "iteration": 0,
            "total_epochs": int(total_epochs),
            "checkpoint": None,
        }

    def _write(self) -> None:
        self.record["updated"] = _now()
        atomic_write_bytes(self.path, (json.dumps(self.record, indent=2) + "\n").encode())

    def start(self, *, epoch: int, iteration: int, checkpoint: Mapping[str, int] | None = None) -> None:
        """The session starts (a resumed run: from ``checkpoint``)."""
        self.record.update(
            epoch=int(epoch), iteration=int(iteration), checkpoint=dict(checkpoint) if checkpoint else None
        )
        self._write()

    def checkpoint(self, *, epoch: int, epoch_iter: int, iteration: int) -> None:
        """A checkpoint was written: ``epoch`` epochs completed, ``epoch_iter`` iterations into
        the next one, ``iteration`` in all."""
        where = {"epoch": int(epoch), "epoch_iter": int(epoch_iter), "iteration": int(iteration)}
        self.record.update(epoch=int(epoch), iteration=int(iteration), checkpoint=where)
        self._write()

    def end(
        self, state: str, *, epoch: int, iteration: int, signal: str | None = None, reason: str | None = None
    ) -> None:
        """The session ended: ``state`` is one of :data:`STATES` other than ``running``."""
        if state not in STATES or state == "running":
            raise ValueError(f"not an end state: {state!r}")
        self.record.update(state=state, epoch=int(epoch), iteration=int(iteration))
        if signal:
            self.record["signal"] = signal
        if reason:
            self.record["reason"] = reason
        self._write()


def read_status(root: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``RUN/status.json`` as a dict, or None when there is none or it is unreadable, of
    another schema or not what the trainer writes (a run of an older version, or damage: the
    caller falls back to what the folder's other files say)."""
    path = Path(root) / STATUS_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("schema") != SCHEMA or record.get("state") not in STATES:
        return None
    for key in ("pid", "epoch", "iteration"):
        if isinstance(record.get(key), bool) or not isinstance(record.get(key), int):
            return None
    if not isinstance(record.get("checkpoint"), (dict, type(None))):
        return None
    return record


def process_start(pid: int) -> str | None:
    """Which process ``pid`` is, across reuse of its id: ``"BOOT_ID:START_TICKS"`` from Linux's
    ``/proc/sys/kernel/random/boot_id`` and field 22 of ``/proc/PID/stat`` (start time in clock
    ticks since boot; proc(5)). None where /proc does not say (not Linux, no such process)."""
    try:
        with open(f"/proc/{int(pid)}/stat", encoding="ascii", errors="replace") as stat:
            text = stat.read()
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as boot:
            boot_id = boot.read().strip()
    except (OSError, ValueError):
        return None
    # Field 2 (the command name, in parentheses) may hold spaces and parentheses: split after it.
    fields = text[text.rfind(")") + 2 :].split()
    return f"{boot_id}:{fields[19]}" if len(fields) > 19 else None


def process_alive(pid: int, host: str | None, start: str | None = None) -> bool | None:
    """Whether process ``pid`` of ``host`` exists and, when ``start`` (from
    :func:`process_start`) is given and this system can tell, is the process that started then:
    None when ``host`` is not this machine (its processes cannot be seen from here)."""
    if host != socket.gethostname():
        return None
    if isinstance(start, str):
        now = process_start(pid)
        if now is not None:
            return now == start  # the same id and start: the same process; else it is gone
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists (POSIX)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError, OSError):
        return pid > 0  # another user's process exists; an impossible id does not
    return True


def _checkpoint_text(record: Mapping[str, Any]) -> str:
    where = record.get("checkpoint")
    if not isinstance(where, dict) or not isinstance(where.get("epoch"), int):
        return "no checkpoint yet"
    epoch, inside, iteration = where["epoch"], where.get("epoch_iter") or 0, where.get("iteration")
    place = f"end of epoch {epoch}" if not inside else f"epoch {epoch + 1}"
    if isinstance(iteration, int):
        place += f", iteration {iteration}"
    return f"last checkpoint: {place}"


def describe(record: Mapping[str, Any]) -> str:
    """One line for a status record (from :func:`read_status`), e.g.
    ``in progress (pid 4242 on gpu7, last checkpoint: end of epoch 3, iteration 120)``,
    ``stopped: interrupted by SIGTERM at epoch 4 (last checkpoint: epoch 4, iteration 130)``,
    ``finished``, ``ended unexpectedly (the process is gone; last checkpoint: ...)``,
    ``unknown (running on gpu7, pid 4242, when last seen; ...)``."""
    state, epoch = record["state"], record["epoch"]
    checkpoint = _checkpoint_text(record)
    if state == "finished":
        return "finished"
    if state == "interrupted":
        return f"stopped: interrupted by {record.get('signal') or 'a signal'} at epoch {epoch + 1} ({checkpoint})"
    if state == "stopped":
        return f"stopped after epoch {epoch} ({checkpoint})"
    if state == "diverged":
        return f"stopped: diverged at epoch {epoch + 1} ({checkpoint})"
    if state == "failed":
        reason = f": {record['reason']}" if isinstance(record.get("reason"), str) else ""
        return f"stopped: failed at epoch {epoch + 1} ({checkpoint}){reason}"
    pid, host = record["pid"], record.get("host")
    alive = process_alive(pid, host, record.get("process_start"))
    if alive is None:
        return f"unknown (running on {host}, pid {pid}, when last seen; {checkpoint})"
    if alive:
        return f"in progress (pid {pid} on {host}, {checkpoint})"
    return f"ended unexpectedly (the process is gone; {checkpoint})"
