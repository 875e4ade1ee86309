"""Training: the shared infrastructure and the trainers.

- :mod:`~img2img.train.trainer`: the :class:`Trainer` (epoch loop, checkpoints, export), and
  beside it :mod:`~img2img.train.resume` (``--resume``), :mod:`~img2img.train.evaluation`
  (validation, scores and sample grids at an epoch's end), :mod:`~img2img.train.reporting`
  (opening lines, status.json, report.html, summary) and :mod:`~img2img.train.failures` (the
  errors that end a run that goes wrong);
- :mod:`~img2img.train.model`: what a trainer provides (:class:`TrainableModel`, :class:`TrainData`);
- :mod:`~img2img.train.runtime`: devices, precision (AMP), channels-last, loader-worker defaults;
- :mod:`~img2img.train.run_folder`: the run folder and its config.json, ``--resume`` config;
- :mod:`~img2img.train.signals`: stopping on SIGINT/SIGTERM;
- :mod:`~img2img.train.schedules`, :mod:`~img2img.train.samples`, :mod:`~img2img.train.checkpoint`,
  :mod:`~img2img.train.progress`, :mod:`~img2img.train.distributed`;
- :mod:`~img2img.train.pix2pix`, :mod:`~img2img.train.cyclegan`: the trainers.

From Python::

    from img2img.train.config import Pix2PixConfig
    from img2img.train import train_pix2pix

    result = train_pix2pix(Pix2PixConfig(data="datasets/facades", n_epochs=5, n_epochs_decay=5))
    print(result.weights["AtoB"])

and likewise ``train_cyclegan(CycleGANConfig(data="datasets/horse2zebra"))``, which exports
``weights["AtoB"]`` and ``weights["BtoA"]``.
"""

from img2img.train.cyclegan import CycleGANModel, ImagePool, cyclegan_data, train_cyclegan
from img2img.train.model import ExportedGenerator, TrainableModel, TrainData
from img2img.train.pix2pix import Pix2PixModel, pix2pix_data, train_pix2pix
from img2img.train.run_folder import RunFolder, load_run_config
from img2img.train.runtime import DistInfo, Runtime
from img2img.train.trainer import Trainer, TrainResult

__all__ = [
    "CycleGANModel",
    "DistInfo",
    "ExportedGenerator",
    "ImagePool",
    "Pix2PixModel",
    "RunFolder",
    "Runtime",
    "TrainData",
    "TrainResult",
    "TrainableModel",
    "Trainer",
    "cyclegan_data",
    "load_run_config",
    "pix2pix_data",
    "train_cyclegan",
    "train_pix2pix",
]
