"""The pretrained networks evaluation needs: where their files are, and loading them safely.

Each file is looked for, in order: the path given on the command line (``--inception-weights``,
``--lpips-weights``), img2img's cache (``$IMG2IMG_CACHE/eval``, default ``~/.cache/img2img/eval``),
torch hub's checkpoint folder (``$TORCH_HOME/hub/checkpoints``, where torch-fidelity, pytorch-fid
and torchvision keep theirs), and finally a download into img2img's cache with the project's
download code (img2img.hub.registry: size limits, sha256 check, temporary file renamed into place).
Offline (``IMG2IMG_OFFLINE`` / ``HF_HUB_OFFLINE``) or without a network, a missing file is one
line saying which file, where to put it and how to fetch it elsewhere.

Files are read weights-only: ``.safetensors`` with safetensors, anything else with
``torch.load(weights_only=True)``; nothing from them can run code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from img2img.errors import DownloadError, WeightsError


@dataclass(frozen=True)
class KnownWeights:
    """A published weights file: its names, where it is published and its checksum.

    ``sha256`` is the full digest when known; ``sha256_prefix`` is the part torch hub puts in
    the file name (what ``torch.hub`` itself checks) when only that is published."""

    label: str
    option: str  # the command-line option that names a file explicitly
    filenames: tuple[str, ...]  # the first is the name img2img downloads to
    urls: tuple[str, ...]
    sha256: str | None = None
    sha256_prefix: str | None = None

    def matches(self, digest: str) -> bool:
        if self.sha256:
            return digest == self.sha256
        return bool(self.sha256_prefix) and digest.startswith(str(self.sha256_prefix))


# The TF-ported FID Inception (from inception-2015-12-05.tgz), the file pytorch-fid and
# torch-fidelity both publish (the same bytes under two names).
INCEPTION = KnownWeights(
    label="FID Inception weights (pt_inception-2015-12-05)",
    option="--inception-weights",
    filenames=("pt_inception-2015-12-05-6726825d.pth", "weights-inception-2015-12-05-6726825d.pth"),
    urls=(
        "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
        "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth",
    ),
    sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
)

# LPIPS (AlexNet variant) uses torchvision's ImageNet AlexNet as its backbone; the linear
# layers on top (v0.1) ship inside torchmetrics. torchvision publishes only the sha256 prefix.
ALEXNET = KnownWeights(
    label="LPIPS AlexNet backbone (torchvision alexnet-owt-7be5be79)",
    option="--lpips-weights",
    filenames=("alexnet-owt-7be5be79.pth",),
    urls=("https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",),
    sha256_prefix="7be5be79",
)


@dataclass(frozen=True)
class FoundWeights:
    """A weights file to use, where it was found and its sha256 (which identifies it in the
    feature cache and in every score's settings)."""

    path: Path
    source: str  # "option", "img2img cache", "torch hub cache" or "downloaded"
    sha256: str
    standard: bool  # the published file (checksum matches), not a stand-in

    def to_dict(self) -> dict:
        return {"file": str(self.path), "source": self.source, "sha256": self.sha256, "standard": self.standard}


def eval_cache_dir() -> Path:
    from img2img.files.cache import cache_dir

    return cache_dir() / "eval"


def torch_hub_checkpoints() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` (default ``~/.cache/torch/hub/checkpoints``)."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) for this process."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        from img2img.files.downloads import file_sha256 as digest

        _DIGESTS[key] = digest(path)
    return _DIGESTS[key]


def find_weights(
    known: KnownWeights,
    explicit: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    progress: bool | None = None,
) -> FoundWeights:
    """Locate ``known``'s file in the documented order (see the module docstring).

    An explicit file may hold other weights of the same layout (a fine-tuned or test network):
    it is used, and marked ``standard=False`` unless its checksum is the published one. A file
    found in a cache under the published name must match the published checksum.
    Raises WeightsError (a missing or corrupt file) or DownloadError (offline, failed)."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise WeightsError(f"{path}: no such file ({known.option})")
        digest = file_sha256(path)
        return FoundWeights(path, "option", digest, known.matches(digest))
    for source, folder in (("img2img cache", eval_cache_dir()), ("torch hub cache", torch_hub_checkpoints())):
        for name in known.filenames:
            path = folder / name
            if path.is_file():
                digest = file_sha256(path)
                if not known.matches(digest):
                    raise WeightsError(
                        f"{path}: sha256 {digest} is not the published {known.label}; the file is "
                        f"corrupt or another network: delete it (it is fetched again), or pass it "
                        f"with {known.option} to use it anyway"
                    )
                return FoundWeights(path, source, digest, True)
    if not download:
        raise missing_weights_error(known, "not downloading")
    return FoundWeights(*_download_known(known, progress=progress))


def missing_weights_error(known: KnownWeights, why: str) -> DownloadError:
    target = eval_cache_dir() / known.filenames[0]
    return DownloadError(
        f"{known.label} not found and cannot be downloaded ({why}): put {known.filenames[0]} in "
        f"{target.parent}/ (or {torch_hub_checkpoints()}/), or pass it with {known.option} FILE; "
        f"on a connected machine fetch it with `curl -L -o {known.filenames[0]} {known.urls[0]}`"
    )


def _download_known(known: KnownWeights, *, progress: bool | None) -> tuple[Path, str, str, bool]:
    from img2img.files import downloads

    target = eval_cache_dir() / known.filenames[0]
    if downloads.is_offline():
        raise missing_weights_error(known, f"offline: {downloads.offline_variable()} is set")
    target.parent.mkdir(parents=True, exist_ok=True)
    last: DownloadError | None = None
    for url in known.urls:
        with downloads.temporary_file(target.parent, known.filenames[0]) as partial:
            try:
                downloads.download(
                    url, partial, label=known.filenames[0], sha256=known.sha256, progress=progress,
                    cache_path=target,
                )  # fmt: skip
            except DownloadError as exc:
                last = exc
                continue
            digest = file_sha256(partial)
            if not known.matches(digest):
                last = DownloadError(f"{known.filenames[0]}: download refused: sha256 of {url} is {digest}")
                continue
            os.replace(partial, target)
        return target, "downloaded", digest, True
    assert last is not None
    if "cannot download" in str(last):
        raise missing_weights_error(known, str(last).split("cannot download (", 1)[-1].split(")")[0]) from None
    raise last


# --- loading ---------------------------------------------------------------------------------


def load_tensors(path: Path) -> dict:
    """The tensors of a weights file, read weights-only: a flat name -> tensor dict.

    ``.safetensors`` files are read with safetensors; anything else with
    ``torch.load(weights_only=True)``, which refuses pickled code. A checkpoint that nests its
    state dict under ``state_dict`` is unwrapped. Raises WeightsError naming the file."""
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            tensors = load_file(str(path), device="cpu")
        else:
            tensors = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 -- unpickling errors, truncated zips, bad headers
        from img2img.runtime.devices import is_out_of_memory

        if is_out_of_memory(exc):
            raise  # not the file's fault: the caller says so (img2img.eval.run.out_of_memory)
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"{path}: cannot read weights ({text[:200]})") from None
    if isinstance(tensors, dict) and isinstance(tensors.get("state_dict"), dict):
        tensors = tensors["state_dict"]
    if not isinstance(tensors, dict) or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
        raise WeightsError(f"{path}: not a state dict of tensors")
    return dict(tensors)


def check_layout(tensors: dict, expected: dict, path: Path, label: str) -> None:
    """WeightsError unless ``tensors`` has exactly ``expected``'s keys (BatchNorm's
    num_batches_tracked counters aside) with the same shapes."""
    skip = "num_batches_tracked"
    have = {k for k in tensors if not k.endswith(skip)}
    want = {k for k in expected if not k.endswith(skip)}
    missing, extra = sorted(want - have), sorted(have - want)
    wrong = sorted(k for k in want & have if tuple(tensors[k].shape) != tuple(expected[k].shape))
    if missing or extra or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if extra:
            parts.append(f"{len(extra)} unexpected (e.g. {extra[0]})")
        if wrong:
            k = wrong[0]
            parts.append(
                f"{len(wrong)} of the wrong shape (e.g. {k}: {tuple(tensors[k].shape)}, expected {tuple(expected[k].shape)})"
            )
        raise WeightsError(f"{path}: not {label}: tensors " + "; ".join(parts))
