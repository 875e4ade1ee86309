"""`img2img data download NAME`: the reference's datasets, fetched, checked and unpacked safely.

The names and URLs are ``weights/datasets.json``'s (beside the model registry): the reference's
pix2pix tarballs (``…/pix2pix/datasets/NAME.tar.gz``) and CycleGAN zips
(``…/cyclegan/datasets/NAME.zip``), from ``base_url`` or ``$IMG2IMG_DATA_BASE_URL`` (a mirror).

A download:

1. goes to ``$IMG2IMG_CACHE/datasets/FILE.part`` under the download policy of
   ``img2img.files.transfer`` (deadline, minimum rate, proxies, offline mode), resumed with HTTP Range
   when a part is there (``img2img.files.downloads.download``);
2. is checked: the size and SHA-256 the registry pins (published by TensorFlow Datasets for the
   CycleGAN zips), a mismatch an error naming the file and both hashes. An entry without a
   pinned hash is *unverified*: the hash of its first complete download is recorded
   (``FILE.sha256`` beside it) and printed, and later downloads must match it (trust on first
   use). The complete archive is renamed to ``FILE``;
3. is extracted by ``img2img.data.extract`` (nothing outside the target, no links out, no
   devices, bounded size) into a hidden temporary folder beside the destination, checked for
   the folders the task trains from, and only then renamed to the destination, so an
   interrupted run leaves nothing that looks like a dataset.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from img2img.errors import DatasetError, DownloadError, Img2ImgError, UsageError
from img2img.files.atomic import atomic_write_bytes, rename_no_replace
from img2img.files.shipped import shipped_dir

DATASETS_FILE = shipped_dir() / "datasets.json"
DATASETS_SCHEMA = 1
ENV_DATA_BASE_URL = "IMG2IMG_DATA_BASE_URL"
ENV_DATA_REGISTRY = "IMG2IMG_DATA_REGISTRY"  # a JSON file whose entries add to (or replace) ours
MANIFEST = "img2img-dataset.json"
# The largest archive accepted when none is pinned: edges2handbags, the biggest, is ~8.6 GB.
MAX_ARCHIVE_BYTES = 16 << 30


@dataclass(frozen=True)
class DatasetEntry:
    """One downloadable dataset of ``weights/datasets.json``.

    ``name`` is ``TASK/NAME`` (``pix2pix/facades``); ``short`` the reference's name
    (``facades``); ``url`` absolute; ``size`` (bytes) and ``sha256`` of the archive are None
    when not published (an unverified entry); ``splits`` the folders a usable download holds."""

    name: str
    task: str
    url: str
    splits: tuple[str, ...]
    description: str = ""
    licence: str = ""
    size: int | None = None
    sha256: str | None = None
    sha256_source: str = ""

    @property
    def short(self) -> str:
        return self.name.split("/", 1)[1]

    @property
    def filename(self) -> str:
        """The archive's file name in the cache: ``pix2pix-facades.tar.gz``."""
        return f"{self.task}-{self.url.rsplit('/', 1)[-1]}"

    @property
    def verified(self) -> bool:
        return self.sha256 is not None


def load_datasets() -> dict[str, DatasetEntry]:
    """``weights/datasets.json``'s entries by ``TASK/NAME``, with those of the file named by
    ``$IMG2IMG_DATA_REGISTRY`` (same format; its relative URLs against its own base_url) added
    or replacing ours. Raises Img2ImgError for a file that is not a valid registry."""
    entries = read_datasets_file(DATASETS_FILE)
    extra = os.environ.get(ENV_DATA_REGISTRY, "").strip()
    if extra:
        entries.update(read_datasets_file(Path(extra)))
    return entries


