"""optuna-dashboard on a sweep's storage: every study in it, their trials, and each trial's pictures.

The pictures are read from the artifact folder the workers uploaded them to
(:func:`vaelab.sweep.storage.resolve_artifact_folder`); the storage itself holds only their ids and names.

Part of vaelab.sweep; Optuna and optuna-dashboard are imported inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from vaelab.errors import VaelabError
from vaelab.sweep.storage import is_url, open_artifact_store, open_storage
from vaelab.tracking.redact import redact_url

if TYPE_CHECKING:
    import optuna

NO_STUDY_HINT = "run `make sweep` first"


def open_study_storage(spec: str, study_name: str) -> tuple[optuna.storages.BaseStorage, int]:
    """The storage at ``spec`` and the id of its study ``study_name``; a one-line error when either is missing."""
    # Opening a journal path creates the file, which would hide that no sweep ever ran here.
    if not is_url(spec) and not Path(spec).is_file():
        raise VaelabError(f"no study yet: {spec} does not exist; {NO_STUDY_HINT}")
    storage = open_storage(spec)
    try:
        return storage, storage.get_study_id_from_name(study_name)
    except KeyError:
        names = sorted(study.study_name for study in storage.get_all_studies())
        known = f"it has {', '.join(repr(name) for name in names)}" if names else "it has none"
        raise VaelabError(f"no study {study_name!r} yet in {redact_url(spec)} ({known}); {NO_STUDY_HINT} or pass --study") from None


def study_address(host: str, port: int, study_id: int) -> str:
    return f"http://{host}:{port}/dashboard/studies/{study_id}"


def run_dashboard(storage: optuna.storages.BaseStorage, artifact_folder: Path, host: str, port: int) -> None:
    """Serve optuna-dashboard on ``host``:``port`` until interrupted; a port in use is a one-line error."""
    import errno

    import optuna_dashboard

    try:
        optuna_dashboard.run_server(storage, host=host, port=port, artifact_store=open_artifact_store(artifact_folder))
    except OSError as err:
        if err.errno != errno.EADDRINUSE:
            raise
        raise VaelabError(f"port {port} on {host} is in use, perhaps by another dashboard; choose another with --port") from None
