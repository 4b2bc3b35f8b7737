"""A folder of images as a dataset (CelebA's ``img_align_celeba`` or any other): list it, record it, read it back.

The download stage of ``data.dataset: image_folder`` fetches nothing. It lists ``data.image_dir`` and writes
``<paths.raw>/image_folder/``:

- ``files.jsonl``: one ``[path, bytes, sha256]`` line per image, paths relative to the folder, sorted;
- ``manifest.json``, written last: dataset, source, the folder's absolute path, the file count and total
  bytes, ``files_sha256`` (the sha256 of ``files.jsonl``, so any added, removed or edited image changes
  the manifest), ``class_names``, ``label_counts`` and the symlinks that were not followed.

Listing rules: every ``.jpg``, ``.jpeg`` and ``.png`` file (any case) in the folder and its subfolders,
except hidden ones (names starting with a dot, like macOS ``._photo.jpg`` files). Symlinks are never
followed: one pointing inside the folder would list an image twice, and one pointing outside (or nowhere)
would read files the folder does not hold, so those are named in a warning and skipped.

Labels: when every image sits in a subfolder and there are at least two subfolders, the top-level
subfolder names are the class names (``smiling/``, ``neutral/``); otherwise the images have no labels.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vaelab.data.raw import MANIFEST
from vaelab.data.sources import IMAGE_FOLDER
from vaelab.errors import DataError
from vaelab.files import atomic_path, ensure_dir, read_json, write_json

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
FILE_LIST = "files.jsonl"
WORKERS = min(8, os.cpu_count() or 1)
_SHOWN = 20  # names listed in one warning before "and N more"


@dataclass(frozen=True)
class Listing:
    root: Path  # the folder, resolved
    files: list[str]  # POSIX paths relative to root, sorted
    skipped_links: list[str] = field(default_factory=list)  # symlinks pointing outside root or nowhere


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str
    label: int


def list_images(image_dir: Path | str) -> Listing:
    """The image files under ``image_dir`` by the rules above; DataError if the folder is missing or empty."""
    given = Path(image_dir)
    if not given.is_dir():
        what = "is not a folder" if given.exists() else "does not exist"
        raise DataError(f"data.image_dir {given} {what}; set data.image_dir to a folder of JPEG or PNG images")
    root = given.resolve()
    files, outside, unreadable = [], [], []
    for folder, dirnames, filenames in os.walk(root, followlinks=False, onerror=lambda err: unreadable.append(err.filename)):
        here = Path(folder)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in dirnames:
            if (here / name).is_symlink() and not _inside(here / name, root):
                outside.append((here / name).relative_to(root).as_posix())
        for name in filenames:
            if name.startswith(".") or not name.lower().endswith(IMAGE_SUFFIXES):
                continue
            path = here / name
            if path.is_symlink():
                if not _inside(path, root):
                    outside.append(path.relative_to(root).as_posix())
                continue
            files.append(path.relative_to(root).as_posix())
    if unreadable:
        log.warning("%s: could not read %d subfolders: %s", root, len(unreadable), _names(unreadable))
    if outside:
        log.warning("%s: skipped %d symlinks pointing outside the folder or nowhere: %s", root, len(outside), _names(outside))
    if not files:
        raise DataError(
            f"data.image_dir {given} holds no images (looked for {', '.join('*' + s for s in IMAGE_SUFFIXES)} in all "
            "subfolders); point data.image_dir at a folder of JPEG or PNG files"
        )
    return Listing(root, sorted(files), sorted(outside))


def class_names_of(files: list[str]) -> tuple[str, ...]:
    """Top-level subfolder names when every file is in one and there are at least two; else ()."""
    tops = {path.split("/", 1)[0] for path in files if "/" in path}
    if len(tops) < 2 or any("/" not in path for path in files):
        return ()
    return tuple(sorted(tops))


def record_folder(image_dir: Path | str, raw_dir: Path | str) -> Path:
    """The download stage for an image folder: write ``files.jsonl`` and ``manifest.json``; return their folder."""
    listing = list_images(image_dir)
    target = ensure_dir(Path(raw_dir) / IMAGE_FOLDER)
    (target / MANIFEST).unlink(missing_ok=True)
    with ThreadPoolExecutor(WORKERS) as pool:
        described = list(pool.map(lambda rel: _describe_file(listing.root / rel), listing.files, chunksize=64))
    unreadable = [rel for rel, info in zip(listing.files, described, strict=True) if info is None]
    if unreadable:
        log.warning("%s: skipped %d files that cannot be read: %s", listing.root, len(unreadable), _names(unreadable))
    kept = [(rel, info) for rel, info in zip(listing.files, described, strict=True) if info is not None]
    if not kept:
        raise DataError(f"data.image_dir {image_dir}: none of its {len(listing.files)} image files can be read")
    class_names = class_names_of([rel for rel, _ in kept])
    label_of = {name: i for i, name in enumerate(class_names)}
    labels = Counter(label_of.get(rel.split("/", 1)[0], 0) for rel, _ in kept)
    text = "".join(json.dumps([rel, size, digest]) + "\n" for rel, (size, digest) in kept)
    total_bytes = sum(size for _, (size, _) in kept)
    with atomic_path(target / FILE_LIST) as tmp:
        tmp.write_text(text, encoding="utf-8")
    manifest = {
        "dataset": IMAGE_FOLDER,
        "source": f"image folder {listing.root}",
        "image_dir": str(listing.root),
        "count": len(kept),
        "bytes": total_bytes,
        "files_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "class_names": list(class_names),
        "label_counts": [labels[i] for i in range(len(class_names))],
        "skipped_links": listing.skipped_links,
        "unreadable_files": unreadable,
    }
    write_json(target / MANIFEST, manifest)
    log.info("%s: %d images (%.1f MB) listed in %s", listing.root, len(kept), total_bytes / 1e6, target)
    return target


def read_folder(raw_dataset_dir: Path | str, dataset: str) -> tuple[dict[str, Any], list[FileEntry]]:
    """The manifest and the file entries the download stage recorded, checked against each other."""
    folder = Path(raw_dataset_dir)
    rerun = "run `dvc repro download` (or `vaelab download`)"
    try:
        manifest = read_json(folder / MANIFEST, rerun)
        if manifest["dataset"] != dataset:
            raise DataError(f"{folder / MANIFEST}: holds {manifest['dataset']!r} but data.dataset is {dataset!r}; {rerun}")
        text = (folder / FILE_LIST).read_text(encoding="utf-8")
        if hashlib.sha256(text.encode("utf-8")).hexdigest() != manifest["files_sha256"]:
            raise DataError(f"{folder / FILE_LIST}: does not match files_sha256 in {MANIFEST}; {rerun}")
        label_of = {name: i for i, name in enumerate(manifest["class_names"])}
        entries = []
        for line in text.splitlines():
            path, size, digest = json.loads(line)
            entries.append(FileEntry(path, int(size), digest, label_of.get(path.split("/", 1)[0], 0)))
    except FileNotFoundError as err:
        raise DataError(f"{err.filename}: not found; {rerun}") from None
    except (KeyError, ValueError, TypeError) as err:
        raise DataError(f"{folder}: unreadable folder manifest ({type(err).__name__}: {err}); {rerun}") from None
    return manifest, entries


def read_checked(root: Path, entry: FileEntry) -> bytes:
    """The file's bytes, provided they are still the ones the download stage recorded."""
    path = root / entry.path
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: listed by the download stage but gone; run `dvc repro download`") from None
    if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
        raise DataError(f"{path}: changed since the download stage listed it; run `dvc repro download`")
    return data


def _describe_file(path: Path) -> tuple[int, str] | None:
    """(bytes, sha256) of a file, or None if it cannot be read (no permission, vanished, an I/O error)."""
    try:
        with open(path, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
            return handle.tell(), digest
    except OSError:
        return None


def _inside(link: Path, root: Path) -> bool:
    try:
        target = link.resolve(strict=True)
    except (OSError, RuntimeError):  # broken, or a loop
        return False
    return target == root or root in target.parents


def _names(names: list[str]) -> str:
    shown = ", ".join(str(n) for n in names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")
