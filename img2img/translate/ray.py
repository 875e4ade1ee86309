"""Translation on Ray Data: an actor class for ``Dataset.map_batches``, and the file plumbing
(listing, output names, writing) that examples/ray_translate.py puts together.

    import ray
    from img2img.translate.ray import Translate

    ds = ray.data.read_binary_files("s3://bucket/photos", include_paths=True)
    ds = ds.map_batches(Translate, fn_constructor_kwargs={"model": "photo2sketch"},
                        concurrency=4, num_gpus=1, batch_size=16)

Each actor loads the model once (``Translate.__init__``) and translates batches of rows. Rows
come either as ``read_binary_files`` gives them (columns ``bytes`` and ``path``: the file is
decoded here by img2img's own reader, exactly as ``img2img translate`` decodes it: EXIF
orientation, 16-bit, palettes with transparency, CMYK, colour profiles) or as ``read_images(...,
include_paths=True)`` gives them (columns ``image``, an H x W [x C] array that Ray decoded, and
``path``). ``read_binary_files`` is the faithful one and the one the example uses; with
``read_images`` an unreadable file stops the read (Ray decodes it before we see it), palette
images arrive as palette indices unless ``mode="RGB"`` is passed, and EXIF orientation is not
applied.

Every row comes back: ``path``, ``error`` ("" when it worked, else one line naming the file) and
``image`` (the translation as a uint8 H x W x C array, C = 1, 2, 3 or 4 for L, LA, RGB, RGBA, at
the input's size; an empty 0 x 0 x 1 array for a failed row), or, with ``encode=``, ``bytes``
(the output file, encoded as ``img2img translate`` writes it) and ``suffix``. Images of
different sizes in one batch are fine: Ray hands them over as a stacked array when they share a
shape and as a list or object array when they do not; each is padded and translated on its own
(several at once with ``batch_size`` when their padded sizes match), as the CLI does, so the
outputs are byte-identical to ``img2img translate`` with the same model, device and precision.
That holds although Ray gives an actor as many torch threads as CPUs (1 by default) and
translate one per core: on the CPU the translator's result does not depend on the thread count
(img2img.models.determinism; README "Same bytes at any thread count").

This module is named like the ``ray`` package; it imports Ray absolutely, and only inside the
functions that need it, so ``Translate`` itself runs (and is tested) without Ray.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np
from PIL import Image

from img2img.errors import ImageError, Img2ImgError, UsageError, exists_message
from img2img.files.formats import output_format
from img2img.files.imageio import encode_image, format_for_path, is_image_path, read_image
from img2img.translate.jobs import output_suffix

INSTALL_HINT = 'pip install "img2img[ray]"'


def import_ray():
    """The ``ray`` package with Ray Data, or a UsageError naming the extra to install."""
    try:
        import ray  # the real Ray: absolute import, this module is img2img.translate.ray
        import ray.data  # noqa: F401  (needs pyarrow, which ray[data] brings)
    except ImportError as exc:
        raise UsageError(f"Ray Data is not installed ({exc}); {INSTALL_HINT}") from None
    return ray


def check_arguments(model: str | os.PathLike[str], *, device: str = "auto", encode: str | None = None) -> None:
    """What the actors would refuse, checked on the driver before Ray starts: an unknown model
    name or missing weights file (ModelNotFoundError: one line with the close names, instead of
    every actor's traceback), a weights file whose header is not a generator's (WeightsError),
    a device name that is no device (UsageError; whether the actors have it is theirs to say),
    an output format Pillow cannot write. Never downloads: a known model that is not cached
    yet is fetched by the actors."""
    from img2img.hub.registry import find_local_model

    if encode is not None and encode != "auto":
        output_format(encode, f"--ext {encode}")
    spec = str(device).strip().lower()
    if spec != "auto":
        import torch

        try:
            kind = torch.device(spec).type
        except RuntimeError:
            kind = None
        if kind not in ("cpu", "cuda", "mps"):
            raise UsageError(f"unknown device {device!r}; valid: auto, cpu, cuda, cuda:N, mps")
    path = find_local_model(os.fspath(model))
    if path is not None and path.suffix.lower() == ".safetensors":
        from img2img.models.weights import read_metadata

        read_metadata(path)


class Translate:
    """A callable class for ``ray.data.Dataset.map_batches``: translates a batch of image rows.

    ``model``: a weights file, a model name or ``hf:...``, as ``--model`` takes (resolved on the
    worker: a file must be on a filesystem every node sees). ``device``/``precision`` as in
    ``img2img translate`` (``auto``: CUDA when the actor has a GPU, else CPU). ``direction``
    checks the weights' direction. ``batch_size``: images of equal padded size run through the
    network together (1, the CLI's default, keeps outputs byte-identical to a default
    ``translate``). ``encode``: None returns ``image`` arrays; ``"auto"`` (the input's format
    when Pillow can write it, else PNG) or an extension (``"png"``, ``"jpg"``) returns the
    encoded output file in ``bytes`` and its extension in ``suffix`` instead.

    Call: a batch (mapping of columns) with ``path`` and either ``bytes`` (read_binary_files) or
    ``image`` (read_images) -> a dict of columns ``path``, ``error`` and ``image`` or
    ``bytes``/``suffix``, one row per input row, in order. Failures of single rows (unreadable
    file, out of memory) are rows with an error; a batch without those columns raises KeyError.
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        device: str = "auto",
        precision: str = "auto",
        *,
        direction: str | None = None,
        batch_size: int = 1,
        encode: str | None = None,
    ):
        from img2img.translate.translator import Translator  # loads torch: in the actor, not the driver

        if encode is not None and encode != "auto":
            output_format(encode, f"encode={encode!r}")  # a UsageError for unknown formats
        self.encode, self.batch_size = encode, batch_size
        self.translator = Translator(model, device=device, precision=precision, direction=direction)

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        paths = [str(path) for path in batch["path"]]
        if "bytes" in batch:
            images = (_decode(data, path) for data, path in zip(batch["bytes"], paths))
        elif "image" in batch:
            images = (_from_array(array, path) for array, path in zip(batch["image"], paths))
        else:
            raise KeyError(f"expected a column 'bytes' (read_binary_files) or 'image' (read_images), got {list(batch)}")
        outputs: list[Image.Image | None] = [None] * len(paths)
        errors = [""] * len(paths)
        items = []
        for index, (path, image) in enumerate(zip(paths, images)):
            if isinstance(image, ImageError):
                errors[index] = str(image)
                continue
            try:
                items.append((index, self.translator.to_input(image)))
            except ImageError as exc:
                errors[index] = f"{path}: {exc}"
        for index, result in self._translate(items):
            if isinstance(result, Image.Image):
                outputs[index] = result
            else:
                errors[index] = f"{paths[index]}: {result}"
        columns: dict[str, Any] = {"path": np.array(paths, dtype=object)}
        if self.encode is None:
            columns["image"] = [_to_array(image) for image in outputs]
        else:
            columns["bytes"], columns["suffix"] = self._encode(paths, outputs, errors)
        columns["error"] = np.array(errors, dtype=object)
        return columns

    def _translate(self, items: list) -> Iterator[tuple[int, Image.Image | Exception]]:
        try:
            results = list(self.translator.translate_stream(iter(items), batch_size=self.batch_size))
        except Exception as exc:  # noqa: BLE001  an unexpected failure of one image must not fail the job
            if len(items) == 1:
                yield items[0][0], exc
                return
            for item in items:  # one at a time, to find the image it was; the others still come out
                yield from self._translate([item])
            return
        for result in results:
            yield result.key, result.error if result.error is not None else result.image

    def _encode(self, paths: list[str], outputs: list, errors: list[str]) -> tuple[list[bytes], list[str]]:
        data, suffixes = [], []
        for index, (path, image) in enumerate(zip(paths, outputs)):
            suffix = output_suffix(path, None if self.encode == "auto" else self.encode)
            encoded = b""
            if image is not None:
                try:
                    encoded = encode_image(image, format_for_path(f"out{suffix}"))
                except ImageError as exc:
                    errors[index] = f"{path}: {exc}"
            data.append(encoded)
            suffixes.append(suffix)
        return data, suffixes


