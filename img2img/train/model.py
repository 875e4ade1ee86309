"""What a trainer (pix2pix, CycleGAN) provides to the shared :class:`~img2img.train.trainer.Trainer`:
its data (:class:`TrainData`), its networks and step (:class:`TrainableModel`), and the
generators it exports; with helpers for the step."""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset

from img2img.models.config import GeneratorConfig
from img2img.models.networks import use_per_image_batch_norm
from img2img.train import distributed
from img2img.train.runtime import Runtime


@dataclass
class ExportedGenerator:
    """A generator to write in the weights format: reference key names, its config, and how
    batch norm is used at inference (see WeightsMetadata.eval_mode)."""

    state_dict: Mapping[str, torch.Tensor]
    config: GeneratorConfig
    eval_mode: bool = True


@dataclass
class TrainData:
    """A trainer's data, checked: datasets yielding dicts of tensors. ``train`` is indexed with
    the ``(index, seed)`` keys of EpochSampler; ``val`` with ints (deterministic transforms)."""

    train: Dataset
    val: Dataset | None
    description: str
    preprocess: Mapping[str, Any] = field(default_factory=dict)
    val_source: str = "val"  # "val", "held-out" (from train), "train" (too few to hold out), "none"
    warnings: Sequence[str] = ()  # about the data, shown when training starts
    # The smallest (width, height) the networks will be given, and where it comes from (for
    # the up-front check of the networks' size constraints); None: not checked.
    input_size: tuple[int, int] | None = None
    input_size_note: str = ""


class TrainableModel:
    """What a trainer (pix2pix, CycleGAN) provides; the :class:`Trainer` does everything else.

    Subclasses set ``networks`` and ``optimizers`` (dicts by name: both are checkpointed, and
    every optimizer gets the configured learning-rate schedule) in ``__init__``, and implement
    ``train_step``, ``validate``, ``sample_rows`` and ``export_generators``. State that is neither
    (an image pool) goes through ``extra_state``/``load_extra_state``.
    """

    task: str = "model"
    loss_names: Sequence[str] = ()
    val_names: Sequence[str] = ()
    networks: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]

    def setup(self, runtime: Runtime) -> None:
        """Called once before training: move networks to the device, wrap them for the step."""
        self.runtime = runtime
        for name, net in self.networks.items():
            self.networks[name] = runtime.place(net)

    def train(self) -> None:
        for net in self.networks.values():
            net.train()

    def train_step(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """One iteration; returns the detached losses named in ``loss_names``."""
        raise NotImplementedError

    def validate(self, batches: Iterable[Mapping[str, Any]]) -> dict[str, float]:
        """Figures named in ``val_names`` over validation batches already on the device."""
        raise NotImplementedError

    def sample_rows(self, batch: Mapping[str, Any]) -> list[list[torch.Tensor]]:
        """Rows of images (C, H, W) in [-1, 1] for the sample grid, e.g. input | output | target."""
        raise NotImplementedError

    def export_generators(self) -> dict[str, ExportedGenerator]:
        """The generators to export, by direction (AtoB, BtoA)."""
        raise NotImplementedError

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        pass


def set_requires_grad(net: nn.Module, requires_grad: bool) -> None:
    for param in net.parameters():
        param.requires_grad_(requires_grad)


@contextlib.contextmanager
def frozen(net: nn.Module) -> Iterator[None]:
    """No parameter gradients for ``net`` inside (the D during the G update)."""
    set_requires_grad(net, False)
    try:
        yield
    finally:
        set_requires_grad(net, True)


def inference_copy(net: nn.Module, *, eval_mode: bool) -> nn.Module:
    """``net`` as `translate` runs its exported weights (dropout off; batch norm with running
    statistics if ``eval_mode``, else per image), sharing its parameters and buffers so that
    it is always up to date."""
    shared = {id(tensor): tensor for tensor in (*net.parameters(), *net.buffers())}
    twin = distributed.revert_sync_batchnorm(copy.deepcopy(net, memo=shared))
    if not eval_mode:
        use_per_image_batch_norm(twin)
    return twin.eval()
