"""The scores. Statistics come from well-kept libraries, so that they mean what the field means:

- FID, KID and IS: torch-fidelity's own functions (``fid_features_to_statistics`` +
  ``fid_statistics_to_metric``, ``kid_features_to_metric``, ``isc_features_to_metric``) on
  features from :mod:`img2img.eval.inception`, with torch-fidelity's defaults; KID's subset
  size is capped to the smaller set (as the KID paper's code and clean-fid do). A score or a
  spread that cannot be estimated at the sample size is None with a note saying why.
- PSNR and SSIM: scikit-image (``peak_signal_noise_ratio``, ``structural_similarity``), per
  image pair on [0, 1] floats, averaged over pairs.
- LPIPS: torchmetrics' LPIPS network (AlexNet variant, v0.1 linear layers) with weights we load.

Every function returns a dict with the score(s) and the settings that produced them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from img2img.errors import UsageError, WeightsError
from img2img.eval._deps import require, version_of

UNPAIRED = ("fid", "kid", "is")
PAIRED = ("psnr", "ssim", "lpips")
ALL = UNPAIRED + PAIRED

FID_FEW_SAMPLES = 2048  # below the feature dimension the covariance is rank-deficient: FID is biased
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
KID_DEGREE, KID_COEF0 = 3, 1  # polynomial kernel (x.y / d + 1)^3, gamma = 1 / d
IS_SPLITS = 10
RNG_SEED = 2020  # torch-fidelity's default seed for KID subsets and IS shuffling

# SSIM as Wang et al. (2004) define it and scikit-image implements it with gaussian_weights:
# an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, population covariances, on
# [0, 1] data; colour images are the mean of the per-channel SSIMs.
SSIM_SETTINGS = {
    "window": "gaussian",
    "win_size": 11,
    "sigma": 1.5,
    "K1": 0.01,
    "K2": 0.03,
    "use_sample_covariance": False,
    "data_range": 1.0,
    "colour": "mean of per-channel SSIM (RGB), or the gray channel",
}


def _library(name: str) -> dict:
    return {"library": name, "version": version_of(name)}


# --- unpaired: FID, KID, IS --------------------------------------------------------------------


def fid(fake: torch.Tensor, real: torch.Tensor) -> dict:
    """Fréchet Inception Distance (Heusel et al., 2017) between (N, 2048) float32 pool3
    features, by torch-fidelity. UsageError with fewer than 2 samples on either side."""
    module = require("torch_fidelity.metric_fid")
    _need(2, "FID", fake, real)
    projected = len(fake) + len(real) + 1 < fake.shape[1]
    if projected:
        fake, real = span_coordinates(fake, real)
    stats_fake = module.fid_features_to_statistics(fake)
    stats_real = module.fid_features_to_statistics(real)
    value = module.fid_statistics_to_metric(stats_fake, stats_real, False)[module.KEY_METRIC_FID]
    out = {"value": value, "feature": "pool3 (2048)", **_library("torch-fidelity")}
    if projected:
        out["computed_in"] = f"the {fake.shape[1]}-dimensional span of the samples (exact; see README)"
    if min(len(fake), len(real)) < FID_FEW_SAMPLES:
        out["note"] = (
            f"FID on fewer than {FID_FEW_SAMPLES} samples is biased upwards and not comparable "
            "across test-set sizes; KID is the comparable figure"
        )
    return out


def span_coordinates(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two sample sets in coordinates of an orthonormal basis Q of the subspace that holds
    both sets' centred samples and the difference of their means: float64 (N, k) tensors with
    k <= N_a + N_b + 1.

    FID is invariant under this change of basis: means, covariances and traces rotate, both
    covariances live inside span(Q), so the nonzero eigenvalues of sigma_a @ sigma_b (whose
    square roots FID sums) are those of the projected product. With fewer samples than the
    2048 feature dimensions this turns torch-fidelity's 2048 x 2048 eigenvalue problem (tens of
    seconds on a CPU) into a k x k one (milliseconds), with the same value to rounding."""
    a64, b64 = a.double(), b.double()
    mean_a, mean_b = a64.mean(0), b64.mean(0)
    spanning = torch.cat([a64 - mean_a, b64 - mean_b, (mean_a - mean_b).unsqueeze(0)])
    q, _ = torch.linalg.qr(spanning.T)  # (d, k) orthonormal columns spanning all of it
    return a64 @ q, b64 @ q