def _decode(data: bytes | None, path: str) -> Image.Image | ImageError:
    if data is None:
        return ImageError(f"{path}: no data")
    try:
        return read_image(bytes(data), name=path)
    except ImageError as exc:
        return exc


def _from_array(array: Any, path: str) -> Image.Image | ImageError:
    """An array from ``read_images`` -> the PIL image it was decoded from (as far as the array
    tells: 2-D uint8 is L, uint16 is 16-bit gray, 3-D has 1 to 4 channels L/LA/RGB/RGBA)."""
    if array is None:
        return ImageError(f"{path}: no data")
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    try:
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.dtype != np.uint8):
            raise TypeError(f"shape {array.shape}, dtype {array.dtype}")
        return Image.fromarray(np.ascontiguousarray(array))
    except (TypeError, ValueError) as exc:
        return ImageError(f"{path}: not an image array ({exc})")


def _to_array(image: Image.Image | None) -> np.ndarray:
    if image is None:
        return np.zeros((0, 0, 1), dtype=np.uint8)
    array = np.asarray(image)
    return array[:, :, None] if array.ndim == 2 else array


# --- files: listing, output names, writing -----------------------------------------------------


def is_remote(uri: str) -> bool:
    """True for URIs with a scheme (s3://, gs://, abfs://...) other than file:// and local://."""
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    return scheme not in ("", "file", "local")


