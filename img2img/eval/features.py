"""Images -> Inception features, in batches, with a cache for folders of files.

A folder's features are cached under ``$IMG2IMG_CACHE/eval/features/KEY.safetensors`` (default
``~/.cache/img2img/eval``), where KEY is the sha256 of: every listed file's relative name and
content hash, the resize mode, the Inception weights' sha256 and this module's feature version.
So evaluating ten checkpoints against one test set extracts the test set's features once, and
any change to a file, the weights or the settings misses the cache. An entry is untrusted input:
it is checked before use (see "the cache" below) and recomputed with a note when it fails the
checks; files that could not be decoded are decoded again on a hit, so their messages are
today's; a cache that cannot be written only costs time (a note).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch
from PIL import Image

from img2img.errors import ImageError

_log = logging.getLogger(__name__)


FEATURE_VERSION = 1  # bump when the features computed for the same inputs change
DEFAULT_BATCH_SIZE = 32
POOL_FEATURES, LOGIT_FEATURES = 2048, 1008  # the Inception's pool3 and logits widths


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
    cache: str = (
        "none"  # "hit", "miss", "rebuilt", "unwritten" (img2img.eval.features.cached_extract) or "none" (not cacheable)
    )
    failed: list[list] = field(default_factory=list)  # [name, half] of the failures, in a cache entry

    def __len__(self) -> int:
        return len(self.names)


def folder_items(folder: Path) -> list[ImageItem]:
    """The images of a folder as ``translate`` finds them: recursively, sorted, hidden files and
    files without an image extension skipped."""
    from img2img.files.walk import list_images

    listing = list_images(folder)
    for message in listing.notes + listing.errors:
        _log.warning(message)
    return [ImageItem(str(found.path), path=found.path, name=found.relative.as_posix()) for found in listing.images]


def read_item(item: ImageItem, data: bytes | None = None) -> Image.Image:
    """Decode an item (EXIF orientation applied); ImageError names the file."""
    from img2img.files.imageio import read_image

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

    from img2img.files.imageio import naming

    for item in items:
        try:
            prepared = inception.prepare(read(item))
        except ImageError as exc:  # unreadable, or pixels that cannot be converted (NaN)
            message = str(naming(item.label, exc))
            failures.append((item.label, message))
            if on_error:
                on_error(item.label, message)
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
#
# An entry is read back as strictly as a user's file: it must say what it was made from (its
# key, the settings with the Inception's sha256, the names of the images it holds and of those
# that failed) and match; its tensors must have the expected names, dtype, shapes, finite values
# and the checksum stored beside them. Anything else is recomputed with a note. Failure
# messages are not stored: files that failed are decoded again on a hit, so their messages are
# today's (and a file that now decodes makes the entry stale). Files are hashed streaming and
# read one at a time during extraction, so memory does not grow with the folder.

ENTRY_FORMAT = 2
_HASH_CHUNK = 1 << 20


def cache_key(items: list[ImageItem], settings: dict) -> tuple[str, list[str]]:
    """The cache key of a list of files and the settings, and each file's content hash (in the
    order of ``items``; "unreadable: REASON" for a file that cannot be read now, which is part
    of the key and reported when it is decoded). Files are hashed in chunks, never held."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"version": FEATURE_VERSION, **settings}, sort_keys=True).encode())
    hashes: list[str] = []
    for item in items:
        assert item.path is not None
        try:
            with open(item.path, "rb") as handle:
                content = hashlib.file_digest(handle, "sha256").hexdigest()
        except OSError as exc:
            content = f"unreadable: {exc.strerror or type(exc).__name__}"
        digest.update(f"\n{item.name}|{item.half}\n{content}".encode())
        hashes.append(content)
    return digest.hexdigest(), hashes


