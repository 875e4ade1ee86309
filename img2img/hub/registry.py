"""Model names -> weights files: local paths, shipped files, the user cache, and downloads.

``resolve_model(spec)`` is the one entry point ``translate`` and ``models info`` use. A spec is
tried, in this order, as:

1. ``hf:OWNER/REPO[@REVISION][/FILE]``: a weights-format file on the Hugging Face Hub
   (default FILE ``model.safetensors``), fetched by ``hf_hub_download`` into the HF cache, which
   honours ``HF_HOME``, ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` itself;
2. an existing file;
3. a shipped model, ``weights/NAME.safetensors``;
4. the user cache, ``$IMG2IMG_CACHE/models/NAME.safetensors`` (default ``~/.cache/img2img``);
5. a download named in ``weights/registry.json``: a reference ``.pth`` is fetched to a temporary
   file in the cache, checked (size, optional sha256, a weights-only load, every tensor against
   the entry's architecture), converted once and renamed into the cache, so a failure leaves
   nothing behind.

The transfers themselves (limits, the Hub, offline messages) are ``img2img.files.downloads``'s.
Nothing here imports torch or huggingface_hub at module level: ``models list`` stays fast.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from img2img.errors import (
    DownloadError,
    Img2ImgError,
    ModelNotFoundError,
    UsageError,
    WeightsError,
)
from img2img.files import downloads
from img2img.files.atomic import remove_stale_temporaries
from img2img.files.cache import ENV_CACHE, cache_dir  # noqa: F401 (ENV_CACHE: public here too)
from img2img.files.downloads import ENV_OFFLINE, file_sha256, is_offline  # noqa: F401 (public here too)
from img2img.files.shipped import shipped_dir
from img2img.files.transfer import url_problem
from img2img.models.config import GeneratorConfig, preprocess_problem

WEIGHTS_DIR = shipped_dir()
REGISTRY_FILE = WEIGHTS_DIR / "registry.json"
REGISTRY_SCHEMA = 1

ENV_BASE_URL = "IMG2IMG_REGISTRY_BASE_URL"  # a mirror of the reference's download server
ENV_EXTRA_REGISTRY = "IMG2IMG_REGISTRY"  # a JSON file whose entries add to (or replace) ours

HF_PREFIX = "hf:"
HF_DEFAULT_FILE = "model.safetensors"
TASKS = ("cyclegan", "pix2pix")
DIRECTIONS = ("AtoB", "BtoA")
# The reference's training defaults; informational in the metadata (outputs keep the input size).
REFERENCE_PREPROCESS = {"load_size": 286, "crop_size": 256}

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_HF_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")
_WEIGHTS_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".bin", ".onnx")


# --- the registry ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelEntry:
    """One named model: what network it is, what it maps, and where its weights come from.

    Exactly one source is set: ``url`` (a reference ``.pth``), ``hf_repo`` (+ ``hf_file``,
    ``hf_revision``) or ``file`` (shipped in ``weights/``)."""

    name: str
    task: str
    direction: str
    generator: GeneratorConfig
    dataset: str = ""
    description: str = ""
    eval_mode: bool = True
    preprocess: Mapping[str, Any] = field(default_factory=lambda: dict(REFERENCE_PREPROCESS))
    url: str | None = None
    hf_repo: str | None = None
    hf_file: str = HF_DEFAULT_FILE
    hf_revision: str | None = None
    file: str | None = None
    sha256: str | None = None

    @property
    def source(self) -> str:
        """``shipped``, ``url`` or ``hf``."""
        if self.file is not None:
            return "shipped"
        return "hf" if self.hf_repo is not None else "url"

    @property
    def location(self) -> str:
        """Where the weights come from, for people: a URL, an ``hf:`` spec or a shipped path."""
        if self.source == "shipped":
            return str(WEIGHTS_DIR / str(self.file))
        if self.source == "hf":
            revision = f"@{self.hf_revision}" if self.hf_revision else ""
            return f"{HF_PREFIX}{self.hf_repo}{revision}/{self.hf_file}"
        return str(self.url)

    @property
    def needs_conversion(self) -> bool:
        """True when the source is a reference checkpoint that is converted into the cache."""
        if self.source == "url":
            return True
        return self.source == "hf" and not self.hf_file.endswith(".safetensors")

    def weights_metadata(self, source: str):  # -> img2img.models.weights.WeightsMetadata
        from img2img.models.weights import WeightsMetadata  # imports torch

        return WeightsMetadata(
            generator=self.generator,
            task=self.task,
            direction=self.direction,
            preprocess=dict(self.preprocess),
            eval_mode=self.eval_mode,
            source=source,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "task": self.task,
            "dataset": self.dataset,
            "direction": self.direction,
            "description": self.description,
            "architecture": self.generator.reference_name,
            "generator": self.generator.to_dict(),
            "eval_mode": self.eval_mode,
            "source": self.source,
            "location": self.location,
            "sha256": self.sha256,
        }


_ENTRY_KEYS = {
    "task", "dataset", "direction", "description", "generator", "eval_mode", "preprocess",
    "url", "hf", "file", "sha256",
}  # fmt: skip


def load_registry() -> dict[str, ModelEntry]:
    """The shipped registry, plus (overriding it) the file ``$IMG2IMG_REGISTRY`` names."""
    entries = read_registry_file(REGISTRY_FILE)
    extra = os.environ.get(ENV_EXTRA_REGISTRY)
    if extra:
        entries.update(read_registry_file(Path(extra).expanduser()))
    return entries


def read_registry_file(path: Path) -> dict[str, ModelEntry]:
    """Parse one registry file; a malformed entry is an error, not silently skipped."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise Img2ImgError(f"{path}: cannot read the model registry ({exc.strerror or exc})") from None
    except (ValueError, RecursionError) as exc:
        raise Img2ImgError(f"{path}: the model registry is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise Img2ImgError(f'{path}: the model registry needs a "models" object')
    schema = data.get("schema", 1)
    if not isinstance(schema, int) or isinstance(schema, bool):
        raise Img2ImgError(f"{path}: the model registry's schema must be an integer, got {schema!r}")
    if schema > REGISTRY_SCHEMA:
        raise Img2ImgError(
            f"{path}: registry schema {data['schema']} is newer than this img2img understands",
            hint="upgrade img2img",
        )
    base_url, base_origin = os.environ.get(ENV_BASE_URL), f"${ENV_BASE_URL}"
    if not base_url:
        base_url, base_origin = data.get("base_url") or "", f"{path}: base_url"
    if base_url:
        problem = url_problem(base_url) if isinstance(base_url, str) else "it is not a string"
        if problem:
            raise Img2ImgError(f"{base_origin} {base_url!r} is not a usable URL ({problem})")
    return {name: _entry_from_json(name, raw, base_url, path) for name, raw in data["models"].items()}


def _entry_from_json(name: str, raw: Any, base_url: str, origin: Path) -> ModelEntry:
    where = f"{origin}: model {name!r}"
    if not _NAME.fullmatch(name):
        raise Img2ImgError(f"{where}: a name is letters, digits and _.+- (no path separators)")
    if not isinstance(raw, dict):
        raise Img2ImgError(f"{where}: an entry is a JSON object")
    unknown = sorted(set(raw) - _ENTRY_KEYS)
    if unknown:
        raise Img2ImgError(f"{where}: unknown keys {', '.join(unknown)}")
    sources = [key for key in ("url", "hf", "file") if raw.get(key)]
    if len(sources) != 1:
        raise Img2ImgError(f"{where}: needs exactly one of url, hf, file (has {sources or 'none'})")
    if raw.get("task") not in TASKS:
        raise Img2ImgError(f"{where}: task must be one of {', '.join(TASKS)}")
    if raw.get("direction") not in DIRECTIONS:
        raise Img2ImgError(f"{where}: direction must be one of {', '.join(DIRECTIONS)}")
    sha256 = raw.get("sha256")
    if sha256 is not None and not (isinstance(sha256, str) and _SHA256.fullmatch(sha256.lower())):
        raise Img2ImgError(f"{where}: sha256 must be 64 hex digits")
    try:
        generator_options = dict(raw["generator"])
        net_g = generator_options.pop("netg")
        if not isinstance(net_g, str):
            raise TypeError(f"netg must be a string, got {net_g!r}")
        generator = GeneratorConfig.from_reference(net_g, **generator_options)
    except (KeyError, TypeError, ValueError, Img2ImgError) as exc:
        raise Img2ImgError(f"{where}: generator needs netg and GeneratorConfig fields ({exc})") from None
    for key in ("dataset", "description"):
        if not isinstance(raw.get(key, ""), str):
            raise Img2ImgError(f"{where}: {key} must be a string")
    if not isinstance(raw.get("eval_mode", True), bool):
        raise Img2ImgError(f"{where}: eval_mode must be true or false, got {raw['eval_mode']!r}")
    preprocess = raw.get("preprocess")
    problem = preprocess_problem(preprocess)
    if problem:
        raise Img2ImgError(f"{where}: {problem}")
    hf = raw.get("hf") or {}
    if "hf" in sources and not (
        isinstance(hf, dict)
        and isinstance(hf.get("repo"), str)
        and _HF_REPO.fullmatch(hf["repo"])
        and all(isinstance(hf.get(key, ""), (str, type(None))) for key in ("file", "revision"))
    ):
        raise Img2ImgError(f'{where}: hf is {{"repo": "OWNER/NAME", "file": ..., "revision": ...}}')
    shipped = raw.get("file")
    if shipped is not None and not (isinstance(shipped, str) and _NAME.fullmatch(shipped)):
        raise Img2ImgError(f"{where}: file is a file name in weights/ (no path separators), got {shipped!r}")
    url = raw.get("url")
    if url is not None:
        if not isinstance(url, str):
            raise Img2ImgError(f"{where}: url must be a string, got {url!r}")
        if not urllib.parse.urlsplit(url).scheme and ":" not in url.split("/")[0]:
            # Relative URLs keep the reference server's layout, so one base URL can point at a mirror.
            if not base_url:
                raise Img2ImgError(
                    f"{where}: url {url!r} is relative, and there is no base URL to resolve it "
                    f"against (the registry's base_url, or ${ENV_BASE_URL})"
                )
            url = f"{base_url.rstrip('/')}/{url.lstrip('/')}"
        problem = url_problem(url)
        if problem:
            raise Img2ImgError(f"{where}: url {url!r} is malformed ({problem})")
    return ModelEntry(
        name=name,
        task=raw["task"],
        direction=raw["direction"],
        generator=generator,
        dataset=str(raw.get("dataset", "")),
        description=str(raw.get("description", "")),
        eval_mode=raw.get("eval_mode", True),
        preprocess=dict(preprocess or REFERENCE_PREPROCESS),
        url=url,
        hf_repo=hf.get("repo"),
        hf_file=hf.get("file") or HF_DEFAULT_FILE,
        hf_revision=hf.get("revision"),
        file=raw.get("file"),
        sha256=sha256.lower() if sha256 else None,
    )


def get_model_entry(name: str) -> ModelEntry:
    """The registry entry called ``name``; an unknown name fails listing the close ones."""
    registry = load_registry()
    if name in registry:
        return registry[name]
    raise _unknown_name(name, registry)


def _unknown_name(spec: str, registry: Mapping[str, ModelEntry]) -> ModelNotFoundError:
    known = sorted(set(registry) | set(_local_names()))
    close = difflib.get_close_matches(spec, known, n=3, cutoff=0.6)
    if close:
        suggestion = f"did you mean {' or '.join(close)}?"
    else:
        suggestion = f"known names: {', '.join(known)}"
    return ModelNotFoundError(
        f"{spec}: no such file, and not a known model name ({suggestion}); `img2img models list` shows them all"
    )


# --- the cache ------------------------------------------------------------------------------


def remove_stale_cache_temporaries() -> None:
    """Remove the temporaries of killed processes anywhere in the cache: downloads (``models/``),
    conversions (``converted/``) and translate's ONNX copies (``onnx/``, img2img.translate.engines),
    whichever part a run looks in. Once per folder per process."""
    for folder in ("models", "converted", "onnx"):
        remove_stale_temporaries(cache_dir() / folder)


def cached_model_path(name: str) -> Path:
    return cache_dir() / "models" / f"{name}.safetensors"


def _local_names() -> list[str]:
    """Names of shipped and cached weights files, whether or not the registry has them."""
    names = []
    for folder in (WEIGHTS_DIR, cache_dir() / "models"):
        if folder.is_dir():
            names += [path.stem for path in folder.glob("*.safetensors") if _NAME.fullmatch(path.stem)]
    return names


# --- resolving ------------------------------------------------------------------------------


def resolve_model(spec: str, *, progress: bool | None = None, direction: str | None = None) -> Path:
    """The weights file ``spec`` (a path, a model name or ``hf:OWNER/REPO[/FILE]``) stands for,
    downloading and converting it into the cache if need be. ``progress``: show a progress bar
    on stderr (default: only when stderr is a terminal). ``direction`` (AtoB or BtoA): what a
    reference checkpoint file maps, when its name does not say (see ``convert_checkpoint_file``);
    weights files and named models record their own, and ignore it."""
    path = _resolve(spec, download=True, force=False, progress=progress, direction=direction)
    assert path is not None
    return path


def load_model(model: str | os.PathLike[str], device: Any = "cpu"):
    """The PyTorch generator ``model`` names (a weights file, a model name or ``hf:...``,
    resolved as :func:`resolve_model` does), loaded on ``device`` (a torch.device or its name) as
    translate loads it: eval mode, batch norm as the weights' metadata says. Returns a
    img2img.models.weights.LoadedGenerator. Raises ModelNotFoundError, DownloadError or
    WeightsError."""
    from img2img.models.weights import load_generator  # imports torch

    return load_generator(resolve_model(os.fspath(model)), device)


def find_local_model(spec: str) -> Path | None:
    """Like ``resolve_model`` but never touches the network: ``None`` when a known model is not
    on disk yet. Unknown names still raise ``ModelNotFoundError``."""
    return _resolve(spec, download=False, force=False, progress=False)


@dataclass(frozen=True)
class PullResult:
    path: Path
    status: str  # "downloaded", "cached" (nothing to do) or "shipped"


def pull_model(spec: str, *, force: bool = False, progress: bool | None = None) -> PullResult:
    """Make the model ``spec`` names local (download, convert, cache); ``force`` fetches it again
    even when it is cached. Paths are refused: there is nothing to pull."""
    if not spec.startswith(HF_PREFIX) and not _is_name(spec):
        raise UsageError(f"{spec}: `models pull` takes a model name or hf:OWNER/REPO[/FILE], not a path")
    local = _resolve(spec, download=False, force=False, progress=False)
    if local is not None and local.resolve().is_relative_to(WEIGHTS_DIR.resolve()):
        return PullResult(local, "shipped")
    if local is not None and not force:
        return PullResult(local, "cached")
    path = _resolve(spec, download=True, force=force, progress=progress)
    assert path is not None
    return PullResult(path, "downloaded")


def _is_name(spec: str) -> bool:
    return bool(_NAME.fullmatch(spec)) and not spec.lower().endswith(_WEIGHTS_SUFFIXES)


def _resolve(
    spec: str, *, download: bool, force: bool, progress: bool | None, direction: str | None = None
) -> Path | None:
    if spec.startswith(HF_PREFIX):
        repo, filename, revision = parse_hf_spec(spec)
        return downloads.hf_file(
            repo, filename, revision, label=spec, download=download, force=force, progress=progress
        )

    path = Path(spec).expanduser()
    if path.is_file():
        return _weights_file(path, direction)
    # A folder is never the model, and does not hide a name: a dataset folder called
    # horse2zebra next to `--model horse2zebra` is common.
    if not _is_name(spec):
        if path.is_dir():
            raise WeightsError(f"{spec}: is a folder, not a weights file")
        raise ModelNotFoundError(f"{spec}: no such file")

    shipped = WEIGHTS_DIR / f"{spec}.safetensors"
    if shipped.is_file():
        return shipped
    registry = load_registry()
    entry = registry.get(spec)
    if entry is not None and entry.source == "shipped":
        shipped = WEIGHTS_DIR / str(entry.file)
        if not shipped.is_file():
            raise WeightsError(f"{spec}: the shipped file {shipped} is missing", hint="reinstall img2img")
        return shipped
    cached = cached_model_path(spec)
    remove_stale_cache_temporaries()
    if cached.is_file() and not force:
        return cached
    if entry is None:
        if path.is_dir():
            raise WeightsError(f"{spec}: is a folder, not a weights file")
        raise _unknown_name(spec, registry)
    if entry.source == "hf" and not entry.needs_conversion:
        return downloads.hf_file(
            entry.hf_repo or "", entry.hf_file, entry.hf_revision,
            label=spec, download=download, force=force, progress=progress, sha256=entry.sha256,
        )  # fmt: skip
    if not download:
        return None
    return _download_and_convert(entry, force=force, progress=progress)


# --- reference checkpoints: download, check, convert, cache ---------------------------------

_CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")


def _weights_file(path: Path, direction: str | None) -> Path:
    """``path`` itself, or for a reference checkpoint (``.pth``; any PyTorch checkpoint not named
    ``.safetensors``) its conversion, made once and kept in the cache under the file's sha256."""
    from img2img.files import filetypes

    try:
        kind = filetypes.sniff(path)
    except OSError:
        return path  # the loader says what is wrong with it
    if kind == filetypes.SAFETENSORS or path.suffix.lower() == ".safetensors":
        return path
    if kind in filetypes.PYTORCH_KINDS or path.suffix.lower() in _CHECKPOINT_SUFFIXES:
        return convert_checkpoint_file(path, direction)
    return path


def reference_direction(path: Path) -> str | None:
    """The direction the name of a reference CycleGAN checkpoint says: BtoA for
    ``*_net_G_B.pth`` (the reference's G_B maps B to A), AtoB for ``*_net_G_A.pth``; None for
    other names (``latest_net_G.pth`` of pix2pix maps whichever way it was trained)."""
    if re.search(r"(^|_)G_B$", path.stem):
        return "BtoA"
    return "AtoB" if re.search(r"(^|_)G_A$", path.stem) else None


def convert_checkpoint_file(path: Path, direction: str | None = None) -> Path:
    """The weights-format conversion of the reference checkpoint ``path`` (architecture read from
    its tensors), from the cache (``converted/SHA256.DIRECTION.safetensors``) or made now.

    The recorded direction is the one the file name says (``reference_direction``), else
    ``direction``, else AtoB; each direction is converted once. Raises WeightsError naming
    ``path`` when it is not a usable generator checkpoint."""
    from img2img.models.weights import convert_reference_checkpoint  # imports torch

    if direction not in (None, *DIRECTIONS):
        raise UsageError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    digest = file_sha256(path)
    direction = reference_direction(path) or direction or "AtoB"
    target = cache_dir() / "converted" / f"{digest}.{direction}.safetensors"
    remove_stale_cache_temporaries()
    if target.is_file():
        return target
    try:
        convert_reference_checkpoint(
            path, target, direction=direction,
            source=f"converted from reference checkpoint {path.name} (sha256 {digest})",
        )  # fmt: skip
    except OSError as exc:
        raise WeightsError(
            f"{target.parent}: cannot write the conversion of {path} ({exc.strerror or exc})",
            hint=f"set {ENV_CACHE} to a writable folder, or convert it with `img2img convert`",
        ) from None
    return target


def _download_and_convert(entry: ModelEntry, *, force: bool, progress: bool | None) -> Path:
    target = cached_model_path(entry.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    if entry.source == "hf":
        checkpoint = downloads.hf_file(
            entry.hf_repo or "", entry.hf_file, entry.hf_revision,
            label=entry.name, download=True, force=force, progress=progress, sha256=entry.sha256,
        )  # fmt: skip
        assert checkpoint is not None
        _convert(entry, checkpoint, target, origin=entry.location)
        return target
    url = str(entry.url)
    with downloads.temporary_file(target.parent, entry.name) as partial:
        downloads.download(url, partial, label=entry.name, sha256=entry.sha256, progress=progress, cache_path=target)
        _convert(entry, partial, target, origin=url)
    return target


def _convert(entry: ModelEntry, checkpoint: Path, target: Path, *, origin: str) -> None:
    from img2img.models.weights import convert_reference_checkpoint  # imports torch

    try:
        # Writes through a temporary file and a rename, so the cache never holds half a model.
        convert_reference_checkpoint(
            checkpoint, target, entry.weights_metadata(f"converted from {origin}"),
            declared_by="the registry entry says",
        )  # fmt: skip
    except WeightsError as exc:
        reason = exc.message.removeprefix(f"{checkpoint}: ").removeprefix("refused: ")
        raise DownloadError(f"{entry.name}: refused the checkpoint from {origin}: {reason}") from None


# --- Hugging Face ---------------------------------------------------------------------------


def parse_hf_spec(spec: str) -> tuple[str, str, str | None]:
    """``hf:OWNER/REPO[@REVISION][/FILE]`` -> (repo id, file, revision)."""
    parts = spec[len(HF_PREFIX) :].split("/")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise UsageError(f"{spec}: expected hf:OWNER/REPO[@REVISION][/FILE]")
    name, _, revision = parts[1].partition("@")
    filename = "/".join(parts[2:]) or HF_DEFAULT_FILE
    return f"{parts[0]}/{name}", filename, revision or None


# --- listing --------------------------------------------------------------------------------


def model_status(entry: ModelEntry) -> tuple[str, Path | None]:
    """Where ``entry`` is now, without touching the network: (shipped | cached | downloadable |
    missing, local path or None)."""
    if entry.source == "shipped":
        path = WEIGHTS_DIR / str(entry.file)
        return ("shipped", path) if path.is_file() else ("missing", None)
    shipped = WEIGHTS_DIR / f"{entry.name}.safetensors"
    if shipped.is_file():
        return "shipped", shipped
    cached = cached_model_path(entry.name)
    if cached.is_file():
        return "cached", cached
    if entry.source == "hf" and not entry.needs_conversion:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(entry.hf_repo or "", entry.hf_file, revision=entry.hf_revision)
        if isinstance(found, str):
            return "cached", Path(found)
    return "downloadable", None


def list_models() -> list[dict[str, Any]]:
    """Every registry entry with its status, then shipped or cached files the registry does not
    name (described from their own metadata)."""
    registry = load_registry()
    rows = []
    for entry in sorted(registry.values(), key=lambda e: e.name):
        status, path = model_status(entry)
        rows.append({**entry.to_dict(), "status": status, "path": str(path) if path else None})
    for status, folder in (("shipped", WEIGHTS_DIR), ("cached", cache_dir() / "models")):
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.safetensors")):
            if path.stem in registry or path.name.startswith("."):
                continue
            rows.append({"name": path.stem, **_peek_metadata(path), "status": status, "path": str(path)})
    return rows


_LISTING_KEYS = (
    "task", "dataset", "direction", "description", "architecture", "generator", "eval_mode",
    "source", "location", "sha256",
)  # fmt: skip


def _peek_metadata(path: Path) -> dict[str, Any]:
    """The img2img metadata of a safetensors file, read from its JSON header without torch."""
    fields: dict[str, Any] = {key: None for key in _LISTING_KEYS}
    fields["source"] = "local"
    try:
        with open(path, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            if not 0 < size <= 100 << 20:
                return fields
            header = json.loads(handle.read(size))
        metadata = json.loads(header["__metadata__"]["img2img"])
        generator = GeneratorConfig.from_dict(metadata["generator"])
    except (OSError, ValueError, KeyError, TypeError, RecursionError, Img2ImgError):
        return fields  # listed anyway; `models info` says what is wrong with it
    return {
        **fields,
        "task": metadata.get("task"),
        "direction": metadata.get("direction"),
        "architecture": generator.reference_name,
        "generator": generator.to_dict(),
        "eval_mode": metadata.get("eval_mode"),
        "description": metadata.get("source", ""),
    }


__all__ = [
    "ModelEntry",
    "PullResult",
    "cache_dir",
    "cached_model_path",
    "convert_checkpoint_file",
    "find_local_model",
    "get_model_entry",
    "is_offline",
    "list_models",
    "load_registry",
    "model_status",
    "parse_hf_spec",
    "pull_model",
    "read_registry_file",
    "reference_direction",
    "resolve_model",
]