def kid(
    fake: torch.Tensor, real: torch.Tensor, *, subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE
) -> dict:
    """Kernel Inception Distance (Bińkowski et al., 2018): unbiased MMD² with the cubic
    polynomial kernel over ``subsets`` random subsets, mean ± std, by torch-fidelity.

    The subset size is ``min(subset_size, len(fake), len(real))``, as in the paper's code and
    clean-fid (torch-fidelity refuses sets smaller than the subset size); each subset is drawn
    without replacement with torch-fidelity's seed. When both sets are no larger than that size
    every subset is the whole of both sets: the value is the unbiased MMD² of the full sets and
    there is no spread to estimate, so ``std`` is None and a ``note`` says why. UsageError with
    fewer than 2 samples on either side (the unbiased estimator needs 2)."""
    module = require("torch_fidelity.metric_kid")
    _need(2, "KID", fake, real)
    size = min(subset_size, len(fake), len(real))
    whole = size == len(fake) and size == len(real)
    used = 1 if whole else subsets  # every draw would be the same subsets: one is the same mean
    result = module.kid_features_to_metric(
        fake, real,
        kid_subsets=used, kid_subset_size=size, kid_kernel="poly", kid_kernel_poly_degree=KID_DEGREE,
        kid_kernel_poly_gamma=None, kid_kernel_poly_coef0=KID_COEF0, rng_seed=RNG_SEED, verbose=False,
    )  # fmt: skip
    out = {
        "value": result[module.KEY_METRIC_KID_MEAN],
        "std": None if whole else result[module.KEY_METRIC_KID_STD],
        "subsets": used,
        "subset_size": size,
        "subset_size_requested": subset_size,
        "kernel": f"polynomial, degree {KID_DEGREE}, gamma 1/{fake.shape[1]}, coef0 {KID_COEF0}",
        "seed": RNG_SEED,
        **_library("torch-fidelity"),
    }
    if whole:
        out["note"] = (
            f"KID on {len(fake)} fake and {len(real)} real images: subsets of {size} are the whole sets, so the value "
            "is the unbiased MMD² of the full sets and no spread can be estimated (std null); "
            f"a std needs more than {size} images on one side"
        )
    elif size < subset_size:
        out["note"] = (
            f"KID subsets of {size} images instead of {subset_size} (the smaller set has {size}): the value stays "
            f"unbiased; its std is that of {size}-image subsets, not comparable with published ± figures"
        )
    return out


IS_MIN_PER_SPLIT = 2  # a split of one image scores exactly 1 whatever the image


def inception_score(logits: torch.Tensor, *, splits: int = IS_SPLITS) -> dict:
    """Inception Score (Salimans et al., 2016) of (N, 1008) unbiased logits, mean ± std over
    ``splits`` splits of the shuffled samples, by torch-fidelity (split i holds samples
    [i*N//splits, (i+1)*N//splits), its defaults: 10 splits, seed 2020).

    Not estimated (``value`` and ``std`` None, with a ``note``) when a split would hold fewer
    than :data:`IS_MIN_PER_SPLIT` images, i.e. fewer than ``2 * splits`` samples: a split of one
    image scores exactly 1. With fewer than 1008 images a split (the number of classes) the
    score is capped by the split's size (IS <= images per split) and a note says so."""
    module = require("torch_fidelity.metric_isc")
    _need(1, "IS", logits)
    out = {"splits": splits, "feature": "logits without bias (1008)", "seed": RNG_SEED, **_library("torch-fidelity")}
    per_split = len(logits) // splits
    if per_split < IS_MIN_PER_SPLIT:
        return {
            "value": None, "std": None, **out,
            "note": (
                f"IS not estimated on {len(logits)} images: it needs at least {IS_MIN_PER_SPLIT * splits} "
                f"({splits} splits of at least {IS_MIN_PER_SPLIT}; a split of one image scores exactly 1)"
            ),
        }  # fmt: skip
    result = module.isc_features_to_metric(logits, splits, True, RNG_SEED)
    out = {"value": result[module.KEY_METRIC_ISC_MEAN], "std": result[module.KEY_METRIC_ISC_STD], **out}
    if per_split < logits.shape[1]:
        out["note"] = (
            f"IS on {len(logits)} images: each of the {splits} splits holds {_split_sizes(len(logits), splits)}, "
            f"and a split's IS cannot exceed its image count, so the score is biased low and only comparable "
            f"at the same number of images (published IS uses 50,000)"
        )
    return out


