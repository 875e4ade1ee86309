"""The :class:`Trainer` every trainer (pix2pix, CycleGAN) shares.

A trainer supplies three things (see :mod:`img2img.train.model`): its data (a
:class:`TrainData`), its networks and its step (a :class:`TrainableModel`). :class:`Trainer`
does the rest: run folder and config.json, devices, AMP, channels-last, torch.compile, the
DataLoader, the epoch loop, learning-rate schedules, checkpoints, SIGINT/SIGTERM
(:mod:`~img2img.train.signals`), progress, metrics.csv, TensorBoard and weights export. It is
rank-aware: under torchrun every rank trains, only rank 0 writes or prints.

What happens around the loop lives beside it: resuming (:mod:`~img2img.train.resume`,
bit-identical on the CPU), validation, scores and sample grids at an epoch's end
(:mod:`~img2img.train.evaluation`), the opening lines, report.html and the closing summary
(:mod:`~img2img.train.reporting`), and the errors that end a run that goes wrong
(:mod:`~img2img.train.failures`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import secrets
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, TextIO

import torch
from torch.utils.data import DataLoader

from img2img.data.sampler import EpochSampler
from img2img.errors import DatasetError, Img2ImgError, TrainingInterrupted, UsageError
from img2img.eval.validation import BestEpoch, ValidationScorer, check_validation_size, parse_metrics, scorer_for
from img2img.files.run_status import StatusWriter
from img2img.models.weights import WeightsMetadata, save_generator
from img2img.runtime.devices import resolve_device
from img2img.testing.hold import hold as test_hold
from img2img.train import distributed, evaluation, failures, reporting, resume
from img2img.train.checkpoint import link_or_copy, rng_state, save_checkpoint, seed_everything
from img2img.train.config import TrainConfig
from img2img.train.divergence import NonFinite, check_iteration, check_state
from img2img.train.model import TrainableModel, TrainData
from img2img.train.progress import MetricsLog, Progress, TensorBoard, format_duration
from img2img.train.run_folder import RunFolder, RunLock, default_run_dir
from img2img.train.runtime import (
    Amp,
    DistInfo,
    Runtime,
    default_amp,
    default_channels_last,
    default_num_workers,
)
from img2img.train.schedules import build_scheduler
from img2img.train.signals import StopSignals, ignore_stop_signals, stop_loader_workers
from img2img.train.size_check import check_network_sizes


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
        self.lock = RunLock(run_dir)  # one process trains in a run folder (rank 0 holds it)
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
        self._report_time = time.monotonic()  # of the session's start, then of its last report.html
        self.status: StatusWriter | None = None  # RUN/status.json (rank 0, once the run folder is ready)
        self._saved: tuple[int, int] | None = None  # (epoch, iteration) of the last checkpoint
        self._created = False  # whether this run created its run folder (a new run)
        self._trained = False  # whether an iteration of this session completed (work to keep)
        self._loaded_from: Path | None = None  # the checkpoint a resumed run started from
        self._loaded_info: dict[str, Any] = {}
        self._notes: list[str] = []  # said when training starts
        self.scorer: ValidationScorer | None = None  # --val-metrics (rank 0)
        self.best = BestEpoch(config.keep_best)  # --keep-best
        self._scored: dict[str, Any] | None = None  # the last scores, for the exported weights
        # The current epoch's loss sums so far (checkpointed: after a resume, metrics.csv's
        # epoch row still covers the whole epoch).
        self._epoch_sums: dict[str, Any] = {}
        self._epoch_count = 0

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
            if self.dist.is_main:  # first: a live run's folder is neither checked nor touched
                self.lock.acquire("--resume" if self.resume else "--out")
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

            # --val-metrics: the extra and the weights files are found now, not at the first validation
            # Too few validation images fail now, not an epoch later (and before the Inception
            # weights are looked for, perhaps downloaded).
            check_validation_size(
                parse_metrics(cfg.val_metrics, cfg.task), self.data.val, task=cfg.task, val_size=cfg.val_size
            )
            self.scorer = scorer_for(cfg, self.device) if self.dist.is_main else None
            seed_everything(cfg.seed)
            self.model = self.model_factory(cfg)
            self.runtime.amp.name_optimizers(self.model.optimizers)
            if self.data.input_size is not None:  # every network takes the sizes training gives it
                check_network_sizes(
                    self.model.networks,
                    cfg,
                    self.data.input_size,
                    size_note=self.data.input_size_note,
                    step=cfg.generator_config.size_multiple,
                )
        self.model.setup(self.runtime)  # DDP broadcasts rank 0's weights: every rank takes part
        self.schedulers = {name: build_scheduler(opt, cfg) for name, opt in self.model.optimizers.items()}
        if self.dist.world_size > 1 and self.dist.rank > 0:
            # Same initial weights everywhere; from here each rank has its own random streams.
            seed_everything(distributed.rank_seed(cfg.seed, self.dist.rank))

        with distributed.agreement(self.dist.rank):
            if self.resume:
                resume.load(self, resume.resume_checkpoint(self))
                if self.epoch >= cfg.total_epochs:
                    raise UsageError(
                        f"--resume {self.run.root}: the run already finished its {cfg.total_epochs} "
                        "epochs (give a larger --n-epochs or --n-epochs-decay to train longer)"
                    )

        workers = cfg.num_workers if cfg.num_workers is not None else default_num_workers(self.device)
        self.sampler = EpochSampler(
            len(self.data.train),
            seed=cfg.seed,
            shuffle=not cfg.serial_batches,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
        )
        self.loader = DataLoader(
            self.data.train,
            batch_size=cfg.batch_size,
            sampler=self.sampler,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0,
            worker_init_fn=ignore_stop_signals if workers > 0 else None,
            generator=torch.Generator(),  # keeps the global RNG untouched by the loader
        )
        self.iters_per_epoch = math.ceil(self.sampler.per_rank / cfg.batch_size)
        self.val_loader = None
        if self.data.val is not None and len(self.data.val) and self.dist.is_main:
            self.val_loader = DataLoader(self.data.val, batch_size=1, shuffle=False, num_workers=0)

        # Every check passed: only now is anything written.
        if self.dist.is_main:
            with self._writing(self.run.root):
                if self.resume:
                    self.run.remove_stale_temporaries()
                    resume.restore_kept_checkpoint(self)
                else:
                    self.run.create(self.overwrite)
                    self._created = True
            with self._writing(self.run.config):
                self.run.write_config(cfg)
            reporting.record_start(self)

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
            "epoch_losses": self._epoch_losses(),
        }

    def _epoch_losses(self) -> dict[str, Any]:
        return {"count": self._epoch_count, "sums": dict(self._epoch_sums)}

    def _load_epoch_losses(self, state: Mapping[str, Any] | None) -> None:
        state = state or {}
        self._epoch_count = int(state.get("count", 0))
        self._epoch_sums = {
            name: value.to(self.device) if isinstance(value, torch.Tensor) else value
            for name, value in (state.get("sums") or {}).items()
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
            "best": self.best.to_dict(),
        }

    def _rank_states(self) -> list[dict[str, Any]]:
        """The RNG states and extra state (image pools) of ranks 1..N-1, gathered on rank 0
        (every rank takes part); rank 0's own are the checkpoint's ``rng`` and ``extra``."""
        if not distributed.active():
            return []
        mine = (
            None
            if self.dist.is_main
            else {"rng": rng_state(), "extra": self.model.extra_state(), "epoch_losses": self._epoch_losses()}
        )
        gathered = distributed.gather_to_main(mine)
        return list(gathered[1:]) if gathered else []

    def save_checkpoint(self, *, keep_epoch: bool = False) -> None:
        """Write ``latest`` (and a kept copy for this epoch) and export the generators: rank 0
        writes, with every rank's random streams."""
        rank_states = self._rank_states()
        if not self.dist.is_main:
            self._saved = (self.epoch, self.iteration)
            return
        try:  # a non-finite state is never saved over the last good one, nor exported
            check_state(self.model.networks)
        except NonFinite as exc:
            raise failures.diverged(self, exc.what, iteration=self.iteration) from None
        state = self._state()
        if rank_states:
            state["rank_states"] = rank_states
        with self._writing(self.run.latest):
            save_checkpoint(self.run.latest, state, self._info())
        self._saved = (self.epoch, self.iteration)
        if keep_epoch:
            with self._writing(self.run.epoch_checkpoint(self.epoch)):
                link_or_copy(self.run.latest, self.run.epoch_checkpoint(self.epoch))
        self.export()
        reporting.record_checkpoint(self)

    @contextlib.contextmanager
    def _writing(self, path: Path) -> Iterator[None]:
        """A file of the run that cannot be written (full disk, read-only folder) becomes one
        line naming it and saying what is intact."""
        try:
            yield
        except OSError as exc:
            raise failures.write_failure(self, path, exc) from None

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
                validation=self._scored if self._scored and self._scored["epoch"] == self.epoch else None,
            )
            with self._writing(path):
                save_generator(path, gen.state_dict, metadata)
            written[direction] = path
        return written

    # -- the loop
    def fit(self, *, stop_after_epochs: int | None = None) -> TrainResult:
        """Train to the end (or ``stop_after_epochs`` more epochs); returns where things are.
        Under torchrun every process calls this; it joins and leaves the process group. However
        it ends, RUN/status.json and report.html say how (rank 0)."""
        try:
            try:
                result = self._run(stop_after_epochs)
            except BaseException as exc:
                reporting.record_end(self, exc)
                raise
            reporting.record_end(self, None)
        finally:
            self.lock.release()  # after status.json has its end: the next run reads it
        return result

    def _run(self, stop_after_epochs: int | None) -> TrainResult:
        """:meth:`_fit`, with what goes wrong turned into one-line errors and the run's
        processes and workers ended."""
        try:
            return self._fit(stop_after_epochs=stop_after_epochs)
        except (TrainingInterrupted, distributed.RankFailed):
            self._remove_unstarted_run()
            raise
        except OSError as exc:  # a file of the run that could not be written (metrics, samples...)
            self._remove_unstarted_run()
            target = failures.written_file(exc, self.run.root)
            if target is None:
                distributed.record_failure(exc)
                raise
            raise failures.write_failure(self, target, exc) from None
        except BaseException as exc:
            self._remove_unstarted_run()
            if not isinstance(exc, Exception):
                raise
            if not isinstance(exc, Img2ImgError) and distributed.is_peer_failure(exc):
                raise failures.peer_failure(self) from exc
            distributed.record_failure(exc)
            raise
        finally:
            # However the run ends (finished, signal, error), its loader workers end with it.
            stop_loader_workers(getattr(self, "loader", None))
            if self._owns_group:
                distributed.destroy_process_group()

    def _remove_unstarted_run(self) -> None:
        """A new run that failed while setting up (before its first iteration completed) leaves
        nothing behind, so that the same command can be given again once the problem is fixed.
        Once training has done work, nothing it wrote is removed, whatever ends the run."""
        if self._created and self._saved is None and not self._trained and self.dist.is_main:
            self.run.remove_new_run()

    def stop_pending(self) -> bool:
        """Whether this process was asked to stop and may leave a long stage at the end of an
        epoch (validation, scores, samples) early: only a single process (with several, the
        stage's collectives need every rank, so they all stop once the epoch has ended)."""
        signals = getattr(self, "_signals", None)
        return signals is not None and signals.requested and not distributed.active()

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
        val_names = [*self.model.val_names, *(self.scorer.names() if self.scorer else [])]
        metrics = MetricsLog(self.run.metrics, self.model.loss_names, val_names)
        tensorboard = None
        if self.dist.is_main:
            metrics.open(keep_until=self.iteration if self.resume else None)
            if cfg.tensorboard:
                tensorboard = TensorBoard(self.run.tensorboard, purge_step=self.iteration if self.resume else None)
        reporting.announce(self)
        fixed_samples = evaluation.fixed_samples(self)

        stop_at = total if stop_after_epochs is None else min(total, self.epoch + stop_after_epochs)
        self._session = (self.elapsed, time.perf_counter())
        interval_sums: dict[str, torch.Tensor] = {}
        interval_count = 0
        try:
            with StopSignals(self.log) as signals:
                self._signals = signals
                self.progress.start(self.iteration)
                while self.epoch < stop_at:
                    self.sampler.set_epoch(self.epoch, self.epoch_iter * cfg.batch_size)
                    self.model.train()
                    for batch in self._batches(signals):
                        test_hold(f"iteration-{self.iteration + 1}")  # off unless a test asks (img2img.testing.hold)
                        try:
                            losses = self.model.train_step(self.runtime.to_device(batch))
                            check_iteration(losses, self.model.networks)
                        except NonFinite as exc:
                            raise failures.diverged(self, exc.what) from None
                        self.runtime.amp.end_iteration()
                        self._trained = True
                        self.iteration += 1
                        self.epoch_iter += 1
                        interval_count += 1
                        self._epoch_count += 1
                        for name, value in losses.items():
                            interval_sums[name] = interval_sums.get(name, 0) + value
                            self._epoch_sums[name] = self._epoch_sums.get(name, 0) + value
                        self.progress.update(
                            epoch=self.epoch, epoch_iter=self.epoch_iter, iteration=self.iteration, losses=losses
                        )
                        if self.iteration % cfg.print_freq == 0:
                            means = {k: float(v) / interval_count for k, v in interval_sums.items()}
                            means = distributed.mean_over_ranks(means, self.device)  # over all images
                            interval_sums, interval_count = {}, 0
                            self._tick()
                            if self.dist.is_main:
                                metrics.write(self._row("iter", means))
                                if tensorboard:
                                    tensorboard.scalars(means, self.iteration, "train")
                            self.progress.interval(
                                epoch=self.epoch, epoch_iter=self.epoch_iter, iteration=self.iteration, losses=means
                            )
                        stop = self._stop_requested(signals)
                        if self.iteration % cfg.save_latest_freq == 0 or stop:
                            self._tick()
                            self.save_checkpoint()
                        if stop:
                            self._stop(signals)

                    interval_sums, interval_count = {}, 0  # log intervals restart with each epoch
                    self._end_epoch(metrics, tensorboard, fixed_samples)
                    if self._stop_requested(signals):
                        self._stop(signals)
        finally:
            self.progress.stop()
            if tensorboard:
                tensorboard.close()
        weights = {
            direction: self.run.weights_file(self.model.task, direction) for direction in self.model.export_generators()
        }
        result = TrainResult(self.run.root, weights, self.epoch, self.iteration, self.last_val, self.elapsed)
        if self.dist.is_main:
            reporting.summary(self, result, finished=self.epoch >= total)
        return result

    def _end_epoch(self, metrics: MetricsLog, tensorboard: TensorBoard | None, fixed_samples: list) -> None:
        """The end of an epoch, in order: the epoch's mean losses, validation, the epoch count,
        metrics.csv and TensorBoard, sample grid, learning-rate schedules, log line, checkpoint
        (kept every --save-epoch-freq epochs and at the last)."""
        cfg = self.config
        epoch_means = {k: float(v) / max(1, self._epoch_count) for k, v in self._epoch_sums.items()}
        epoch_means = distributed.mean_over_ranks(epoch_means, self.device)
        self._epoch_sums, self._epoch_count = {}, 0
        self.last_val = evaluation.validate(self)
        self.last_val.update(evaluation.score(self))  # --val-metrics
        self.epoch += 1
        improved = self.best.update(self.last_val, self.epoch)  # --keep-best
        self.epoch_iter = 0
        self._tick()
        if self.dist.is_main:
            metrics.write(self._row("epoch", {**epoch_means, **self.last_val}))
            if tensorboard and self.last_val:
                tensorboard.scalars(self.last_val, self.iteration, "val")
            evaluation.write_samples(self, fixed_samples, tensorboard)
        for scheduler in self.schedulers.values():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                scheduler.step()
        self.log(
            f"epoch {self.epoch}/{cfg.total_epochs} done ({self.iteration} iterations, "
            f"{format_duration(self.elapsed)})" + "".join(f" {k} {v:.4g}" for k, v in self.last_val.items())
        )
        self.save_checkpoint(keep_epoch=self._keeps_epoch(self.epoch))
        if improved and self.dist.is_main:
            kept = BestEpoch.keep(self.run.latest, self.export_paths())
            self.log(
                f"  best {self.best.metric} so far ({self.best.value:.4g}): kept {', '.join(str(k) for k in kept)}"
            )
        reporting.write_report(self, epoch_end=True)

    def _keeps_epoch(self, epoch: int, total: int | None = None) -> bool:
        """Whether the checkpoint at the end of ``epoch`` is kept as epoch_NNN."""
        total = self.config.total_epochs if total is None else total
        return epoch % self.config.save_epoch_freq == 0 or epoch == total

    def _tick(self) -> None:
        """Bring ``elapsed`` (training seconds over all sessions) up to now."""
        before, start = self._session
        self.elapsed = before + time.perf_counter() - start

    def _batches(self, signals: StopSignals) -> Iterator[Mapping[str, Any]]:
        """The loader's batches. An image that cannot be decoded (it passed the header check:
        truncated data) ends the run as a signal does: checkpoint, then a message naming the
        file and how to resume once it is fixed or removed."""
        iterator = iter(self.loader)
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except Exception as exc:
                # A worker's DatasetError comes re-raised with the worker's traceback as its
                # text (as a DatasetError, or another type if it cannot be rebuilt): its last
                # line is the message.
                text = str(exc)
                if not isinstance(exc, DatasetError) and "DatasetError" not in text:
                    raise
                lines = [line for line in text.splitlines() if line.strip()]
                message = lines[-1].split("DatasetError:", 1)[-1].strip() if lines else text
                raise self._data_failure(DatasetError(message)) from None
            yield batch

    def _data_failure(self, exc: DatasetError) -> DatasetError:
        """Write the checkpoint (one process: with several, the others are mid-iteration) and
        say how to go on."""
        self.progress.stop()
        if not distributed.active():
            self._tick()
            self.save_checkpoint()
        return failures.data_failure(self, exc)

    def _stop(self, signals: StopSignals) -> None:
        self.progress.stop()
        raise failures.interrupted(self, signals.signum, signals.exit_code)

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

    def export_paths(self) -> list[Path]:
        return [self.run.weights_file(self.model.task, d) for d in self.model.export_generators()]
