#!/bin/bash
# Copy the resumable state of the training resume.sh runs (the newest checkpoint, state.json, the MLflow store)
# from the clone into this folder, to be committed between sessions.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
clone=$(cd "$1" && pwd)
latest=$(ls "$clone/checkpoints/train/" | grep '^model-epoch-.*\.keras$' | sort | tail -1)
mkdir -p "$here/checkpoints"
rm -f "$here"/checkpoints/model-epoch-*.keras
cp "$clone/checkpoints/train/$latest" "$clone/checkpoints/train/state.json" "$here/checkpoints/"
# SQLite's online backup: a consistent copy even while the training writes to the store.
python -c "import sqlite3, sys; sqlite3.connect(sys.argv[1]).backup(sqlite3.connect(sys.argv[2]))" "$clone/mlflow.db" "$here/mlflow.db"
echo "saved $latest"
# Both are DVC-tracked (over 2 MiB: not for git); record the new versions in the .dvc files. Only a DVC remote
# keeps them beyond this machine's cache: push there when the project has one.
dvc add -q "$here/checkpoints" "$here/mlflow.db"
if dvc remote default >/dev/null 2>&1 && [ -n "$(dvc remote default 2>/dev/null)" ]; then
  dvc push -q "$here/checkpoints.dvc" "$here/mlflow.db.dvc"
else
  # Committed without a remote, the .dvc files name data no other clone can get (and `dvc commit` of the whole
  # project stops on them there), so say so.
  echo "no DVC remote: the state is in this machine's DVC cache only; commit checkpoints.dvc and mlflow.db.dvc only once a remote has it" >&2
fi
