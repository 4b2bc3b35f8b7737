"""What the vaelab commands print: their own log lines, Python warnings, and none of TensorFlow's start-up chatter.

:mod:`vaelab.cli` calls :func:`configure` (or :func:`quiet_tensorflow` alone, for tools that set their own log
format) before anything imports TensorFlow.
TensorFlow's native code logs through its own channel (absl), straight to the process's stderr, so Python
logging cannot filter it; instead:

* ``TF_CPP_MIN_LOG_LEVEL`` defaults to 2 (an exported value is kept), which hides the native INFO and
  WARNING lines (the CPU-feature notice at load, Grappler and tf.data chatter later). ERROR lines stay.
* Two notices are printed while the native libraries load, before that setting takes effect, once by each
  library that carries its own copy of absl: "WARNING: All log messages before absl::InitializeLog() ..."
  and "oneDNN custom operations are on ...". They are cut from stderr during ``import tensorflow`` only;
  everything else written then is passed on. (Turning oneDNN off, the one setting that silences the
  second, made epochs about 1.5 times as long and changed the losses.)
* TensorFlow's Python logger ("tensorflow") shows warnings and errors only; its INFO lines are file paths
  of saved models.

``VAELAB_VERBOSE_TF=1`` (or true/yes/on) leaves all of TensorFlow's logging as TensorFlow sets it.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator

VERBOSE_TF_ENV = "VAELAB_VERBOSE_TF"
PLAIN_FORMAT = "%(message)s"
VERBOSE_FORMAT = "%(levelname)s %(name)s: %(message)s"

# Matched against whole lines of stderr written while the `tensorflow` package loads.
_LOAD_NOTICE = re.compile(
    rb"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"
    rb"|I\d{4} [^\]\n]*\] oneDNN custom operations are on\."
)


def configure(verbose: bool = False, format: str | None = None) -> None:
    """Log INFO and above to stderr (as ``level module: message`` when ``verbose``, or in ``format``);
    quiet TensorFlow's own logs."""
    logging.basicConfig(level=logging.INFO, format=format or (VERBOSE_FORMAT if verbose else PLAIN_FORMAT))
    quiet_tensorflow()


def verbose_tensorflow() -> bool:
    return os.environ.get(VERBOSE_TF_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def quiet_tensorflow() -> None:
    """Keep TensorFlow's internal log lines out of the output, unless VAELAB_VERBOSE_TF asks for them.

    Works only before TensorFlow is imported for the native lines; repeated calls do nothing more.
    """
    if verbose_tensorflow():
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("tensorflow").setLevel(logging.WARNING)
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietTensorFlowLoad) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowLoad())


def is_load_notice(line: bytes) -> bool:
    """True for the notices TensorFlow's native libraries print while they load (see the module docstring)."""
    return _LOAD_NOTICE.match(line) is not None


class _QuietTensorFlowLoad(importlib.abc.MetaPathFinder):
    """An import hook for the `tensorflow` package alone: its loading runs with stderr filtered.

    A hook rather than importing TensorFlow up front, so commands that never need it (download, preprocess,
    --help) do not pay seconds to load it.
    """

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)  # one use; also keeps the lookup below from landing here again
        spec = importlib.util.find_spec(fullname)
        loader = getattr(spec, "loader", None)
        if loader is not None and hasattr(loader, "exec_module"):
            load = loader.exec_module

            def exec_module(module) -> None:
                with _load_notices_dropped():
                    load(module)

            loader.exec_module = exec_module  # this loader instance serves tensorflow/__init__.py only
        return spec


@contextlib.contextmanager
def _load_notices_dropped() -> Iterator[None]:
    """Send file descriptor 2 to a temporary file meanwhile, then write it back without the load notices.

    A file, not a pipe: native code writing while it holds the GIL can never block on it. Whatever happens
    inside (an ImportError too) is written back before this returns.
    """
    _flush_stderr()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to filter
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            _flush_stderr()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = b"".join(line for line in captured.read().splitlines(keepends=True) if not is_load_notice(line))
            if kept:
                with open(2, "wb", closefd=False) as stderr:
                    stderr.write(kept)


def _flush_stderr() -> None:
    if sys.stderr is not None:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
