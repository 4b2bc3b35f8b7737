"""The model registry: one version per evaluated run, the alias ``best`` on the lowest test NLL, loadable anywhere."""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from vaelab.config.load import load_config
from vaelab.data.processed import load_splits
from vaelab.errors import VaelabError
from vaelab.stages import run_evaluate, run_train
from vaelab.tracking import registry
from vaelab.tracking.registry import (
    BEST_ALIAS,
    METRIC_TAG,
    NLL_TAG,
    point_best_alias,
    register_evaluated_model,
    registered_model_name,
)

NAME = "vaelab-mnist"  # registered_model_name("vaelab-mnist", "mnist"): the shipped params.yaml
METRIC = "test_nll_k100_grayscale_nats"  # the NLL the shipped params.yaml reports (evaluate.nll_samples 100)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Iterator[str]:
    """One SQLite store for the fast tests (creating one takes seconds); each test uses its own model name."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('registry') / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        yield uri
        # MLflow takes None (forget the URI, unset the variable) though its annotation leaves None out.
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("experiment", "dataset", "expected"),
    [
        ("vaelab-mnist", "mnist", "vaelab-mnist"),
        ("vaelab", "mnist", "vaelab-mnist"),
        ("vaelab-mnist", "fashion_mnist", "vaelab-mnist-fashion_mnist"),
        ("vaelab-fashion_mnist", "mnist", "vaelab-fashion_mnist-mnist"),  # "_mnist" is not "-mnist"
        ("mnist", "mnist", "mnist"),
        ("team/vae: faces", "image_folder", "team-vae-faces-image_folder"),  # MLflow refuses "/" and ":"
    ],
)
def test_registered_model_name(experiment: str, dataset: str, expected: str) -> None:
    assert registered_model_name(experiment, dataset) == expected
    assert registered_model_name(experiment, dataset, "none") == expected


@pytest.mark.parametrize(
    ("experiment", "dataset", "binarize", "expected"),
    [
        ("vaelab-mnist", "mnist", "dynamic", "vaelab-mnist-binarized"),
        ("vaelab-mnist", "mnist", "fixed", "vaelab-mnist-binarized"),
        ("vaelab", "fashion_mnist", "dynamic", "vaelab-fashion_mnist-binarized"),
        ("vaelab-mnist-likelihood", "mnist", "dynamic", "vaelab-mnist-likelihood-mnist-binarized"),
    ],
)
def test_models_of_binarized_data_are_registered_apart(experiment: str, dataset: str, binarize: str, expected: str) -> None:
    assert registered_model_name(experiment, dataset, binarize) == expected


def test_a_store_without_a_registry_is_one_clear_line(store: str, project_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "ftp://registry.invalid/models")
    config = load_config(project_root / "params.yaml")
    with pytest.raises(VaelabError) as caught:
        register_evaluated_model("0" * 32, config, {METRIC: 150.0})
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("cannot register the model in ftp://registry.invalid/models (Model Registry features are not supported")
    assert message.endswith(
        "point MLFLOW_TRACKING_URI (and MLFLOW_REGISTRY_URI, if set) at a database such as sqlite:///mlflow.db or a server backed by one"
    )


def test_alias_moves_only_for_a_lower_nll_and_undoes_a_stale_write(store: str) -> None:
    client = MlflowClient(store)
    name = "alias-rules"
    client.create_registered_model(name)
    assert point_best_alias(client, name, METRIC) == (None, None, {})

    _fake_version(client, name, 150.0)
    assert point_best_alias(client, name, METRIC)[:2] == (None, 1)
    _fake_version(client, name, 151.0)
    _fake_version(client, name, 150.0)  # a tie: the alias stays on the older version
    _fake_version(client, name, "nan")  # no candidate
    assert point_best_alias(client, name, METRIC) == (1, 1, {1: 150.0, 2: 151.0, 3: 150.0})
    _fake_version(client, name, 149.5)
    assert point_best_alias(client, name, METRIC)[:2] == (1, 5)

    # A writer that listed the versions before version 5 existed and wrote its (worse) choice last.
    client.set_registered_model_alias(name, BEST_ALIAS, "1")
    assert point_best_alias(client, name, METRIC)[:2] == (1, 5)


def test_only_versions_judged_by_the_same_metric_are_compared(store: str) -> None:
    client = MlflowClient(store)
    name = "alias-metrics"
    client.create_registered_model(name)
    _fake_version(client, name, 90.0, metric="test_nll_k1000_grayscale_nats")  # another K: lower, yet not alike
    _fake_version(client, name, 150.0)
    _fake_version(client, name, 140.0, metric="test_nll_k100_binarized_nats")
    client.create_model_version(name, source="file:///nowhere", tags={NLL_TAG: "80.0"})  # no metric tag: no candidate
    _fake_version(client, name, 151.0)
    assert point_best_alias(client, name, METRIC) == (None, 2, {2: 150.0, 5: 151.0})

    # The alias on a version of another metric moves to this metric's best, however low the other NLL.
    client.set_registered_model_alias(name, BEST_ALIAS, "1")
    assert point_best_alias(client, name, METRIC) == (1, 2, {2: 150.0, 5: 151.0})
    assert point_best_alias(client, name, "test_nll_k1000_grayscale_nats") == (2, 1, {1: 90.0})


def test_a_writer_overtaken_by_a_better_evaluation_puts_the_alias_back(store: str) -> None:
    """The interleaving the re-check exists for: between our listing and our write, another evaluation
    registers a better version and points the alias at it; our (now stale) write must not be the end."""
    name = "alias-overtaken"
    client = MlflowClient(store)
    client.create_registered_model(name)
    _fake_version(client, name, 150.0)

    class OvertakenClient(MlflowClient):
        overtaken = False

        def set_registered_model_alias(self, *args, **kwargs):
            if not self.overtaken:
                self.overtaken = True
                _fake_version(client, name, 148.0)
                assert point_best_alias(client, name, METRIC)[1] == 2  # the other evaluation finishes first
            super().set_registered_model_alias(*args, **kwargs)

    assert point_best_alias(OvertakenClient(store), name, METRIC)[1:] == (2, {1: 150.0, 2: 148.0})
    assert client.get_model_version_by_alias(name, BEST_ALIAS).version in (2, "2")


def test_evaluations_finishing_together_leave_the_alias_on_the_minimum(store: str) -> None:
    name = "alias-race"
    MlflowClient(store).create_registered_model(name)
    nlls = [round(random.Random(seed).uniform(140, 160), 3) for seed in range(8)]
    start = threading.Barrier(len(nlls))
    errors: list[BaseException] = []

    def evaluate(nll: float) -> None:
        client = MlflowClient(store)
        start.wait()
        try:
            _fake_version(client, name, nll)
            point_best_alias(client, name, METRIC)
        except BaseException as err:  # noqa: BLE001 - a thread's exception is otherwise only a warning, and the test would pass
            errors.append(err)

    threads = [threading.Thread(target=evaluate, args=(nll,)) for nll in nlls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    client = MlflowClient(store)
    best = client.get_model_version_by_alias(name, BEST_ALIAS)
    assert float(best.tags[NLL_TAG]) == min(nlls)
    assert len(client.search_model_versions(f"name = '{name}'")) == len(nlls)


@pytest.mark.slow
def test_each_evaluation_adds_a_version_and_best_follows_the_lowest_nll(
    tiny_project, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    project = tiny_project()
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    client = MlflowClient(mlflow_uri)
    # A fair first model, a nearly untrained one (worse: the alias must stay), a longer-trained one (better).
    trainings = [
        {"train.learning_rate": 0.003},
        {"train.learning_rate": 1e-6},
        {"train.learning_rate": 0.003, "train.epochs": 3},
    ]
    nll_of_version: dict[int, float] = {}
    run_of_version: dict[int, str] = {}
    best_after: list[int] = []
    for overrides in trainings:
        config = load_config("params.yaml", overrides)
        run_id = run_train(config)
        assert run_id is not None  # one process is its own chief
        caplog.clear()
        with caplog.at_level(logging.INFO, logger=registry.__name__):
            nll = run_evaluate(config)["test_nll_k4_grayscale_nats"]  # tiny.TINY: evaluate.nll_samples 4

        versions = client.search_model_versions(f"name = '{NAME}'")
        assert len(versions) == len(nll_of_version) + 1
        new = max(versions, key=lambda v: int(v.version))
        assert new.run_id == run_id
        assert new.tags[NLL_TAG] == repr(nll) and new.tags[METRIC_TAG] == "test_nll_k4_grayscale_nats"
        assert new.tags["run_name"] == client.get_run(run_id).info.run_name
        assert new.source is not None
        logged = client.get_logged_model(new.source.removeprefix("models:/"))
        assert logged.source_run_id == run_id
        nll_of_version[int(new.version)] = nll
        run_of_version[int(new.version)] = run_id

        expected_best = min(nll_of_version, key=lambda version: nll_of_version[version])
        best = int(client.get_model_version_by_alias(NAME, BEST_ALIAS).version)
        assert best == expected_best, nll_of_version
        best_after.append(best)
        (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("registered ")]
        assert line.startswith(f"registered {NAME} version {new.version} (test NLL {nll:.2f}); alias {BEST_ALIAS} ")

    nlls = list(nll_of_version.values())
    assert nlls[1] > nlls[0] > nlls[2], f"the trainings did not give the planned NLL order: {nlls}"
    assert best_after == [1, 1, 3]  # not moved by the worse second model, moved by the better third

    result = _predict_in_new_process(project, mlflow_uri)
    assert result["shape"] == [3, 28, 28, 1]
    assert result["run_id"] == run_of_version[3]
    # The registered model generates: 16 images from the prior, the same for the same seed.
    assert result["sample_shape"] == [16, 28, 28, 1]
    assert result["same_twice"] is True


def _fake_version(client: MlflowClient, name: str, nll: float | str, metric: str = METRIC) -> None:
    # A version without a model behind it: enough for the alias rule, which reads only the tags.
    client.create_model_version(
        name, source="file:///nowhere", tags={NLL_TAG: repr(nll) if isinstance(nll, float) else nll, METRIC_TAG: metric}
    )


def _predict_in_new_process(project: Path, uri: str) -> dict:
    images = project / "few_images.npy"
    np.save(images, load_splits(project / "data/processed").x_test[:3])
    elsewhere = project / "elsewhere"
    elsewhere.mkdir()
    code = (
        "import json, sys, mlflow, numpy as np\n"
        f"model = mlflow.pyfunc.load_model('models:/{NAME}@{BEST_ALIAS}')\n"
        "out = np.asarray(model.predict(np.load(sys.argv[1])))\n"
        "sample = [model.predict(None, params={'mode': 'sample', 'n': 16, 'seed': 0}) for _ in range(2)]\n"
        "print(json.dumps({'shape': list(out.shape), 'run_id': model.metadata.run_id,\n"
        "                  'sample_shape': list(sample[0].shape), 'same_twice': bool(np.array_equal(*sample))}))\n"
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", code, str(images)], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
