"""What a name or a path in the params may be, as pydantic types: checks of the text alone, no disk.

The disk is asked in :mod:`.disk`, once the whole config is valid.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path, PurePath
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

from vaelab.data.sources import DATASET_NAMES

# MLflow's registry keeps a model's name in a String(256) column, and vaelab names the model
# "<experiment>-<dataset>" (vaelab.tracking.registry): the experiment gets what the longest dataset name leaves.
REGISTERED_MODEL_NAME_MAX = 256
# sweep.study_name also names the folder sweeps/<study_name>/; a file name holds at most 255 bytes (NAME_MAX).
FILE_NAME_MAX_BYTES = 255


def first_control_character(text: str) -> str | None:
    # Cc: NUL (which every OS call refuses), line breaks (which would split a one-line error) and escapes;
    # Cf: invisible ones, such as a right-to-left override that makes a name read as another.
    return next((char for char in text if unicodedata.category(char) in ("Cc", "Cf")), None)


def printable(value: Any) -> Any:
    """Text that names something: not blank, no control characters. Other types pass on to the field's own check."""
    if not isinstance(value, str):
        return value
    if not value.strip():
        raise ValueError("must not be empty or blank")
    bad = first_control_character(value)
    if bad is not None:
        raise ValueError(f"must not contain control or invisible characters such as {bad!r}")
    return value


def _file_path(value: Any) -> Any:
    value = printable(value)
    # A trailing "/" or a last part ".." names a folder; Path() would quietly drop the slash.
    if isinstance(value, str) and (value.endswith(("/", os.sep)) or PurePath(value).name in ("", "..")):
        raise ValueError("must name a file, but names a folder")
    return value


def _keras_file_path(value: Any) -> Any:
    value = _file_path(value)
    if isinstance(value, str) and PurePath(value).suffix != ".keras":
        raise ValueError("must end in .keras, the format Keras 3 saves and the evaluate stage loads")
    return value


FolderPath = Annotated[Path, BeforeValidator(printable)]
FilePath = Annotated[Path, BeforeValidator(_file_path)]
KerasFilePath = Annotated[Path, BeforeValidator(_keras_file_path)]
PrintableText = Annotated[str, AfterValidator(printable)]


def _name(value: str) -> str:
    """An experiment or study name: printable, no surrounding spaces, and usable as one folder's name."""
    printable(value)
    if value != value.strip():
        raise ValueError("must not start or end with white space, which would make it look like another name")
    if "/" in value or "\\" in value:
        raise ValueError("must not contain / or \\: the name also names a folder (mlartifacts/, sweeps/)")
    if value in (".", ".."):
        raise ValueError("must not be . or .., which name folders that already exist")
    return value


def _experiment_name(value: str) -> str:
    # "-binarized": the suffix of models of binarized data (vaelab.tracking.registry).
    longest = REGISTERED_MODEL_NAME_MAX - len("-") - max(len(name) for name in DATASET_NAMES) - len("-binarized")
    if len(value) > longest:
        raise ValueError(
            f"must be at most {longest} characters, not {len(value)}: the registered model "
            f"<experiment>-<dataset>-binarized gets at most {REGISTERED_MODEL_NAME_MAX}"
        )
    return value


def _file_name_length(value: str) -> str:
    size = len(value.encode("utf-8"))
    if size > FILE_NAME_MAX_BYTES:
        raise ValueError(f"must be at most {FILE_NAME_MAX_BYTES} bytes in UTF-8, not {size}: it names a folder")
    return value


ExperimentName = Annotated[str, AfterValidator(_name), AfterValidator(_experiment_name)]
StudyName = Annotated[str, AfterValidator(_name), AfterValidator(_file_name_length)]


def overlap(named: list[tuple[str, Path]]) -> str | None:
    """The first two of the ``(key, path)`` pairs that are the same place or one inside the other, as words;
    None if all are apart. DVC refuses overlapping outputs, but a stage run directly would overwrite or
    delete another's files."""
    normalised = [(key, str(path), os.path.normpath(path)) for key, path in named]
    for key, written, path in normalised:
        for other, other_written, other_path in normalised:
            if other != key and (path == other_path or _inside(path, other_path)):
                relation = "is the same path as" if path == other_path else "lies inside"
                return f"{key} ({written!r}) {relation} {other} ({other_written!r}); give each its own place"
    return None


def _inside(path: str, folder: str) -> bool:
    """Whether ``path`` lies below ``folder``, as written (no file system lookups; both normalised)."""
    if folder == os.curdir:
        return not os.path.isabs(path) and path != os.pardir and not path.startswith(os.pardir + os.sep)
    return path.startswith(folder.rstrip(os.sep) + os.sep)