def plan_inputs(
    uri: str,
    out_dir: str | os.PathLike[str],
    *,
    ext: str | None = None,
    overwrite: bool = False,
    skip_existing: bool = False,
    on_skip: Callable[[str], None] | None = None,
) -> tuple[str, list[str], list[str]]:
    """INPUT (a folder or file, local or any URI pyarrow opens: s3://, gs://...) -> its root as
    Ray's ``path`` column names it (local: absolute; remote: ``bucket/key``, no scheme), the
    image files to read (as read_binary_files takes them, sorted) and error lines for inputs
    that get no output.

    Local inputs are planned by img2img.translate.jobs, exactly as ``img2img translate INPUT --out-dir``
    plans them (hidden files, extensions, the output folder inside the input, existing outputs,
    two inputs with one output). Remote folders are listed with the same rules for names; their
    existing outputs are checked when written. With ``skip_existing`` a local input whose output
    exists is left out and its output passed to ``on_skip`` (not an error line). Raises
    UsageError when INPUT does not exist; an empty folder is an error line, as in translate."""
    from img2img.translate.jobs import plan_jobs

    if is_remote(uri):
        root, files = list_images(uri)
        return root, files, [] if files else [f"{uri}: no images under this prefix"]
    local = Path(uri.split("://", 1)[-1]).absolute()
    if not local.exists():  # globs are not expanded here: their root would be ambiguous
        raise UsageError(f"{uri}: no such file or directory")
    root = local.parent if local.is_file() else local
    jobs, errors = plan_jobs(
        [str(local)], output=None, out_dir=Path(out_dir), ext=ext, overwrite=overwrite, skip_existing=skip_existing
    )
    for error in errors:
        if error.status == "skipped" and on_skip is not None:
            on_skip(str(error.output))
    lines = [error.message for error in errors if error.status != "skipped"]
    return str(root), sorted(str(job.source) for job in jobs), lines


def list_images(uri: str) -> tuple[str, list[str]]:
    """A remote folder or file (s3://bucket/prefix, gs://...) -> its root as Ray's ``path``
    column names it (``bucket/prefix``) and the image files under it as URIs, sorted, chosen as
    ``img2img translate`` chooses in folders: image extensions only, no part of the name hidden
    (starting with "."). Raises UsageError when ``uri`` does not exist."""
    from pyarrow import fs as pafs

    filesystem, root = pafs.FileSystem.from_uri(uri)
    scheme = uri.split("://", 1)[0]
    info = filesystem.get_file_info(root)
    if info.type == pafs.FileType.File:
        return str(PurePosixPath(root).parent), [uri]
    if info.type != pafs.FileType.Directory:
        raise UsageError(f"{uri}: no such file or directory")
    root = root.rstrip("/")
    files = []
    for entry in filesystem.get_file_info(pafs.FileSelector(root, recursive=True)):
        relative = entry.path[len(root) :].lstrip("/")
        if entry.is_file and is_image_path(relative) and not any(p.startswith(".") for p in relative.split("/")):
            files.append(f"{scheme}://{entry.path}")
    return root, sorted(files)


def output_path(path: str, root: str, out_dir: str | os.PathLike[str], suffix: str) -> Path:
    """Where the translation of ``path`` (as Ray names it, under ``root``) goes: its name
    relative to ``root``, under ``out_dir``, with ``suffix`` -- the rule ``translate --out-dir``
    follows."""
    relative = PurePosixPath(str(path)[len(root) :].lstrip("/").replace(os.sep, "/"))
    if str(path)[: len(root)] != root or not relative.parts or ".." in relative.parts:
        raise ValueError(f"{path} is not under {root}")
    return Path(out_dir, *relative.parts).with_suffix(suffix)


