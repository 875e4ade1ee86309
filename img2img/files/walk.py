"""Listing the images of a folder or a glob: the one walker of every command that reads folders.

``translate`` (folder and glob INPUTs), the training datasets, ``data combine`` and ``eval`` all
list images through :func:`list_images` (a folder) or :func:`glob_images` (a pattern), so the
same folder gives the same images everywhere, and a folder gives what ``FOLDER/**/*`` gives.

The policy (README, "Which files are read"):

- files are kept when their extension is one Pillow can open, in any case (``.JPG`` = ``.jpg``);
- names that start with ``.`` (hidden files and folders) are skipped, as the shell's ``*`` does;
- symbolic links are followed, to files and to folders; a link back to a folder being walked
  (a loop) is not followed, with a note;
- FIFOs, sockets and devices are never opened (opening a FIFO blocks until someone writes to
  it): they are skipped with a note, as are broken symbolic links;
- a folder that cannot be listed (permission denied) is an error, not an empty folder, because
  its images would otherwise be missing without a word;
- quoted globs (``"photos/**/*.png"``) are matched here, not by the shell, one path component at
  a time, ignoring case, with ``**`` for any number of folders; a folder that matches is listed
  whole.

Nothing is opened but folders; images are read by :mod:`img2img.files.imageio`.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from img2img.files.filetypes import special_file_kind
from img2img.files.imageio import is_image_path

GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class FoundImage:
    """One image file: ``path`` as reached (through any symbolic links, not resolved) and
    ``relative``, its name relative to the listed folder or to the glob's fixed folder (output
    names are made from it)."""

    path: Path
    relative: Path


@dataclass
class Listing:
    """What a walk found: the images in sorted order (by relative path), ``notes`` on entries
    skipped on purpose that the user should hear about (special files, broken links, loops), and
    ``errors`` for folders that could not be listed (the listing is then incomplete)."""

    images: list[FoundImage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def paths(self) -> list[Path]:
        return [found.path for found in self.images]


def list_images(
    folder: str | os.PathLike[str],
    *,
    recursive: bool = True,
    exclude: Iterable[str | os.PathLike[str]] = (),
) -> Listing:
    """The image files in ``folder`` (and in its sub-folders when ``recursive``), following
    symbolic links with loop protection; ``exclude`` names folders not to enter (e.g. an output
    folder inside the input folder). Never raises for what it finds: see :class:`Listing`."""
    folder = Path(folder)
    listing = Listing()
    root_id = _identity(folder)
    if root_id is None:
        listing.errors.append(f"{folder}: cannot list folder: no such folder")
        return listing
    visit = _Visit(lambda path, relative: True, lambda relative: True)
    if not recursive:
        visit = _Visit(lambda path, relative: True, lambda relative: False)
    _Walker(listing, _identities(exclude)).walk(folder, Path(), frozenset({root_id}), visit)
    listing.images.sort(key=lambda found: found.relative.parts)
    return listing


def glob_images(pattern: str, *, exclude: Iterable[str | os.PathLike[str]] = ()) -> Listing:
    """The image files that ``pattern`` matches (a folder that matches gives all its images),
    named relative to the pattern's fixed folder (:func:`glob_base`). Components are matched
    with :mod:`fnmatch` ignoring case; ``**`` stands for any number of folders, none included.
    Walks with the rules of :func:`list_images`, so ``DIR/**/*`` lists what ``DIR`` does."""
    base = glob_base(pattern)
    skip = 0 if str(base) == "." else len(base.parts)
    pattern_parts = tuple(part.lower() for part in Path(pattern).parts[skip:])
    deep = "**" in pattern_parts
    listing = Listing()
    root_id = _identity(base)
    if root_id is None or not base.is_dir():
        return listing

    def lowered(relative: Path) -> tuple[str, ...]:
        return tuple(part.lower() for part in relative.parts)

    everything = _Visit(lambda path, relative: True, lambda relative: True)

    def descend(relative: Path) -> _Visit | None:
        names = lowered(relative)
        if _matches(pattern_parts, names):
            return everything  # a folder that matches: all its images
        return visit if deep or len(names) < len(pattern_parts) else None

    visit = _Visit(lambda path, relative: _matches(pattern_parts, lowered(relative)), descend)
    _Walker(listing, _identities(exclude)).walk(base, Path(), frozenset({root_id}), visit)
    unique: dict[Path, FoundImage] = {}
    for found in listing.images:
        unique.setdefault(found.path, found)
    listing.images = sorted(unique.values(), key=lambda found: found.relative.parts)
    listing.notes = list(dict.fromkeys(listing.notes))
    return listing


def has_glob_chars(text: str) -> bool:
    return bool(GLOB_CHARS.intersection(text))


def glob_base(pattern: str) -> Path:
    """The folder part of a glob before its first wildcard: names are kept relative to it."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts[:-1]:
        if has_glob_chars(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


# --- internals ---------------------------------------------------------------------------------


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _identities(paths: Iterable[str | os.PathLike[str]]) -> frozenset[tuple[int, int]]:
    return frozenset(i for i in (_identity(Path(p)) for p in paths) if i is not None)


def _matches(pattern: tuple[str, ...], names: tuple[str, ...]) -> bool:
    """Whether path components ``names`` match glob components ``pattern`` (``**``: any number)."""
    if not pattern:
        return not names
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_matches(rest, names[i:]) for i in range(len(names) + 1))
    return bool(names) and fnmatch.fnmatchcase(names[0], head) and _matches(rest, names[1:])


