"""The run folder (runs/NAME: config.json, checkpoints/, weights/, samples/, metrics.csv,
tensorboard/) and a run's config file, read back for --resume and --config."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

from img2img.atomic import atomic_write_bytes
from img2img.config import TrainConfig
from img2img.errors import Img2ImgError, UsageError
from img2img.train import distributed
from img2img.train.checkpoint import read_checkpoint_info
from img2img.train.progress import METRICS_FILE


CONFIG_FILE = "config.json"
LATEST = "latest.safetensors"


def default_run_dir(config: TrainConfig) -> Path:
    name = Path(config.data).resolve().name or "data"
    return Path("runs") / f"{name}_{config.task}"


class RunFolder:
    """runs/NAME: config.json, checkpoints/, weights/, samples/, metrics.csv, tensorboard/."""

    OWNED = (CONFIG_FILE, "checkpoints", "weights", "samples", METRICS_FILE, "tensorboard", "report.html")

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self.config = self.root / CONFIG_FILE
        self.checkpoints = self.root / "checkpoints"
        self.weights = self.root / "weights"
        self.samples = self.root / "samples"
        self.metrics = self.root / METRICS_FILE
        self.tensorboard = self.root / "tensorboard"
        self.latest = self.checkpoints / LATEST

    def check_new(self, overwrite: bool) -> None:
        """Refuse a folder that already holds anything unless overwriting (checked before the
        dataset is read, and before anything is written)."""
        if self.root.exists() and not self.root.is_dir():
            raise UsageError(f"--out {self.root}: exists and is not a folder")
        if self.root.is_dir() and any(self.root.iterdir()) and not overwrite:
            what = "a training run" if self.config.exists() else "files"
            hint = f"--resume {self.root} to continue it, " if self.latest.exists() else ""
            raise UsageError(
                f"--out {self.root}: already holds {what}; use {hint}--overwrite to start "
                "over, or another --out"
            )

    def create(self, overwrite: bool) -> None:
        if overwrite and self.root.is_dir():
            for name in self.OWNED:
                path = self.root / name
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
        for folder in (self.root, self.checkpoints, self.weights, self.samples):
            folder.mkdir(parents=True, exist_ok=True)

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
        "data", "device", "num_workers", "amp", "amp_dtype", "channels_last", "compile",
        "tensorboard", "print_freq", "save_epoch_freq", "save_latest_freq", "n_epochs",
        "n_epochs_decay", "sync_bn",
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
    if not run.latest.is_file():
        raise UsageError(
            f"--resume {run.root}: no checkpoint to resume from (the run stopped before its first "
            "one); start it again with --out {run.root} --overwrite"
        )
    data = read_config_file(run.config)
    overrides = dict(overrides)
    if "batch_size" in overrides and overrides["batch_size"] != data.get("batch_size"):
        new_world = world_size if world_size is not None else distributed.env_world_size()
        try:
            old_world = int(read_checkpoint_info(run.latest).get("world_size", 1))
        except Img2ImgError:
            old_world = 1
        old_global = int(data.get("batch_size", 1)) * old_world
        if overrides["batch_size"] * new_world == old_global:
            data["batch_size"] = overrides.pop("batch_size")
        else:
            per = old_global / new_world
            keep = f"; with {new_world} process{'es' if new_world != 1 else ''} give --batch-size {int(per)}" if per == int(per) else ""
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
    return config_cls.from_dict(data)