def write_outputs(
    batch: Mapping[str, Any], *, root: str, out_dir: str, overwrite: bool = False, skip_existing: bool = False
) -> dict[str, Any]:
    """A ``map_batches`` function after ``Translate(encode=...)``: writes each row's ``bytes``
    to its output path (atomically: a temporary name, then renamed) and returns ``path``,
    ``output``, ``error`` (the translation's error, or why it could not be written) and
    ``kept`` (True for an output that existed and ``skip_existing`` kept). An existing output
    is an error unless ``overwrite`` or ``skip_existing``, as in ``img2img translate``."""
    from img2img.files.atomic import atomic_write_bytes

    rows = zip(batch["path"], batch["bytes"], batch["suffix"], batch["error"])
    paths, outputs, errors, kept = [], [], [], []
    for path, data, suffix, error in rows:
        target = output_path(str(path), root, out_dir, str(suffix))
        exists = False
        if not error:
            try:  # without overwrite, refused at the moment of the move: no race with other writers
                atomic_write_bytes(target, bytes(data), replace=overwrite)
            except FileExistsError:
                exists = skip_existing
                error = "" if skip_existing else exists_message(target)
            except OSError as exc:
                error = f"{target}: cannot write: {exc.strerror or exc}"
        paths.append(str(path))
        outputs.append(str(target))
        errors.append(str(error))
        kept.append(exists)
    return {
        "path": np.array(paths, dtype=object), "output": np.array(outputs, dtype=object),
        "error": np.array(errors, dtype=object), "kept": np.array(kept, dtype=bool),
    }  # fmt: skip


def find_error(exc: BaseException) -> Img2ImgError | None:
    """The img2img error behind a Ray failure (a model that does not load in the actors' __init__
    comes back as ActorDiedError or RayTaskError), so the driver can print it as one line.
    Looks through the exception chain, then, for errors Ray only keeps as text, at the last
    ``img2img.errors.<Type>: message`` line of the remote traceback."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, Img2ImgError):
            return current
        cause = getattr(current, "cause", None)
        current = cause if isinstance(cause, BaseException) else current.__cause__ or current.__context__
    import img2img.errors as errors

    matches = re.findall(r"img2img\.errors\.(\w+): (.+)", str(exc))
    if matches:
        kind, message = matches[-1]
        error_class = getattr(errors, kind, None)
        if isinstance(error_class, type) and issubclass(error_class, Img2ImgError):
            try:
                return error_class(message.strip())
            except TypeError:  # a class that needs more arguments
                return Img2ImgError(message.strip())
    return None


class Tally:
    """What a run has done so far, row by row (so that a stop can say it): outputs written,
    outputs kept (``kept`` column: --skip-existing) and error lines."""

    def __init__(self) -> None:
        self.written, self.kept, self.errors = 0, 0, []

    def add(self, row: Mapping[str, Any]) -> None:
        if row["error"]:
            self.errors.append(str(row["error"]))
        elif row.get("kept", False):
            self.kept += 1
        else:
            self.written += 1

    def describe(self, total: int | None = None) -> str:
        """``wrote 3 of 9 outputs, 2 kept (already there), 1 failed``."""
        parts = [f"wrote {self.written}" + (f" of {total}" if total is not None else "") + " outputs"]
        if self.kept:
            parts.append(f"{self.kept} kept (already there)")
        if self.errors:
            parts.append(f"{len(self.errors)} failed")
        return ", ".join(parts)


def summarise(rows: Iterable[Mapping[str, Any]], tally: Tally | None = None) -> tuple[int, list[str]]:
    """(number written, error lines) from rows with an ``error`` column, counted into ``tally``
    as they come (kept outputs are neither written nor errors)."""
    tally = tally if tally is not None else Tally()
    for row in rows:
        tally.add(row)
    return tally.written, tally.errors


__all__ = [
    "INSTALL_HINT",
    "Tally",
    "Translate",
    "check_arguments",
    "find_error",
    "import_ray",
    "is_remote",
    "list_images",
    "output_path",
    "plan_inputs",
    "summarise",
    "write_outputs",
]
