"""The run folder (runs/NAME: config.json, checkpoints/, weights/, samples/, metrics.csv,
tensorboard/) and a run's config file, read back for --resume and --config."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any, Mapping

from img2img.errors import Img2ImgError, RunFolderError, UsageError
from img2img.files.atomic import atomic_write_bytes
from img2img.files.run_status import STATUS_FILE, process_alive, read_status
from img2img.train import distributed
from img2img.train.checkpoint import read_checkpoint_info
from img2img.train.config import TrainConfig
from img2img.train.progress import METRICS_FILE

CONFIG_FILE = "config.json"
LATEST = "latest.safetensors"
LOCK_FILE = "run.lock"


def default_run_dir(config: TrainConfig) -> Path:
    name = Path(config.data).resolve().name or "data"
    return Path("runs") / f"{name}_{config.task}"


class RunFolder:
    """runs/NAME: config.json, checkpoints/, weights/, samples/, metrics.csv, tensorboard/."""

    OWNED = (CONFIG_FILE, "checkpoints", "weights", "samples", METRICS_FILE, "tensorboard", "report.html", STATUS_FILE)

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self.config = self.root / CONFIG_FILE
        self.checkpoints = self.root / "checkpoints"
        self.weights = self.root / "weights"
        self.samples = self.root / "samples"
        self.metrics = self.root / METRICS_FILE
        self.tensorboard = self.root / "tensorboard"
        self.latest = self.checkpoints / LATEST

    def kept_checkpoints(self) -> list[Path]:
        """The kept epoch_NNN checkpoints, newest first."""
        if not self.checkpoints.is_dir():
            return []
        return sorted(self.checkpoints.glob("epoch_[0-9][0-9][0-9]*.safetensors"), reverse=True)

    def has_checkpoint(self) -> bool:
        """Whether the run wrote anything resumable (latest or a kept epoch checkpoint)."""
        return self.latest.exists() or bool(self.kept_checkpoints())

    def never_checkpointed(self) -> bool:
        """A run folder whose run stopped before its first checkpoint (failed or killed): it
        holds nothing to resume or keep, so a new run may start over in it."""
        if not self.config.is_file() or self.has_checkpoint():
            return False
        return not (self.weights.is_dir() and any(self.weights.glob("*.safetensors")))

    def check_new(self, overwrite: bool) -> None:
        """Refuse a folder that already holds anything unless overwriting (checked before the
        dataset is read, and before anything is written). A run that never wrote a checkpoint
        does not count."""
        if self.root.exists() and not self.root.is_dir():
            raise UsageError(f"--out {self.root}: exists and is not a folder")
        held = self.root.is_dir() and any(path.name != LOCK_FILE for path in self.root.iterdir())
        if held and not overwrite and not self.never_checkpointed():
            what = "a training run" if self.config.exists() else "files"
            if self.has_checkpoint():  # --overwrite would delete its checkpoints: say so
                raise UsageError(
                    f"--out {self.root}: already holds {what}; continue it with --resume {self.root}, "
                    "or choose another --out (--overwrite starts over, deleting its checkpoints)"
                )
            raise UsageError(
                f"--out {self.root}: already holds {what}; use --overwrite to start over, or another --out"
            )

    def create(self, overwrite: bool) -> None:
        """Make the folders of a new run; with ``overwrite`` (or over a run that never wrote a
        checkpoint) first remove what a run keeps here (other files are left alone)."""
        if (overwrite or self.never_checkpointed()) and self.root.is_dir():
            for name in self.OWNED:
                path = self.root / name
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
        for folder in (self.root, self.checkpoints, self.weights, self.samples):
            folder.mkdir(parents=True, exist_ok=True)

    def remove_new_run(self) -> None:
        """Remove what :meth:`create` and the first steps of a run wrote, for a run that failed
        before its first checkpoint (so that the same command can be given again)."""
        for name in self.OWNED:
            path = self.root / name
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists():
                path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.root.rmdir()  # only if nothing else is there

    def remove_stale_temporaries(self) -> None:
        """Half-written files a killed run left behind (the files they were replacing are intact)."""
        for folder in (self.checkpoints, self.weights, self.samples, self.root):
            if folder.is_dir():
                for path in folder.glob(".*.tmp"):
                    path.unlink(missing_ok=True)

    def write_config(self, config: TrainConfig) -> None:
        atomic_write_bytes(self.config, (json.dumps(config.to_dict(), indent=2) + "\n").encode())

    def epoch_checkpoint(self, epoch: int) -> Path:
        return self.checkpoints / f"epoch_{epoch:03d}.safetensors"

    def sample_file(self, epoch: int) -> Path:
        return self.samples / f"epoch_{epoch:03d}.png"

    def weights_file(self, task: str, direction: str) -> Path:
        return self.weights / f"{task}_{direction}.safetensors"


class RunLock:
    """One process trains in a run folder at a time: ``RUN/run.lock``, locked with ``flock``
    by the run's process (rank 0) from before the folder is checked until the run has ended.

    The kernel releases an ``flock`` when its process ends, however it ends (``kill -9`` and
    the OOM killer included), so a lock of a dead process never stands in the way and nothing
    has to judge whether a recorded process is still alive. The file holds who locked it
    (``{"pid", "host", "started"}``) for the message that refuses a second run. A run folder
    whose status.json says "running" for a live process of this host that holds no lock (a run
    of an older img2img) is refused too.

    On file systems without ``flock`` (some network mounts) locking is skipped: the status
    check still applies."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self.path = self.root / LOCK_FILE
        self._fd: int | None = None
        self._made: list[Path] = []

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, option: str = "--out") -> None:
        """Lock the folder (made if missing) or raise UsageError naming the live run that
        holds it. ``option`` names the folder in the message (--out or --resume)."""
        if self._fd is not None:
            return
        try:
            import fcntl
        except ImportError:  # not POSIX: no flock; the status check below still applies
            fcntl = None
        # The folders made here (the run folder and missing parents, e.g. runs/), removed
        # again if the run ends before writing anything in them.
        self._made = [folder for folder in (self.root, *self.root.parents) if not folder.exists()]
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunFolderError(f"{option} {self.root}: cannot make the run folder ({exc.strerror or exc})") from None
        if fcntl is None:
            self._refuse_live_status(option)
            return
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
            except OSError as exc:
                self._forget_root()
                raise RunFolderError(f"{self.path}: cannot write ({exc.strerror or exc})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise UsageError(f"{option} {self.root}: {holder}; {_refusal_advice(option)}") from None
            except OSError:  # ENOLCK, EINVAL: a file system without flock
                os.close(fd)
                self._refuse_live_status(option)
                return
            # The holder before us may have removed the file between our open and our lock: the
            # lock must be on the file that has the name now.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self._fd = fd
        try:
            self._refuse_live_status(option)
        except BaseException:
            self.release()
            raise
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}  # fmt: skip
        with contextlib.suppress(OSError):  # the lock holds without its description
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)

    def _refuse_live_status(self, option: str) -> None:
        """A run recorded as running by a live process (of a version without the lock)."""
        record = read_status(self.root)
        if record is None or record["state"] != "running" or record["pid"] == os.getpid():
            return
        if process_alive(record["pid"], record.get("host"), record.get("process_start")):
            raise UsageError(
                f"{option} {self.root}: in use by a live run (pid {record['pid']} on {record.get('host')}, "
                f"started {record.get('started')}); {_refusal_advice(option)}"
            )

    def release(self) -> None:
        """Unlock and remove the lock file (and the folders :meth:`acquire` made, if they are
        empty). Safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)  # while still locked: whoever opens it next retries
            os.close(fd)
        self._forget_root()

    def _forget_root(self) -> None:
        made, self._made = self._made, []
        for folder in made:  # deepest first
            try:
                folder.rmdir()  # only if nothing else is there
            except OSError:
                break


def _read_holder(fd: int) -> str:
    """'in use by a live run (pid N on HOST, started T)' from a locked lock file."""
    try:
        record = json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace") or "{}")
    except (OSError, ValueError):
        record = {}
    if not isinstance(record, dict) or not isinstance(record.get("pid"), int):
        return "in use by a live run"
    return f"in use by a live run (pid {record['pid']} on {record.get('host')}, started {record.get('started')})"


def _refusal_advice(option: str) -> str:
    if option == "--resume":
        return "wait for it to end (or stop it: it writes a checkpoint), then resume"
    return "wait for it to end or stop it, or choose another --out"


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: no such config file") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a readable JSON config ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a config file holds one JSON object")
    return data


# Options that may differ when resuming: where and how fast it runs, how much it logs, and how
# long it trains. Everything else comes from the run's config.json.
RESUME_OVERRIDABLE = frozenset(
    {
        "data",
        "device",
        "num_workers",
        "amp",
        "amp_dtype",
        "channels_last",
        "compile",
        "tensorboard",
        "print_freq",
        "save_epoch_freq",
        "save_latest_freq",
        "n_epochs",
        "n_epochs_decay",
        "sync_bn",
        "check_data",
    }
)


def load_run_config(
    run_dir: str | os.PathLike[str],
    config_cls: type,
    overrides: Mapping[str, Any],
    *,
    world_size: int | None = None,
) -> Any:
    """A run's own config (from its config.json) with the allowed command-line changes.
    ``--batch-size`` (per process) may change only to keep the global batch when the run
    resumes with another number of processes (``world_size``, default: this job's)."""
    run = RunFolder(run_dir)
    if not run.root.is_dir():
        raise UsageError(f"--resume {run.root}: no such run folder")
    if not run.config.is_file():
        raise UsageError(f"--resume {run.root}: not a training run (no {CONFIG_FILE})")
    if not run.has_checkpoint():
        raise UsageError(
            f"--resume {run.root}: no checkpoint to resume from (the run stopped before its first "
            f"one); start it again: the same command with --out {run.root} instead of --resume"
        )
    try:
        data = read_config_file(run.config)
    except UsageError as exc:
        raise RunFolderError(exc.message) from None
    overrides = dict(overrides)
    if "batch_size" in overrides and overrides["batch_size"] != data.get("batch_size"):
        new_world = world_size if world_size is not None else distributed.env_world_size()
        try:
            newest = run.latest if run.latest.is_file() else run.kept_checkpoints()[0]
            old_world = int(read_checkpoint_info(newest).get("world_size", 1))
        except (Img2ImgError, IndexError, TypeError, ValueError):
            old_world = 1
        old_global = int(data.get("batch_size", 1)) * old_world
        if overrides["batch_size"] * new_world == old_global:
            data["batch_size"] = overrides.pop("batch_size")
        else:
            per = old_global / new_world
            keep = (
                f"; with {new_world} process{'es' if new_world != 1 else ''} give --batch-size {int(per)}"
                if per == int(per)
                else ""
            )
            raise UsageError(
                f"--resume: --batch-size can change only to keep the run's global batch of {old_global} "
                f"({data.get('batch_size')} per process x {old_world} process{'es' if old_world != 1 else ''}){keep}"
            )
    refused = sorted(
        key for key, value in overrides.items() if key not in RESUME_OVERRIDABLE and data.get(key) != value
    )
    if refused:
        flags = ", ".join("--" + key.replace("_", "-") for key in refused)
        raise UsageError(
            f"--resume continues with the run's own config; {flags} cannot change "
            f"(start a new run with --config {run.config} and the new options instead)"
        )
    data.update({k: v for k, v in overrides.items() if k in RESUME_OVERRIDABLE})
    data["out"] = str(run.root)
    try:
        return config_cls.from_dict(data)
    except UsageError as exc:
        raise type(exc)(f"{run.config}: {exc.message}") from None
    except (TypeError, ValueError) as exc:  # a value of the wrong type
        raise RunFolderError(f"{run.config}: not a valid run config ({exc}); was the file edited?") from None