def cached_extract(
    items: list[ImageItem],
    inception,
    settings: dict,
    cache_dir: Path | None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_error: Callable[[str, str], None] | None = None,
    on_done: Callable[[int], None] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> FeatureSet:
    """:func:`extract` for files, through the feature cache in ``cache_dir`` (None: no cache).

    ``FeatureSet.cache`` says what happened: "hit" (read back and checked), "miss" (computed
    and written), "rebuilt" (an entry that failed the checks, recomputed and replaced) or
    "unwritten" (computed; the entry could not be written, or a file changed while it was
    read). ``on_note`` gets one line for each of the last two (default: nothing)."""
    if cache_dir is None:
        return extract(items, inception, batch_size=batch_size, on_error=on_error, on_done=on_done)
    note = on_note or (lambda message: None)
    key, hashes = cache_key(items, settings)
    path = cache_dir / "features" / f"{key}.safetensors"
    found, problem = _load(path, key, settings, items)
    if found is not None:
        stale = _replay_failures(items, found, on_error)
        if stale is None:
            if on_done:
                on_done(len(found))
            return found
        found, problem = None, f"{stale} was recorded as unreadable but now decodes"
    if problem is not None:
        note(f"feature cache entry {path} {problem}; recomputed")
    changed: list[str] = []
    by_id = {id(item): content for item, content in zip(items, hashes)}

    def read(item: ImageItem) -> Image.Image:
        # One file's bytes at a time: hashed again, so that an entry never holds features of
        # contents other than those its key names.
        assert item.path is not None
        try:
            data = item.path.read_bytes()
        except OSError:
            return read_item(item)  # words the error as every reader does
        if hashlib.sha256(data).hexdigest() != by_id[id(item)]:
            changed.append(item.label)
        return read_item(item, data)

    features = extract(items, inception, batch_size=batch_size, on_error=on_error, on_done=on_done, read=read)
    if changed:
        note(f"{changed[0]} changed while it was being measured; the features were not cached")
        features.cache = "unwritten"
        return features
    failed = [_entry_name(item) for item in items if item.label in {label for label, _ in features.failures}]
    reason = _save(path, features, key, settings, failed)
    if reason is not None:
        note(
            f"cannot write the feature cache ({reason}); the scores are complete, the next run extracts the features again"
        )
        features.cache = "unwritten"
    else:
        features.cache = "rebuilt" if problem is not None else "miss"
    return features


def _entry_name(item: ImageItem) -> list:
    return [item.name or item.label, item.half]


def _replay_failures(items: list[ImageItem], found: FeatureSet, on_error) -> str | None:
    """Decode again the files an entry records as failed and report their messages (today's,
    not stored ones). The label of a file that now decodes (the entry is stale), else None."""
    from img2img.files.imageio import naming, to_8bit

    failed = {tuple(entry) for entry in found.failed}
    messages = []
    for item in items:
        if tuple(_entry_name(item)) not in failed:
            continue
        try:
            to_8bit(read_item(item), 3)  # what the Inception's prepare does
        except ImageError as exc:
            messages.append((item.label, str(naming(item.label, exc))))
            continue
        return item.label
    found.failures = messages
    for label, message in messages:
        if on_error:
            on_error(label, message)
    return None


def _checksum(pool: torch.Tensor, logits: torch.Tensor) -> str:
    digest = hashlib.sha256()
    for tensor in (pool, logits):
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()


def _save(path: Path, features: FeatureSet, key: str, settings: dict, failed: list) -> str | None:
    """Write the entry; the reason it could not be written (full disk, read-only or misnamed
    folder), or None. A cache that cannot be written only costs time."""
    from safetensors.torch import save_file

    from img2img.files.atomic import atomic_path

    pool, logits = features.pool.float().contiguous(), features.logits.float().contiguous()
    meta = json.dumps({
        "format": ENTRY_FORMAT, "key": key, "settings": {"version": FEATURE_VERSION, **settings},
        "names": features.names, "failed": failed, "sha256": _checksum(pool, logits),
    })  # fmt: skip
    try:
        with atomic_path(path) as tmp:
            save_file({"pool": pool, "logits": logits}, str(tmp), metadata={"img2img_eval": meta})
    except Exception as exc:  # noqa: BLE001 -- OSError, SafetensorError (no space left), OutputError
        from img2img.files.text import one_line

        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return one_line(f"{path.parent}: {text[:200]}")
    return None


def _load(path: Path, key: str, settings: dict, items: list[ImageItem]) -> tuple[FeatureSet | None, str | None]:
    """(the entry at ``path`` if it passes every check, None) and (why it failed them, None
    when there is no entry)."""
    try:
        if not path.is_file():
            return None, None if not path.exists() else "is not a file"
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            meta = json.loads((handle.metadata() or {}).get("img2img_eval", "null"))
            names_in_file = set(handle.keys())
            if names_in_file != {"pool", "logits"}:
                return None, "does not hold exactly the tensors pool and logits"
            pool, logits = handle.get_tensor("pool"), handle.get_tensor("logits")
    except Exception as exc:  # noqa: BLE001 -- truncated, not safetensors, unreadable
        return None, f"cannot be read ({type(exc).__name__})"
    problem = _check_entry(meta, pool, logits, key, settings, items)
    if problem is not None:
        return None, problem
    entry = FeatureSet(pool, logits, list(meta["names"]), cache="hit")
    entry.failed = [list(f) for f in meta["failed"]]
    return entry, None


def _check_entry(
    meta, pool: torch.Tensor, logits: torch.Tensor, key: str, settings: dict, items: list[ImageItem]
) -> str | None:
    if not isinstance(meta, dict) or meta.get("format") != ENTRY_FORMAT:
        return "is not an entry of this version"
    if meta.get("key") != key:
        return "was made from other files or settings (its recorded key differs from its name)"
    if meta.get("settings") != json.loads(json.dumps({"version": FEATURE_VERSION, **settings})):
        return "was made with other settings or another Inception"
    names, failed = meta.get("names"), meta.get("failed")
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        return "has no valid list of image names"
    if not (isinstance(failed, list) and all(
        isinstance(f, list) and len(f) == 2 and isinstance(f[0], str) and (f[1] is None or isinstance(f[1], str)) for f in failed
    )):  # fmt: skip
        return "has no valid list of failed images"
    failed_set = {tuple(f) for f in failed}
    expected = [item.name or item.label for item in items if tuple(_entry_name(item)) not in failed_set]
    if names != expected or len(failed_set) + len(names) != len(items):
        return "does not list the images of this folder"
    for name, tensor, width in (("pool", pool, POOL_FEATURES), ("logits", logits, LOGIT_FEATURES)):
        if tensor.dtype != torch.float32:
            return f"holds {name} of dtype {tensor.dtype}, not float32"
        if tuple(tensor.shape) != (len(names), width):
            return f"holds {name} of shape {tuple(tensor.shape)}, not {(len(names), width)}"
        if not bool(torch.isfinite(tensor).all()):
            return f"holds {name} values that are not finite"
    if meta.get("sha256") != _checksum(pool, logits):
        return "holds features that do not match their checksum (damaged)"
    return None


def batched(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