def _split_sizes(count: int, splits: int) -> str:
    low, high = count // splits, -(-count // splits)
    return f"{low}" if low == high else f"{low} or {high}"


# The fewest images each set-level score takes on each side (fake and real): a covariance, and
# KID's unbiased MMD (which leaves out the diagonal), need two samples; IS needs one split.
MINIMUM_IMAGES = {"fid": 2, "kid": 2, "is": 1}


def check_image_counts(metrics, fake: int, real: int | None, where: str) -> None:
    """UsageError, before any work, when ``fake`` images (to be translated or given) or ``real``
    ones (None: no real set) are too few for one of ``metrics`` (MINIMUM_IMAGES; IS counts
    only the fakes). ``where`` says where the images come from, e.g. "the validation split
    (--val-size 1)". The one limit the scores themselves (``fid``, ``kid``,
    ``inception_score``), ``img2img eval`` and training's ``--val-metrics`` all check."""
    for metric in metrics:
        minimum = MINIMUM_IMAGES.get(metric)
        if minimum is None:
            continue
        sides = [("translated", fake)] + ([("real", real)] if real is not None and metric != "is" else [])
        for side, count in sides:
            if count < minimum:
                raise UsageError(f"{metric.upper()} needs at least {minimum} {side} images; {where} has {count}")


def _need(minimum: int, metric: str, *features: torch.Tensor) -> None:
    minimum = MINIMUM_IMAGES.get(metric.lower(), minimum)
    for f in features:
        if len(f) < minimum:
            raise UsageError(f"{metric} needs at least {minimum} images on each side, got {len(f)}")


# --- paired: PSNR, SSIM, LPIPS -----------------------------------------------------------------


def psnr(fake: np.ndarray, target: np.ndarray) -> float:
    """PSNR in dB of one pair of float (H, W[, C]) images in [0, 1] (data range 1); inf when
    they are identical."""
    if np.array_equal(fake, target):
        return math.inf
    metrics = require("skimage.metrics")
    return float(metrics.peak_signal_noise_ratio(target, fake, data_range=1.0))


def ssim(fake: np.ndarray, target: np.ndarray) -> float:
    """SSIM of one pair of float64 (H, W) or (H, W, C) images in [0, 1], with
    :data:`SSIM_SETTINGS`; ValueError for images smaller than the window."""
    metrics = require("skimage.metrics")
    if min(fake.shape[:2]) < SSIM_SETTINGS["win_size"]:
        raise ValueError(f"smaller than SSIM's {SSIM_SETTINGS['win_size']}x{SSIM_SETTINGS['win_size']} window")
    return float(
        metrics.structural_similarity(
            target, fake,
            gaussian_weights=True, sigma=SSIM_SETTINGS["sigma"], win_size=SSIM_SETTINGS["win_size"],
            K1=SSIM_SETTINGS["K1"], K2=SSIM_SETTINGS["K2"], use_sample_covariance=False,
            data_range=SSIM_SETTINGS["data_range"], channel_axis=2 if fake.ndim == 3 else None,
        )
    )  # fmt: skip


# LPIPS' AlexNet (torchmetrics' and the lpips package's alike) needs a side of at least 31
# pixels: conv1 (11x11, stride 4, padding 2) gives 7 cells there, and two 3x3 stride-2 max pools
# bring that down to 1; at 30 the second pool has nothing left. Neither library resizes its
# input (LPIPS compares at the image's own scale), so smaller pairs are left out of LPIPS.
LPIPS_MIN_SIDE = 31


def paired_size_limits(metrics) -> dict[str, int]:
    """Metric -> the smallest image side (pixels) it scores a pair at: SSIM its window, LPIPS
    its network's input. PSNR has none. A smaller pair is left out of that metric only."""
    limits = {"ssim": SSIM_SETTINGS["win_size"], "lpips": LPIPS_MIN_SIDE}
    return {m: limits[m] for m in metrics if m in limits}


