"""Images -> Inception features, in batches, with a cache for folders of files.

A folder's features are cached under ``$IMG2IMG_CACHE/eval/features/KEY.safetensors`` (default
``~/.cache/img2img/eval``), where KEY is the sha256 of: every listed file's relative name and
content hash, the resize mode, the Inception weights' sha256 and this module's feature version.
So evaluating ten checkpoints against one test set extracts the test set's features once, and
any change to a file, the weights or the settings misses the cache. Files that could not be
decoded are remembered with their messages and reported again on a hit.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch
from PIL import Image

from img2img.errors import ImageError

FEATURE_VERSION = 1  # bump when the features computed for the same inputs change
DEFAULT_BATCH_SIZE = 32


@dataclass(frozen=True)
class ImageItem:
    """One image to measure: a label for messages, and either a file or a decoded image."""

    label: str
    path: Path | None = None
    image: Image.Image | None = None
    name: str | None = None  # the name relative to its folder (pairing, cache keys)
    half: str | None = None  # "left" or "right": one half of an aligned A|B image


@dataclass
class FeatureSet:
    """Features of a set of images. ``pool``: float32 (N, 2048) pool3 features (FID, KID);
    ``logits``: float32 (N, 1008) unbiased logits (IS); ``names``: the N images' names, in
    order; ``failures``: (label, message) of the images that could not be read."""

    pool: torch.Tensor
    logits: torch.Tensor
    names: list[str]
    failures: list[tuple[str, str]] = field(default_factory=list)
    cache: str = "none"  # "hit", "miss" (written) or "none" (not cacheable)

    def __len__(self) -> int:
        return len(self.names)


def folder_items(folder: Path) -> list[ImageItem]:
    """The images of a folder as ``translate`` finds them: recursively, sorted, hidden files and
    files without an image extension skipped."""
    from img2img.jobs import _walk_folder

    return [ImageItem(label, path=path, name=rel.as_posix()) for label, path, rel in _walk_folder(folder, folder, None)]


def read_item(item: ImageItem, data: bytes | None = None) -> Image.Image:
    """Decode an item (EXIF orientation applied); ImageError names the file."""
    from img2img.imageio import read_image

    if item.image is not None:
        return item.image
    image = read_image(data if data is not None else item.path, name=item.label)
    if item.half is None:
        return image
    width, height = image.size
    if width < 2:
        raise ImageError(f"{item.label}: {width} pixel(s) wide, cannot hold A and B side by side")
    half = width // 2
    return image.crop((0, 0, half, height) if item.half == "left" else (half, 0, 2 * half, height))


def extract(
    items: Iterable[ImageItem],
    inception,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_error: Callable[[str, str], None] | None = None,
    on_done: Callable[[int], None] | None = None,
    read: Callable[[ImageItem], Image.Image] = read_item,
) -> FeatureSet:
    """Features of ``items`` in batches of ``batch_size`` on the inception's device. Images
    that cannot be decoded are reported through ``on_error(label, message)`` and left out."""
    pools, logits, names, failures = [], [], [], []
    batch: list[torch.Tensor] = []
    batch_names: list[str] = []

    def flush() -> None:
        if batch:
            pool, logit = inception.features(batch)
            pools.append(pool)
            logits.append(logit)
            names.extend(batch_names)
            if on_done:
                on_done(len(batch))
            batch.clear()
            batch_names.clear()

    for item in items:
        try:
            prepared = inception.prepare(read(item))
        except ImageError as exc:
            failures.append((item.label, str(exc)))
            if on_error:
                on_error(item.label, str(exc))
            continue
        batch.append(prepared)
        batch_names.append(item.name or item.label)
        if len(batch) >= batch_size:
            flush()
    flush()
    empty = torch.zeros((0, 2048)), torch.zeros((0, 1008))
    return FeatureSet(
        torch.cat(pools) if pools else empty[0], torch.cat(logits) if logits else empty[1], names, failures
    )


# --- the cache ---------------------------------------------------------------------------------


def cache_key(items: list[ImageItem], settings: dict) -> tuple[str, dict[str, bytes | None]]:
    """The cache key of a list of files and the settings, and the files' bytes (read once here,
    decoded from memory afterwards)."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"version": FEATURE_VERSION, **settings}, sort_keys=True).encode())
    contents: dict[str, bytes | None] = {}
    for item in items:
        assert item.path is not None
        try:
            data: bytes | None = item.path.read_bytes()
        except OSError as exc:  # unreadable now: part of the key, reported when decoded
            data = None
            digest.update(f"\n{item.name}|{item.half}\nunreadable {exc.strerror}".encode())
        else:
            digest.update(f"\n{item.name}|{item.half}\n{hashlib.sha256(data).hexdigest()}".encode())
        contents[item.label] = data
    return digest.hexdigest(), contents


def cached_extract(
    items: list[ImageItem],
    inception,
    settings: dict,
    cache_dir: Path | None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_error: Callable[[str, str], None] | None = None,
    on_done: Callable[[int], None] | None = None,
) -> FeatureSet:
    """:func:`extract` for files, through the feature cache in ``cache_dir`` (None: no cache)."""
    if cache_dir is None:
        return extract(items, inception, batch_size=batch_size, on_error=on_error, on_done=on_done)
    key, contents = cache_key(items, settings)
    path = cache_dir / "features" / f"{key}.safetensors"
    found = _load(path)
    if found is not None:
        for label, message in found.failures:
            if on_error:
                on_error(label, message)
        if on_done:
            on_done(len(found))
        return found

    def read(item: ImageItem) -> Image.Image:
        return read_item(item, contents.get(item.label))  # None: read the file, which words the error

    features = extract(items, inception, batch_size=batch_size, on_error=on_error, on_done=on_done, read=read)
    _save(path, features)
    features.cache = "miss"
    return features


def _save(path: Path, features: FeatureSet) -> None:
    from safetensors.torch import save_file

    from img2img.atomic import atomic_path

    meta = json.dumps({"names": features.names, "failures": features.failures})
    try:
        with atomic_path(path) as tmp:
            save_file(
                {"pool": features.pool.contiguous(), "logits": features.logits.contiguous()},
                str(tmp),
                metadata={"img2img_eval": meta},
            )
    except OSError:
        pass  # a read-only cache only costs time


def _load(path: Path) -> FeatureSet | None:
    if not path.is_file():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            meta = json.loads(handle.metadata()["img2img_eval"])
            pool, logits = handle.get_tensor("pool"), handle.get_tensor("logits")
    except Exception:  # noqa: BLE001 -- a damaged cache entry is recomputed, not an error
        return None
    if pool.shape[0] != len(meta["names"]):
        return None
    return FeatureSet(pool, logits, list(meta["names"]), [tuple(f) for f in meta["failures"]], cache="hit")


def batched(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
