"""Exceptions for mistakes a user can fix.

Stage entry points turn these into one line on stderr and exit code 2 (see ``vaelab.cli``);
anything else is a bug and keeps its traceback.
"""


class VaelabError(Exception):
    """A user-facing error: the message names the file, key or value and what is allowed."""


class ConfigError(VaelabError):
    """params.yaml (or an override) is invalid."""


class DataError(VaelabError):
    """A data file or source is missing, corrupt or does not match its checksum."""


class TrainingError(VaelabError):
    """Training cannot go on (for example the loss became NaN)."""


class InputMismatchError(DataError):
    """A stage's input was made from other params than the ones it was given (remake it with the stage named)."""


def first_line(err: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (at most ``limit`` characters), or its type's name if it has none."""
    text = str(err).strip()
    return text.splitlines()[0][:limit] if text else type(err).__name__
