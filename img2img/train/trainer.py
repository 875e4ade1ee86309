"""The :class:`Trainer` every trainer (pix2pix, CycleGAN) shares.

A trainer supplies three things (see :mod:`img2img.train.model`): its data (a
:class:`TrainData`), its networks and its step (a :class:`TrainableModel`). :class:`Trainer` does the rest: run folder and config.json,
devices, AMP, channels-last, torch.compile, the DataLoader, the epoch loop, learning-rate
schedules, checkpoints and resume (bit-identical on the CPU), SIGINT/SIGTERM (:mod:`~img2img.train.signals`), progress,
metrics.csv, TensorBoard, sample grids, weights export and the closing summary. It is
rank-aware: under torchrun every rank trains, only rank 0 writes or prints.
"""


from __future__ import annotations

import dataclasses
import math
import secrets
import signal
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence, TextIO

import torch
from torch.utils.data import DataLoader

from img2img.config import TrainConfig
from img2img.data.sampler import EpochSampler
from img2img.devices import resolve_device
from img2img.errors import Img2ImgError, TrainingInterrupted, UsageError
from img2img.train import distributed
from img2img.train.checkpoint import (
    link_or_copy,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)
from img2img.train.model import TrainData, TrainableModel
from img2img.train.progress import MetricsLog, Progress, TensorBoard, format_duration
from img2img.train.run_folder import RunFolder, default_run_dir
from img2img.train.runtime import (
    Amp,
    DistInfo,
    Runtime,
    default_amp,
    default_channels_last,
    default_num_workers,
)
from img2img.train.samples import image_grid, save_png
from img2img.train.schedules import build_scheduler, refresh_learning_rate
from img2img.train.signals import StopSignals, _ignore_stop_signals
from img2img.weights import WeightsMetadata, save_generator


@dataclass
class TrainResult:
    run_dir: Path
    weights: dict[str, Path]
    epochs: int
    iterations: int
    val_metrics: dict[str, float]
    seconds: float


