"""Training data, one module per concern:

- :mod:`~img2img.data.images`: which files are images; listing, reading headers, decoding;
- :mod:`~img2img.data.layouts`: folder layouts, pairing by name, the validation split;
- :mod:`~img2img.data.checks`: the up-front dataset check (headers, sizes, batch sizes);
- :mod:`~img2img.data.transforms`: preprocessing (``--preprocess``, crop, flip);
- :mod:`~img2img.data.datasets`: the paired and unpaired datasets;
- :mod:`~img2img.data.sampler`: the resumable, rank-aware :class:`EpochSampler`;
- :mod:`~img2img.data.combine`: ``img2img data combine``.

Paired layouts (pix2pix):

- aligned (the reference's): ``DIR/train/*.jpg``, each image A and B side by side;
- two folders: ``DIR/train/A/x.png`` + ``DIR/train/B/x.png``, paired by file name.

``DIR/val`` (either layout) is the validation split; without one, a slice of train is held out.

Unpaired layout (CycleGAN, the reference's unaligned one): ``DIR/trainA`` and ``DIR/trainB``,
any number of images each; ``DIR/testA`` + ``DIR/testB`` are the validation split, else a slice
of each domain is held out.

Preprocessing follows the reference (``--preprocess``, ``--load-size``, ``--crop-size``, flip),
with torchvision's v2 transforms applied to paired A and B together so that they get the same
crop and flip (unpaired A and B get their own). Randomness comes from a per-sample seed chosen
by :class:`EpochSampler`, so an epoch's batches do not depend on worker count or on where a run
was resumed.

Synthetic datasets for tests and examples are in :mod:`img2img.data.synthetic`.
"""

from img2img.data.checks import check_paired_data, check_unpaired_data
from img2img.data.combine import combine_folders
from img2img.data.datasets import PairedDataset, UnpairedDataset
from img2img.data.images import IMG_EXTENSIONS, is_image_file, list_images, load_image, read_header, read_size
from img2img.data.layouts import Pair, PairedData, UnpairedData
from img2img.data.sampler import EpochSampler
from img2img.data.transforms import MakePowerOf2, Preprocess, ScaleWidth, build_transform, to_tensor

__all__ = [
    "IMG_EXTENSIONS",
    "EpochSampler",
    "MakePowerOf2",
    "Pair",
    "PairedData",
    "PairedDataset",
    "Preprocess",
    "ScaleWidth",
    "UnpairedData",
    "UnpairedDataset",
    "build_transform",
    "check_paired_data",
    "check_unpaired_data",
    "combine_folders",
    "is_image_file",
    "list_images",
    "load_image",
    "read_header",
    "read_size",
    "to_tensor",
]
