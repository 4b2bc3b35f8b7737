"""Everything that talks to MLflow: run start and resume, per-epoch metrics, artifacts and the model.

No module outside ``vaelab.tracking`` imports ``mlflow``. The store is ``MLFLOW_TRACKING_URI`` when set (a
server or a database), else ``mlflow.db`` in the project root with artifacts in ``mlartifacts/`` beside it.
The project root is the DVC repository's, also for experiments that DVC runs in temporary copies of it
(``dvc exp run --temp``, the queue), so every run of the project lands in one store.
Credentials in URLs are replaced by ``***`` in everything this package logs or writes.

- :mod:`.store`: where the store is, whether it answers (:class:`~.store.StoreError`), retries.
- :mod:`.experiments`: :func:`~.experiments.open_experiment`, which finds or creates the experiment, sets its
  view and ends its orphaned runs FAILED; every new run goes through it.
- :mod:`.runs`: start or resume a run; its params, tags, description, metrics, artifacts and datasets.
- :mod:`.epochs`: the Keras callback logging each epoch, and the epochs a resumed training had not logged.
- :mod:`.export`: the trained model as an MLflow model.
- :mod:`.run_info`: the file through which the train stage names its run to the evaluate stage.
- :mod:`.queries`: an experiment's runs as a table, for ``vaelab compare``.
- :mod:`.redact`: passwords out of URLs (loads neither MLflow nor Keras).
- :mod:`.registry`: the registered model and its alias ``best``.
- :mod:`.view`: the experiment's saved view in the MLflow UI (its tags).
- :mod:`.ui`: ``vaelab ui``'s part: the view's address, and ``mlflow ui`` itself.
- :mod:`.orphans`: runs whose process died, ended FAILED.
- :mod:`.datasets`: the splits as MLflow dataset inputs.
- :mod:`.notes`: the run's description text.
"""