@dataclass(frozen=True)
class _Visit:
    """What a walk keeps: ``keep(path, relative)`` for image files; ``descend(relative)`` for
    folders: True (same rules below), a _Visit (other rules below), or False/None (skip)."""

    keep: Callable[[Path, Path], bool]
    descend: Callable[[Path], "bool | _Visit | None"]


class _Walker:
    def __init__(self, listing: Listing, exclude: frozenset[tuple[int, int]]):
        self.listing = listing
        self.exclude = exclude

    def walk(self, folder: Path, relative: Path, ancestors: frozenset[tuple[int, int]], visit: _Visit) -> None:
        try:
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
        except OSError as exc:
            self.listing.errors.append(f"{folder}: cannot list folder: {exc.strerror or exc}")
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path, rel = folder / entry.name, relative / entry.name
            if not entry.is_symlink() and entry.is_file(follow_symlinks=False):
                # the common case, answered by scandir's d_type without a stat call
                if is_image_path(entry.name) and visit.keep(path, rel):
                    self.listing.images.append(FoundImage(path, rel))
                continue
            try:
                st = entry.stat(follow_symlinks=True)  # a link's target is what matters
            except OSError as exc:
                if visit.keep(path, rel):
                    # vanished since the listing, or cannot be looked at
                    problem = "broken symbolic link" if entry.is_symlink() else exc.strerror or exc
                    self.listing.notes.append(f"{path}: skipped: {problem}")
                continue
            if stat.S_ISDIR(st.st_mode):
                identity = (st.st_dev, st.st_ino)
                below = visit.descend(rel) if identity not in self.exclude else None
                if below and identity in ancestors:
                    target = os.readlink(path) if entry.is_symlink() else "a folder above it"
                    self.listing.notes.append(
                        f"{path}: skipped: symbolic link loop (to {target}, a folder being listed)"
                    )
                elif below:
                    self.walk(path, rel, ancestors | {identity}, visit if below is True else below)
            elif stat.S_ISREG(st.st_mode):
                if is_image_path(entry.name) and visit.keep(path, rel):
                    self.listing.images.append(FoundImage(path, rel))
            elif visit.keep(path, rel):
                kind = special_file_kind(st.st_mode) or "not a regular file"
                self.listing.notes.append(f"{path}: skipped: {kind}, not an image file")


__all__ = [
    "FoundImage",
    "GLOB_CHARS",
    "Listing",
    "glob_base",
    "glob_images",
    "has_glob_chars",
    "list_images",
]