class LPIPS:
    """LPIPS (Zhang et al., CVPR 2018), AlexNet variant with the v0.1 linear layers: torchmetrics'
    network, built without its downloads, with weights from :mod:`img2img.eval.pretrained`."""

    def __init__(self, tensors: dict, *, path: Path | str, device: torch.device):
        module = require("torchmetrics.functional.image.lpips")
        net = module._LPIPS(pretrained=False, net="alex", pnet_rand=True, use_dropout=True)
        expected = {k: v for k, v in net.state_dict().items() if not k.startswith("lins.")}
        from img2img.eval.pretrained import check_layout

        check_layout(tensors, expected, Path(path), "LPIPS AlexNet weights")
        net.load_state_dict(tensors, strict=False)  # lins.* share the lin* modules
        self.net = net.to(device).eval().requires_grad_(False)
        self.device = device

    @torch.inference_mode()
    def __call__(self, fake: np.ndarray, target: np.ndarray) -> float:
        """LPIPS distance of one pair of float (H, W, 3) or (H, W) images in [0, 1]."""
        a, b = (_to_lpips_tensor(x, self.device) for x in (fake, target))
        return float(self.net(a, b, normalize=True).reshape(-1)[0])


def _to_lpips_tensor(x: np.ndarray, device: torch.device) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    t = t.unsqueeze(-1).expand(*t.shape, 3) if t.ndim == 2 else t  # gray: the same plane thrice
    return t.permute(2, 0, 1).unsqueeze(0).to(device)


def lpips_tensors(backbone: dict, linear: dict | None = None) -> dict:
    """The LPIPS network's state dict from its published parts: ``backbone`` either a full LPIPS
    state dict (``net.slice1.0.weight`` ... ``lin4.model.1.weight``) or torchvision's AlexNet
    (``features.0.weight`` ..., or without the ``features.`` prefix), plus ``linear`` (lpips'
    v0.1 ``alex.pth``: ``lin0.model.1.weight`` ...) when the backbone has none."""
    if any(k.startswith("net.slice") for k in backbone):
        return dict(backbone)
    slices = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}  # torchvision features index -> LPIPS slice
    out = {}
    for key, value in backbone.items():
        name = key.removeprefix("features.")
        index, _, param = name.partition(".")
        if key.startswith("classifier."):
            continue
        if not index.isdigit() or int(index) not in slices:
            raise WeightsError(f"unexpected tensor {key!r} in the AlexNet weights")
        out[f"net.slice{slices[int(index)]}.{index}.{param}"] = value
    out.update(linear or {})
    return out


def lpips_linear_file() -> Path:
    """torchmetrics' copy of lpips' v0.1 linear layers for AlexNet."""
    module = require("torchmetrics.functional.image.lpips")
    path = Path(module.__file__).parent / "lpips_models" / "alex.pth"
    if not path.is_file():
        raise WeightsError(f"{path}: torchmetrics' LPIPS linear layers are missing", hint="reinstall torchmetrics")
    return path


@dataclass
class PairedScores:
    """Per-pair scores, accumulated; ``summary`` averages them."""

    psnr: list[float]
    ssim: list[float]
    lpips: list[float]

    def summary(self, wanted: tuple[str, ...]) -> dict:
        out: dict = {}
        if "psnr" in wanted:
            values = self.psnr
            identical = sum(math.isinf(v) for v in values)
            finite = [v for v in values if not math.isinf(v)]
            out["psnr"] = {
                "value": float(np.mean(finite)) if finite and not identical else (math.inf if identical else None),
                "unit": "dB",
                "pairs": len(values),
                "identical_pairs": identical,
                "data_range": 1.0,
                "definition": "mean over pairs of 10*log10(1/MSE), MSE over all pixels and channels of [0, 1] images",
                **_library("scikit-image"),
            }
        if "ssim" in wanted:
            out["ssim"] = {
                "value": _mean(self.ssim),
                "pairs": len(self.ssim),
                **SSIM_SETTINGS,
                **_library("scikit-image"),
            }
        if "lpips" in wanted:
            out["lpips"] = {
                "value": _mean(self.lpips),
                "pairs": len(self.lpips),
                "net": "alex",
                "lpips_version": "0.1",
                "input": "[0, 1] images scaled to [-1, 1]; gray images repeated to 3 channels",
                **_library("torchmetrics"),
            }
        return out


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None