def read_datasets_file(path: Path) -> dict[str, DatasetEntry]:
    """The entries of one dataset registry file by ``TASK/NAME``; raises Img2ImgError for a file
    that is not a valid registry (its path and the problem in the message)."""
    from img2img.files.transfer import url_problem

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise Img2ImgError(f"{path}: cannot read the dataset registry ({exc})") from None
    if (
        not isinstance(data, dict)
        or data.get("schema") != DATASETS_SCHEMA
        or not isinstance(data.get("datasets"), dict)
    ):
        raise Img2ImgError(f"{path}: not a dataset registry of schema {DATASETS_SCHEMA}")
    base_url, origin = os.environ.get(ENV_DATA_BASE_URL, "").strip(), f"${ENV_DATA_BASE_URL}"
    if not base_url:
        base_url, origin = str(data.get("base_url") or ""), f"{path}: base_url"
    problem = url_problem(base_url) if base_url else None
    if problem:
        raise Img2ImgError(f"{origin} {base_url!r} is not a usable URL ({problem})")
    entries = {}
    for name, raw in data["datasets"].items():
        try:
            task = raw["task"]
            if task not in ("pix2pix", "cyclegan") or not name.startswith(f"{task}/"):
                raise ValueError(f"task {task!r} does not fit the name")
            url = str(raw["url"])
            if "://" not in url:
                url = f"{base_url.rstrip('/')}/{url.lstrip('/')}"
            sha = raw.get("sha256")
            if sha is not None and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha)):
                raise ValueError("sha256 is not 64 lower-case hex digits")
            entries[name] = DatasetEntry(
                name=name, task=task, url=url, splits=tuple(raw.get("splits") or ()),
                description=str(raw.get("description", "")), licence=str(raw.get("licence", "")),
                size=int(raw["size"]) if raw.get("size") is not None else None, sha256=sha,
                sha256_source=str(raw.get("sha256_source", "")),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise Img2ImgError(f"{path}: dataset {name!r} is not valid ({exc})") from None
    return entries


def find_dataset(name: str, registry: dict[str, DatasetEntry] | None = None) -> DatasetEntry:
    """The entry called ``name``: ``TASK/NAME``, or ``NAME`` when only one task has it. Raises
    UsageError for an unknown or ambiguous name (the message lists the choices)."""
    import difflib

    registry = load_datasets() if registry is None else registry
    if name in registry:
        return registry[name]
    matches = [entry for entry in registry.values() if entry.short == name]
    if len(matches) == 1:
        return matches[0]
    if matches:
        choices = " or ".join(entry.name for entry in matches)
        raise UsageError(f"{name}: both a pix2pix and a CycleGAN dataset: name one, {choices}")
    close = difflib.get_close_matches(name, [*registry, *(e.short for e in registry.values())], n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise UsageError(f"{name}: no such dataset{hint}; `img2img data list` shows them")


def datasets_cache() -> Path:
    from img2img.files.cache import cache_dir

    return cache_dir() / "datasets"


@dataclass
class Downloaded:
    """What ``download_dataset`` did: the dataset folder, the archive's hash, whether it was
    checked against a pinned hash (``verified``) or recorded now (trust on first use), and the
    image count of each split folder."""

    folder: Path
    sha256: str
    verified: bool
    recorded: bool
    counts: dict[str, int]


def download_dataset(
    entry: DatasetEntry,
    dest: Path,
    *,
    progress: bool | None = None,
    note: Callable[[str], None] = lambda line: None,
) -> Downloaded:
    """Fetch ``entry``'s archive (or reuse the complete one in the cache), check it, and extract
    it to ``dest`` (which must not exist yet). ``note`` receives progress lines for people.
    Raises UsageError (dest exists), DownloadError (transfer, size, hash), DatasetError (an
    unsafe archive, or one without the task's folders)."""
    from img2img.data.extract import extract_archive
    from img2img.files import downloads

    if dest.exists():
        raise UsageError(f"{dest}: already exists; remove it or choose another --out")
    cache = datasets_cache()
    archive = cache / entry.filename
    recorded_file = cache / f"{entry.filename}.sha256"
    expected = entry.sha256 or _read_recorded(recorded_file)
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"{cache}: cannot write the download cache ({exc.strerror or exc})") from None
    recorded = False
    if archive.is_file():
        note(f"using {archive} (downloaded before)")
        found = downloads.file_sha256(archive)
        if expected and found != expected:
            raise DownloadError(
                f"{entry.name}: refused {archive}: its sha256 is {found}, expected {expected}",
                hint="delete it to download again",
            )
    else:
        part = cache / f"{entry.filename}.part"
        if part.is_file() and part.stat().st_size:
            note(f"resuming {entry.url} from byte {part.stat().st_size}")
        else:
            note(f"downloading {entry.url}")
        hint = (
            f"on a connected machine run `img2img data download {entry.name}` and copy "
            f"{archive} to this machine's {cache}"
        )
        try:
            found = downloads.download(
                entry.url, part, label=entry.name, sha256=expected, progress=progress,
                cache_path=archive, resume=True, size=entry.size,
                max_bytes=entry.size or MAX_ARCHIVE_BYTES, offline_hint=hint,
                sha256_origin="the registry expects" if entry.sha256 else
                f"the first download's (recorded in {recorded_file}) was", filename=entry.filename,
            )  # fmt: skip
        except DownloadError as exc:
            if "refused" in exc.message:  # wrong size or hash: that part is worthless
                part.unlink(missing_ok=True)
                downloads.resume_validator(part).unlink(missing_ok=True)
            raise
        os.replace(part, archive)
    with temporary_folder(dest.parent) as staging:
        try:
            extract_archive(archive, staging, compressed_size=archive.stat().st_size)
            root = _dataset_root(staging, entry)
        except DatasetError as exc:
            if expected:  # the file is the one expected: keep it, say where it is
                raise DatasetError(
                    exc.message, hint=f"the archive stays in {archive}; delete it to download again"
                ) from None
            # Unverified and unusable (a resume that joined two versions of the file, a host
            # serving something else): neither trusted nor kept.
            archive.unlink(missing_ok=True)
            raise DatasetError(exc.message, hint="the archive was deleted; run again to download it again") from None
        if not expected:
            # Recorded only once the archive has proved to be a dataset.
            atomic_write_bytes(recorded_file, f"{found}  {entry.filename}\n".encode())
            recorded = True
        counts = _count_images(root)
        manifest = {
            "name": entry.name, "task": entry.task, "url": entry.url, "archive_sha256": found,
            "verified": entry.verified, "sha256_source": entry.sha256_source or
            ("recorded at the first download (trust on first use)" if not entry.verified else ""),
            "images": counts, "licence": entry.licence,
        }  # fmt: skip
        (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        try:
            # One step, never onto an existing folder: dest holds a whole dataset or nothing.
            rename_no_replace(root, dest)
        except FileExistsError:
            raise UsageError(f"{dest}: already exists; remove it or choose another --out") from None
        except OSError:
            try:  # no renameat2 here: a plain rename, which refuses a non-empty dest
                if dest.exists():
                    raise FileExistsError(str(dest))
                os.rename(root, dest)
            except FileExistsError:
                raise UsageError(f"{dest}: already exists; remove it or choose another --out") from None
            except OSError as exc:
                raise DatasetError(f"{dest}: cannot move the dataset into place ({exc.strerror or exc})") from None
    # Remembered beside the archive so that `data list` can show the counts.
    atomic_write_bytes(cache / f"{entry.filename}.json", json.dumps({"images": counts}).encode())
    return Downloaded(dest, found, entry.verified, recorded, counts)


def _read_recorded(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").split()
    except OSError:
        return None
    return text[0] if text and len(text[0]) == 64 else None


class temporary_folder:
    """A hidden folder in ``parent`` (``.img2img-data.*``) removed on exit, whatever happens.
    A folder that cannot be made there raises ``error`` (DatasetError by default; push passes
    OutputError), saying it cannot write ``what`` there."""

    def __init__(self, parent: Path, *, what: str = "the dataset", error: type[Img2ImgError] = DatasetError) -> None:
        self.parent = parent
        self.what = what
        self.error = error

    def __enter__(self) -> Path:
        try:
            self.parent.mkdir(parents=True, exist_ok=True)
            self.path = Path(tempfile.mkdtemp(prefix=".img2img-data.", dir=self.parent))
        except OSError as exc:
            raise self.error(f"{self.parent}: cannot write {self.what} here ({exc.strerror or exc})") from None
        return self.path

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _dataset_root(staging: Path, entry: DatasetEntry) -> Path:
    """The folder of the extracted archive that holds the splits: the archive's single top
    folder (the reference's archives hold ``NAME/``) or the staging folder itself."""
    top = [p for p in staging.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
    candidates = [staging]
    if len(top) == 1 and top[0].is_dir() and not top[0].is_symlink():
        candidates.insert(0, top[0])
    for root in candidates:
        if all((root / split).is_dir() for split in entry.splits):
            return root
    found = ", ".join(sorted(p.name for p in top)) or "nothing"
    raise DatasetError(
        f"{entry.url}: the archive does not hold a {entry.task} dataset: expected the folders "
        f"{', '.join(entry.splits)}, found {found}"
    )


def _count_images(root: Path) -> dict[str, int]:
    from img2img.data.images import is_image_file

    counts = {}
    for split in sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()):
        counts[split.name] = sum(1 for f in split.rglob("*") if f.is_file() and is_image_file(f))
    return counts


def list_datasets() -> list[dict[str, Any]]:
    """One row per dataset for ``data list``: name, task, size (bytes or None), images (the
    count per split folder, known once downloaded, else None), checked
    (``pinned`` / ``recorded`` / ``unverified``), cached (the archive is in the cache), licence,
    description."""
    cache = datasets_cache()
    rows = []
    for entry in load_datasets().values():
        if entry.verified:
            checked = "pinned"
        elif (cache / f"{entry.filename}.sha256").is_file():
            checked = "recorded"
        else:
            checked = "unverified"
        archive = cache / entry.filename
        size = entry.size if entry.size is not None else (archive.stat().st_size if archive.is_file() else None)
        try:
            images = json.loads((cache / f"{entry.filename}.json").read_text(encoding="utf-8"))["images"]
        except (OSError, ValueError, KeyError, TypeError):
            images = None
        rows.append({
            "name": entry.name, "task": entry.task, "size": size, "images": images, "checked": checked,
            "cached": archive.is_file(), "url": entry.url, "licence": entry.licence,
            "description": entry.description,
        })  # fmt: skip
    return rows


__all__ = [
    "DATASETS_FILE",
    "ENV_DATA_BASE_URL",
    "ENV_DATA_REGISTRY",
    "MANIFEST",
    "DatasetEntry",
    "Downloaded",
    "datasets_cache",
    "download_dataset",
    "find_dataset",
    "list_datasets",
    "load_datasets",
    "read_datasets_file",
]
