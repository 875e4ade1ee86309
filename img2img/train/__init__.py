"""Training: the shared infrastructure (:mod:`img2img.train.common`) and the trainers.

From Python::

    from img2img.config import Pix2PixConfig
    from img2img.train import train_pix2pix

    result = train_pix2pix(Pix2PixConfig(data="datasets/facades", n_epochs=5, n_epochs_decay=5))
    print(result.weights["AtoB"])

and likewise ``train_cyclegan(CycleGANConfig(data="datasets/horse2zebra"))``, which exports
``weights["AtoB"]`` and ``weights["BtoA"]``.
"""

from img2img.train.common import (
    DistInfo,
    ExportedGenerator,
    RunFolder,
    Runtime,
    TrainableModel,
    TrainData,
    Trainer,
    TrainResult,
    load_run_config,
)
from img2img.train.cyclegan import CycleGANModel, ImagePool, cyclegan_data, train_cyclegan
from img2img.train.pix2pix import Pix2PixModel, pix2pix_data, train_pix2pix

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
