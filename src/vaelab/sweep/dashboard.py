"""optuna-dashboard on a sweep's storage: every study in it, their trials, and each trial's pictures.

The pictures are read from the artifact folder the workers uploaded them to
(:func:`vaelab.sweep.storage.resolve_artifact_folder`); the storage itself holds only their ids and names.

Part of vaelab.sweep; Optuna and optuna-dashboard are imported inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from vaelab.errors import VaelabError
from vaelab.sweep.storage import open_artifact_store

if TYPE_CHECKING:
    import optuna


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