class Trainer:
    """Runs a :class:`TrainableModel` on :class:`TrainData` as ``config`` says.

    ``model_factory(config)`` builds the model (networks initialised, optimizers created); it is
    called after seeding, so a fixed ``config.seed`` gives the same initial weights. ``data`` is
    a TrainData or ``data_factory(config)``, called (so the dataset is checked) before anything
    is written. With
    ``resume=True`` the run folder's latest checkpoint is loaded and the run continues."""

    def __init__(
        self,
        config: TrainConfig,
        model_factory: Callable[[Any], TrainableModel],
        data: TrainData | Callable[[Any], TrainData],
        *,
        resume: bool = False,
        overwrite: bool = False,
        stream: TextIO | None = None,
        live: bool | None = None,
        dist: DistInfo | None = None,
    ):
        if config.seed is None:
            config = dataclasses.replace(config, seed=secrets.randbelow(2**31))
        run_dir = Path(config.out) if config.out else default_run_dir(config)
        self.config = dataclasses.replace(config, out=str(run_dir))
        self.dist = dist or DistInfo.from_env()
        self.run = RunFolder(run_dir)
        self.resume, self.overwrite = resume, overwrite
        self.stream = stream or sys.stderr
        self.live = live
        self.model_factory = model_factory
        self._data = data
        self.epoch = 0  # epochs completed
        self.epoch_iter = 0  # iterations done in the current epoch
        self.iteration = 0
        self.elapsed = 0.0  # training seconds over all sessions of the run
        self.last_val: dict[str, float] = {}
        self._owns_group = False  # whether this trainer started the process group (torchrun)
        self._report_disabled = False
        self._saved: tuple[int, int] | None = None  # (epoch, iteration) of the last checkpoint
        self._notes: list[str] = []  # said when training starts

    # -- output helpers
    def log(self, message: str) -> None:
        if self.dist.is_main:
            if getattr(self, "progress", None) is not None:
                self.progress.log(message)
            else:
                print(message, file=self.stream, flush=True)

    # -- setup
    def _prepare(self) -> None:
        cfg = self.config
        self.device = resolve_device(cfg.device, self.dist.local_rank)
        if self.device.type not in ("cpu", "cuda"):
            # untested there: checkpoints restore only CPU and CUDA random states, and AMP is not set up for it
            raise UsageError(f"--device {cfg.device}: training runs on the CPU or CUDA; use --device cpu, cuda or auto")
        distributed.check_device_option(cfg.device, self.dist.world_size)
        # Under torchrun: join the process group (NCCL on CUDA, gloo on the CPU) and take rank
        # 0's seed (a run without --seed draws one per process).
        self._owns_group = distributed.init_process_group(self.dist.world_size, self.dist.rank, self.device)
        if distributed.active():
            cfg = self.config = dataclasses.replace(cfg, seed=distributed.broadcast_object(cfg.seed))
        # Every check before anything is written; with several processes they all agree on the
        # outcome, and a problem is reported once (by rank 0).
        with distributed.agreement(self.dist.rank):
            if not self.resume:
                self.run.check_new(self.overwrite)
            if cfg.tensorboard:
                from img2img.train.progress import tensorboard_missing

                if (error := tensorboard_missing()) is not None:
                    raise error
            use_amp = cfg.amp if cfg.amp is not None else default_amp(self.device, cfg.amp_dtype)
            amp = Amp(use_amp, cfg.amp_dtype, self.device)
            channels_last = cfg.channels_last
            if channels_last is None:
                channels_last = default_channels_last(self.device, cfg.generator_config, amp=use_amp)
            sync_bn = self._sync_bn()
            self.runtime = Runtime(self.device, amp, channels_last, cfg.compile, self.dist, sync_bn)
            # The dataset is checked before anything is written.
            self.data = self._data(cfg) if callable(self._data) else self._data

            seed_everything(cfg.seed)
            self.model = self.model_factory(cfg)
        self.model.setup(self.runtime)  # DDP broadcasts rank 0's weights: every rank takes part
        self.schedulers = {name: build_scheduler(opt, cfg) for name, opt in self.model.optimizers.items()}
        if self.dist.world_size > 1 and self.dist.rank > 0:
            # Same initial weights everywhere; from here each rank has its own random streams.
            seed_everything(distributed.rank_seed(cfg.seed, self.dist.rank))

        with distributed.agreement(self.dist.rank):
            if self.resume:
                self._load(self.run.latest)
                if self.epoch >= cfg.total_epochs:
                    raise UsageError(
                        f"--resume {self.run.root}: the run already finished its {cfg.total_epochs} "
                        "epochs (give a larger --n-epochs or --n-epochs-decay to train longer)"
                    )
        if self.dist.is_main:
            if self.resume:
                self.run.remove_stale_temporaries()
            else:
                self.run.create(self.overwrite)
            self.run.write_config(cfg)

        workers = cfg.num_workers if cfg.num_workers is not None else default_num_workers(self.device)
        self.sampler = EpochSampler(
            len(self.data.train), seed=cfg.seed, shuffle=not cfg.serial_batches,
            rank=self.dist.rank, world_size=self.dist.world_size,
        )
        self.loader = DataLoader(
            self.data.train,
            batch_size=cfg.batch_size,
            sampler=self.sampler,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0,
            worker_init_fn=_ignore_stop_signals if workers > 0 else None,
            generator=torch.Generator(),  # keeps the global RNG untouched by the loader
        )
        self.iters_per_epoch = math.ceil(self.sampler.per_rank / cfg.batch_size)
        self.val_loader = None
        if self.data.val is not None and len(self.data.val) and self.dist.is_main:
            self.val_loader = DataLoader(self.data.val, batch_size=1, shuffle=False, num_workers=0)

    def _sync_bn(self) -> bool:
        """Whether SyncBatchNorm replaces batch norm (--sync-bn with several CUDA processes)."""
        if not self.config.sync_bn:
            return False
        if not distributed.active():
            self._notes.append("--sync-bn: a single process, so plain batch norm")
            return False
        if self.device.type != "cuda":
            raise UsageError(
                "--sync-bn: PyTorch's SyncBatchNorm runs on CUDA devices only; leave it out on the "
                "CPU (each process then normalises over its own --batch-size images)"
            )
        if self.config.norm != "batch":
            self._notes.append(f"--sync-bn: no batch norm to synchronise (--norm {self.config.norm})")
        return True

    # -- checkpoints
    def _state(self) -> dict[str, Any]:
        return {
            "networks": {name: net.state_dict() for name, net in self.model.networks.items()},
            "optimizers": {name: opt.state_dict() for name, opt in self.model.optimizers.items()},
            "schedulers": {name: s.state_dict() for name, s in self.schedulers.items()},
            "amp": self.runtime.amp.state_dict(),
            "rng": rng_state(),
            "extra": self.model.extra_state(),
        }

    def _info(self) -> dict[str, Any]:
        return {
            "task": self.model.task,
            "epoch": self.epoch,
            "epoch_iter": self.epoch_iter,
            "iteration": self.iteration,
            "iters_per_epoch": self.iters_per_epoch,
            "elapsed": self.elapsed,
            "world_size": self.dist.world_size,
            "config": self.config.to_dict(),
        }

    def _rank_states(self) -> list[dict[str, Any]]:
        """The RNG states and extra state (image pools) of ranks 1..N-1, gathered on rank 0
        (every rank takes part); rank 0's own are the checkpoint's ``rng`` and ``extra``."""
        if not distributed.active():
            return []
        mine = None if self.dist.is_main else {"rng": rng_state(), "extra": self.model.extra_state()}
        gathered = distributed.gather_to_main(mine)
        return list(gathered[1:]) if gathered else []

    def save_checkpoint(self, *, keep_epoch: bool = False) -> None:
        """Write ``latest`` (and a kept copy for this epoch) and export the generators: rank 0
        writes, with every rank's random streams."""
        rank_states = self._rank_states()
        self._saved = (self.epoch, self.iteration)
        if not self.dist.is_main:
            return
        state = self._state()
        if rank_states:
            state["rank_states"] = rank_states
        save_checkpoint(self.run.latest, state, self._info())
        if keep_epoch:
            link_or_copy(self.run.latest, self.run.epoch_checkpoint(self.epoch))
        self.export()

    def _load(self, path: Path) -> None:
        checkpoint = load_checkpoint(path)
        info, state = checkpoint.info, checkpoint.state
        if info.get("task") != self.model.task:
            raise UsageError(f"{path}: a {info.get('task')} checkpoint, not a {self.model.task} one")
        for name, net in self.model.networks.items():
            net.load_state_dict(state["networks"][name])
        for name, opt in self.model.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        for name, scheduler in self.schedulers.items():
            scheduler.load_state_dict(state["schedulers"][name])
        old_config = info.get("config") or {}
        if any(old_config.get(k) != getattr(self.config, k) for k in ("n_epochs", "n_epochs_decay")):
            for scheduler in self.schedulers.values():
                refresh_learning_rate(scheduler)  # the schedule was lengthened: rates from the new one
        self.runtime.amp.load_state_dict(state.get("amp") or {})
        self.model.load_extra_state(state.get("extra") or {})
        set_rng_state(state["rng"])
        self.epoch, self.epoch_iter = int(info["epoch"]), int(info["epoch_iter"])
        self.iteration, self.elapsed = int(info["iteration"]), float(info.get("elapsed", 0.0))
        self._saved = (self.epoch, self.iteration)
        self._load_rank_state(state.get("rank_states") or [], info)

    def _load_rank_state(self, rank_states: Sequence[Mapping[str, Any]], info: Mapping[str, Any]) -> None:
        """Each rank continues its own random streams (and image pools) when the checkpoint has
        them; a rank the saved run did not have gets fresh streams of its own. With another
        global batch (another number of processes), the position in the epoch is converted:
        the images seen so far are not shown again, bar at most one batch."""
        rank = self.dist.rank
        if rank > 0:
            own = rank_states[rank - 1] if rank - 1 < len(rank_states) else None
            if own is not None:
                set_rng_state(own["rng"])
                if own.get("extra"):
                    self.model.load_extra_state(own["extra"])
            else:
                seed_everything(distributed.rank_seed(self.config.seed or 0, rank, self.iteration))
        old_world = int(info.get("world_size", 1))
        old_batch = int((info.get("config") or {}).get("batch_size", self.config.batch_size))
        old_global, new_global = old_batch * old_world, self.config.batch_size * self.dist.world_size
        if old_world != self.dist.world_size:
            self._notes.append(
                f"the run had {old_world} process{'es' if old_world != 1 else ''}, it resumes with "
                f"{self.dist.world_size}: global batch {new_global}"
                + (f" (was {old_global}; --batch-size {old_global // self.dist.world_size} keeps it)"
                   if old_global != new_global and old_global % self.dist.world_size == 0 else
                   f" (was {old_global})" if old_global != new_global else " as before")
            )
        if old_global != new_global and self.epoch_iter:
            self.epoch_iter = self.epoch_iter * old_global // new_global

    def export(self) -> dict[str, Path]:
        written = {}
        preprocess = dict(self.data.preprocess)
        for direction, gen in self.model.export_generators().items():
            path = self.run.weights_file(self.model.task, direction)
            metadata = WeightsMetadata(
                generator=gen.config,
                task=self.model.task,
                direction=direction,
                preprocess=preprocess,
                eval_mode=gen.eval_mode,
                source=f"trained: {self.run.root.name}, epoch {self.epoch}, iteration {self.iteration}",
            )
            save_generator(path, gen.state_dict, metadata)
            written[direction] = path
        return written

    # -- the loop
    def fit(self, *, stop_after_epochs: int | None = None) -> TrainResult:
        """Train to the end (or ``stop_after_epochs`` more epochs); returns where things are.
        Under torchrun every process calls this; it joins and leaves the process group."""
        try:
            return self._fit(stop_after_epochs=stop_after_epochs)
        except (TrainingInterrupted, distributed.RankFailed):
            raise
        except Exception as exc:
            if not isinstance(exc, Img2ImgError) and distributed.is_peer_failure(exc):
                raise self._peer_failure() from exc
            distributed.record_failure(exc)
            raise
        finally:
            if self._owns_group:
                distributed.destroy_process_group()

    def _peer_failure(self) -> Img2ImgError:
        """Another process of the run failed (it says why): rank 0 says where things stand."""
        if self._saved is not None:
            where = (
                f"the last checkpoint, {self.run.latest} (iteration {self._saved[1]}), is intact: "
                f"resume with: img2img train {self.config.task} --resume {self.run.root}"
            )
        else:
            where = "no checkpoint had been written yet"
        return distributed.RankFailed(
            f"stopped because another process of this run failed (see its message); {where}",
            quiet=not self.dist.is_main,
        )

    def _stop_requested(self, signals: StopSignals) -> bool:
        """A stop was asked for (SIGINT/SIGTERM) in any process: they all stop after the same
        iteration, and rank 0's checkpoint has every rank at that iteration."""
        if not distributed.active():
            return signals.requested
        signum = distributed.max_over_ranks(signals.signum or 0, self.device)
        if signum and signals.signum is None:
            signals.signum = signum
        return bool(signum)

    def _fit(self, *, stop_after_epochs: int | None = None) -> TrainResult:
        self._prepare()
        cfg = self.config
        total = cfg.total_epochs
        self.progress = Progress(
            total_epochs=total,
            iters_per_epoch=self.iters_per_epoch,
            batch_size=cfg.batch_size * self.dist.world_size,
            stream=self.stream,
            enabled=self.dist.is_main,
            live=self.live,
        )
        metrics = MetricsLog(self.run.metrics, self.model.loss_names, self.model.val_names)
        tensorboard = None
        if self.dist.is_main:
            metrics.open(keep_until=self.iteration if self.resume else None)
            if cfg.tensorboard:
                tensorboard = TensorBoard(self.run.tensorboard, purge_step=self.iteration if self.resume else None)
        self._announce()
        fixed_samples = self._fixed_samples()

        stop_at = total if stop_after_epochs is None else min(total, self.epoch + stop_after_epochs)
        session_start = time.perf_counter()
        elapsed_before = self.elapsed
        interval_sums: dict[str, torch.Tensor] = {}
        interval_count = 0
        try:
            with StopSignals(self.log) as signals:
                self.progress.start(self.iteration)
                while self.epoch < stop_at:
                    epoch_sums: dict[str, torch.Tensor] = {}
                    epoch_count = 0
                    self.sampler.set_epoch(self.epoch, self.epoch_iter * cfg.batch_size)
                    self.model.train()
                    for batch in self._batches():
                        losses = self.model.train_step(self.runtime.to_device(batch))
                        self.runtime.amp.end_iteration()
                        self.iteration += 1
                        self.epoch_iter += 1
                        interval_count += 1
                        epoch_count += 1
                        for name, value in losses.items():
                            interval_sums[name] = interval_sums.get(name, 0) + value
                            epoch_sums[name] = epoch_sums.get(name, 0) + value
                        self.progress.update(
                            epoch=self.epoch, epoch_iter=self.epoch_iter, iteration=self.iteration, losses=losses
                        )
                        if self.iteration % cfg.print_freq == 0:
                            means = {k: float(v) / interval_count for k, v in interval_sums.items()}
                            means = distributed.mean_over_ranks(means, self.device)  # over all images
                            interval_sums, interval_count = {}, 0
                            self.elapsed = elapsed_before + time.perf_counter() - session_start
                            if self.dist.is_main:
                                metrics.write(self._row("iter", means))
                                if tensorboard:
                                    tensorboard.scalars(means, self.iteration, "train")
                            self.progress.interval(
                                epoch=self.epoch, epoch_iter=self.epoch_iter, iteration=self.iteration, losses=means
                            )
                        stop = self._stop_requested(signals)
                        if self.iteration % cfg.save_latest_freq == 0 or stop:
                            self.elapsed = elapsed_before + time.perf_counter() - session_start
                            self.save_checkpoint()
                        if stop:
                            self._stop(signals)

                    # end of the epoch: validate, draw samples, step the schedules, checkpoint
                    epoch_means = {k: float(v) / max(1, epoch_count) for k, v in epoch_sums.items()}
                    epoch_means = distributed.mean_over_ranks(epoch_means, self.device)
                    interval_sums, interval_count = {}, 0  # log intervals restart with each epoch
                    self.last_val = self._validate()
                    self.epoch += 1
                    self.epoch_iter = 0
                    self.elapsed = elapsed_before + time.perf_counter() - session_start
                    if self.dist.is_main:
                        metrics.write(self._row("epoch", {**epoch_means, **self.last_val}))
                        if tensorboard and self.last_val:
                            tensorboard.scalars(self.last_val, self.iteration, "val")
                        self._write_samples(fixed_samples, tensorboard)
                    for scheduler in self.schedulers.values():
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore", UserWarning)
                            scheduler.step()
                    self.log(
                        f"epoch {self.epoch}/{total} done ({self.iteration} iterations, "
                        f"{format_duration(self.elapsed)})"
                        + "".join(f" {k} {v:.4g}" for k, v in self.last_val.items())
                    )
                    keep = self.epoch % cfg.save_epoch_freq == 0 or self.epoch == total
                    self.save_checkpoint(keep_epoch=keep)
                    self._write_report("in progress")
                    if self._stop_requested(signals):
                        self._stop(signals)
        finally:
            self.progress.stop()
            if tensorboard:
                tensorboard.close()
            self._write_report("finished" if self.epoch >= total else "interrupted")
        weights = {
            direction: self.run.weights_file(self.model.task, direction)
            for direction in self.model.export_generators()
        }
        result = TrainResult(self.run.root, weights, self.epoch, self.iteration, self.last_val, self.elapsed)
        if self.dist.is_main:
            self._summary(result, finished=self.epoch >= total)
        return result

    def _write_report(self, status: str) -> None:
        """RUN/report.html (rank 0). A report that cannot be written is a note, never the end
        of the run; without matplotlib the note comes once."""
        if not self.dist.is_main or self._report_disabled or not self.run.config.exists():
            return
        from img2img.report import matplotlib_missing, write_report

        try:
            if (missing := matplotlib_missing()) is not None:
                self._report_disabled = True
                self.log(f"note: no report.html: {missing}")
                return
            write_report(self.run.root, status=status)
        except Exception as exc:  # noqa: BLE001 - the report must never stop training
            self.log(f"note: report.html not written: {type(exc).__name__}: {exc}")

    def _batches(self) -> Iterator[Mapping[str, Any]]:
        """The loader's batches; a worker's DatasetError comes out as the error it was."""
        from img2img.errors import DatasetError

        try:
            yield from self.loader
        except DatasetError:
            raise
        except Exception as exc:
            text = str(exc)
            if "DatasetError" in text:
                lines = [line for line in text.splitlines() if line.strip()]
                message = lines[-1].split("DatasetError:", 1)[-1].strip()
                raise DatasetError(message) from None
            raise

    def _stop(self, signals: StopSignals) -> None:
        self.progress.stop()
        interrupted = TrainingInterrupted(
            f"interrupted ({signal.Signals(signals.signum or signal.SIGINT).name}) at epoch "
            f"{self.epoch + 1}, iteration {self.iteration}; checkpoint written to {self.run.latest}; "
            f"resume with: img2img train {self.model.task} --resume {self.run.root}",
            exit_code=signals.exit_code,
        )
        interrupted.quiet = not self.dist.is_main  # rank 0 says it for all
        raise interrupted

    def _row(self, scope: str, values: Mapping[str, float]) -> dict[str, Any]:
        first = next(iter(self.model.optimizers.values()))
        return {
            "scope": scope,
            "epoch": self.epoch if scope == "epoch" else self.epoch + 1,
            "iteration": self.iteration,
            "elapsed_s": round(self.elapsed, 2),
            "lr": float(first.param_groups[0]["lr"]),
            **values,
        }

    def _announce(self) -> None:
        cfg = self.config
        verb = "resuming" if self.resume else "training"
        where = f" from epoch {self.epoch + 1}, iteration {self.iteration}" if self.resume else ""
        self.log(f"{verb} {self.model.task} in {self.run.root}{where}")
        self.log(f"  data: {self.data.description}")
        for warning in self.data.warnings:
            self.log(f"  warning: {warning}")
        speed = [str(self.device)]
        if self.runtime.amp.enabled:
            speed.append(f"{cfg.amp_dtype} autocast")
        if self.runtime.channels_last:
            speed.append("channels-last")
        if self.runtime.compile:
            speed.append("compiled")
        workers = self.loader.num_workers
        speed.append(f"{workers} loader worker{'s' if workers != 1 else ''}")
        batch = f"batch {cfg.batch_size}"
        if self.dist.world_size > 1:
            processes = self.dist.world_size
            batch += f" per process x {processes} processes = {cfg.batch_size * processes}"
            speed.insert(0, "DDP " + ("NCCL" if self.device.type == "cuda" else "gloo"))
            if self.runtime.sync_bn:
                speed.append("SyncBatchNorm")
        self.log(
            f"  {cfg.total_epochs} epoch{'s' if cfg.total_epochs != 1 else ''} x {self.iters_per_epoch} iterations ({batch}), "
            f"seed {cfg.seed}, {', '.join(speed)}"
        )
        for note in self._notes:
            self.log(f"  note: {note}")

    def _fixed_samples(self) -> list[Mapping[str, Any]]:
        if self.val_loader is None or not self.config.n_samples:
            return []
        samples = []
        for index in range(min(self.config.n_samples, len(self.data.val))):
            batch = self.val_loader.collate_fn([self.data.val[index]])
            samples.append(batch)
        return samples

    def _validate(self) -> dict[str, float]:
        if self.val_loader is None:
            return {}
        with torch.random.fork_rng(devices=self._rng_devices()), torch.no_grad():
            return self.model.validate(self.runtime.to_device(batch) for batch in self.val_loader)

    def _rng_devices(self) -> list[int]:
        return [self.device.index or 0] if self.device.type == "cuda" else []

    def _write_samples(self, samples: list[Mapping[str, Any]], tensorboard: TensorBoard | None) -> None:
        if not samples:
            return
        with torch.random.fork_rng(devices=self._rng_devices()), torch.no_grad():
            rows = []
            for batch in samples:
                rows += self.model.sample_rows(self.runtime.to_device(batch))
        grid = image_grid(rows)
        path = self.run.sample_file(self.epoch)
        save_png(grid, path)
        if tensorboard:
            tensorboard.image("samples", grid, self.iteration)

    def _summary(self, result: TrainResult, *, finished: bool) -> None:
        lines = [
            "",
            f"{'finished' if finished else 'stopped'}: {self.model.task}, {result.epochs} epoch"
            f"{'s' if result.epochs != 1 else ''}, "
            f"{result.iterations} iterations, {format_duration(result.seconds)}",
        ]
        for direction, path in result.weights.items():
            lines.append(f"  weights ({direction}): {path}")
        if result.val_metrics:
            source = {"held-out": " (held-out training images)", "train": " (training images)"}
            figures = ", ".join(f"{k} {v:.4g}" for k, v in result.val_metrics.items())
            lines.append(f"  validation: {figures}{source.get(self.data.val_source, '')}")
        last_sample = self.run.sample_file(self.epoch)
        if last_sample.exists():
            lines.append(f"  samples:    {last_sample}")
        lines.append(f"  metrics:    {self.run.metrics}")
        report_page = self.run.root / "report.html"  # written just before, unless matplotlib is missing
        if report_page.is_file():
            lines.append(f"  report:     {report_page}")
        if not finished:
            lines.append(f"  continue:   img2img train {self.model.task} --resume {self.run.root}")
        for path in result.weights.values():  # one per direction a run exports
            lines.append(f"  translate:  img2img translate INPUT... --model {path} --out-dir OUT")
        self.log("\n".join(lines))
