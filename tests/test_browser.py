"""The promise "compare runs in the MLflow UI", checked in a real browser.

Two real runs (the train, classifier and evaluate stage functions on tiny data) go into an SQLite store;
`mlflow ui`, started as `vaelab ui` starts it, serves it on 127.0.0.1, and Debian's chromium, driven by
Playwright, checks the address that `vaelab ui` prints (the training runs with their headline columns, first
screen, no click), a run's page, the runs list, the comparison view, the view's charts (the second address
`vaelab ui` prints) and an image artifact. Every test's tab is a new browser context: a fresh profile with
nothing in localStorage. Screenshots land in test-artifacts/browser/.
Without chromium or Playwright the tests skip locally but fail under CI=true.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from tiny import write_bar_splits, write_params

from vaelab.config.load import load_config

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PROJECT_ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = PROJECT_ROOT / "test-artifacts" / "browser"
SHOWN_METRICS = ("test_nll_k4_grayscale_nats", "test_neg_elbo_k1_grayscale_nats", "sample_fid_classifier")
SWEPT_PARAMS = ("train.z_dim", "train.r_loss_factor", "train.learning_rate")
# Only in MLflow's GenAI view of an experiment: its charts and its side-bar entries.
GENAI_ONLY = ("Token usage", "Latency", "Sessions", "Judges", "Evaluation runs")
UI_TIMEOUT_MS = 30_000


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"the browser test cannot run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def playwright_api():
    """Playwright's entry point, once chromium and the package are known to be there (before any slow set-up)."""
    if shutil.which(CHROMIUM) is None:
        _unavailable(f"no chromium at {CHROMIUM}; install Debian's: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is missing; pip install -r requirements.lock")
    return sync_playwright


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory, playwright_api):
    """`mlflow ui` on a free 127.0.0.1 port over a store with two FINISHED runs (z_dim 2 and 3) made by the
    real stage functions. The server boots while the runs train; it is stopped after the module."""
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("ui")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    MlflowClient(uri).search_experiments()  # creates the tables first: the server must not race the stages to it
    server, url, log_path = _start_server(root, uri)
    try:
        runs = _make_runs(root, uri)
        experiment_id = MlflowClient(uri).get_run(runs[0].id).info.experiment_id
        tags_from_stages = MlflowClient(uri).get_experiment(experiment_id).tags  # before `vaelab ui` sets any
        address, charts_address = _printed_addresses(root, uri, url)
        _wait_until_healthy(server, url, log_path)
        samples_png = (root / "reports/plots/samples.png").read_bytes()
        yield SimpleNamespace(
            url=url,
            runs=runs,
            experiment_id=experiment_id,
            tags_from_stages=tags_from_stages,
            address=address,
            charts_address=charts_address,
            samples_size=struct.unpack(">II", samples_png[16:24]),  # PNG IHDR: width, height
        )
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # its own session: mlflow and its uvicorn, nothing else
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _start_server(root: Path, uri: str) -> tuple[subprocess.Popen, str, Path]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log_path = root / "mlflow-ui.log"
    from vaelab.tracking.ui import LEAN_UI_ENV, mlflow_ui_command

    mlflow_cli = Path(sys.executable).with_name("mlflow")
    with open(log_path, "wb") as log:
        # As `vaelab ui` starts it: one worker, no job runner.
        server = subprocess.Popen(
            mlflow_ui_command(mlflow_cli, uri, "127.0.0.1", port),
            env={**os.environ, **LEAN_UI_ENV},
            cwd=root,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return server, f"http://127.0.0.1:{port}", log_path


def _wait_until_healthy(server: subprocess.Popen, url: str, log_path: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert server.poll() is None, f"mlflow ui exited:\n{log_path.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"mlflow ui not healthy within {timeout:g} s:\n{log_path.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)


def _make_runs(root: Path, uri: str) -> list[SimpleNamespace]:
    from mlflow.tracking import MlflowClient

    from vaelab.stages import run_classifier, run_evaluate, run_train

    runs = []
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")  # the default 10 s outlasts these trainings
        write_params(root, PROJECT_ROOT)
        write_bar_splits(root / "data/processed", sizes=(256, 32, 64))
        run_classifier(load_config("params.yaml"))
        for z_dim in (2, 3):
            config = load_config("params.yaml", {"train.z_dim": z_dim, "train.epochs": 3})  # lines, not points, to chart
            run_id = run_train(config)
            metrics = run_evaluate(config)
            assert run_id is not None  # one process is its own chief
            run = MlflowClient(uri).get_run(run_id)
            assert run.inputs is not None
            datasets = [(item.dataset.name, item.dataset.digest) for item in run.inputs.dataset_inputs]
            runs.append(
                SimpleNamespace(
                    id=run_id,
                    name=run.info.run_name,
                    z_dim=z_dim,
                    metrics=metrics,
                    params=run.data.params,
                    datasets=datasets,
                )
            )
    return runs


def _printed_addresses(root: Path, uri: str, url: str) -> tuple[str, str]:
    """What `vaelab ui --print-only` prints for the store that `url` serves: the view's address and its charts'."""
    from vaelab.cli import main

    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        patch.chdir(root)
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        with pytest.raises(SystemExit) as exit_info:
            main(["ui", "--print-only", "--port", url.rsplit(":", 1)[1]])
    assert exit_info.value.code == 0, printed.getvalue()
    found = re.search(r"^open (\S+)\ncharts (\S+)$", printed.getvalue(), re.MULTILINE)
    assert found, printed.getvalue()
    return found.group(1), found.group(2)


@pytest.fixture(scope="module")
def browser(playwright_api, ui: SimpleNamespace):
    # Set up after (so torn down before) the server: open connections would keep `mlflow ui` from stopping.
    with playwright_api() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, ui: SimpleNamespace, request: pytest.FixtureRequest):
    """A fresh tab; its last state is saved as test-artifacts/browser/<test name>.png, pass or fail."""
    tab = browser.new_page(viewport={"width": 1600, "height": 900}, base_url=ui.url)
    tab.set_default_timeout(UI_TIMEOUT_MS)
    yield tab
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SCREENSHOTS / f"{request.node.name}.png"), full_page=True)
    tab.close()


def _cell_text(page, row_index: str, column: str) -> str:
    return page.locator(f"[role=row][row-index='{row_index}'] [role=gridcell][col-id='{column}']").inner_text().strip()


def _row_index(page, run_name: str) -> str:
    # The grid renders a row in parts (pinned name column, scrolling columns) sharing one row-index.
    return page.locator("[role=row][row-index]", has_text=run_name).first.get_attribute("row-index")


def test_the_stages_give_the_experiment_its_training_view(ui: SimpleNamespace) -> None:
    from vaelab.tracking.view import KIND_TAG, TRAINING_KIND, VIEW_TAG

    assert ui.tags_from_stages.get(KIND_TAG) == TRAINING_KIND
    assert VIEW_TAG in ui.tags_from_stages


def test_first_screen_is_the_training_runs_with_headline_metrics_and_swept_params(page, ui: SimpleNamespace) -> None:
    assert ui.address.startswith(f"{ui.url}/#/experiments/{ui.experiment_id}/runs?"), ui.address
    page.goto(ui.address)
    for run in ui.runs:
        page.get_by_text(run.name, exact=True).wait_for()
    columns = [f"metrics.`{name}`" for name in SHOWN_METRICS] + [f"params.`{name}`" for name in SWEPT_PARAMS]
    for column in columns:
        page.locator(f"[role=columnheader][col-id='{column}']").wait_for()

    for run in ui.runs:
        index = _row_index(page, run.name)
        for metric in SHOWN_METRICS:
            shown = _cell_text(page, index, f"metrics.`{metric}`")
            assert float(shown) == pytest.approx(run.metrics[metric], rel=1e-9), (run.name, metric, shown)
        for param in SWEPT_PARAMS:
            assert _cell_text(page, index, f"params.`{param}`") == run.params[param], (run.name, param)

    # Still the runs page of the model-training view: no redirect to the GenAI overview or traces.
    assert re.search(rf"#/experiments/{ui.experiment_id}/runs\?", page.url), page.url
    page.get_by_role("heading", name="Runs", exact=True).wait_for()
    for label in GENAI_ONLY:
        assert page.get_by_text(label, exact=True).count() == 0, label
    # The view came from the address and the store, not from a choice this browser remembered.
    assert page.evaluate("Object.keys(localStorage).filter(key => key.includes('workflowType'))") == []


def test_run_page_shows_its_dataset_and_system_metric_charts(page, ui: SimpleNamespace, request: pytest.FixtureRequest) -> None:
    run = ui.runs[0]
    page.goto(ui.address)
    page.get_by_role("link", name=run.name, exact=True).click()
    page.wait_for_url(re.compile(rf"/runs/{run.id}"))

    assert {name for name, _ in run.datasets} == {"mnist"}, run.datasets
    page.get_by_role("heading", name="Datasets", exact=True).wait_for()
    # The panel names a dataset as "name (digest)", with its context (Training) beside it.
    shown = "|".join(re.escape(f"{name} ({digest})") for name, digest in run.datasets)
    page.get_by_text(re.compile(f"^(?:{shown})$")).first.wait_for()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{request.node.name}-overview.png"), full_page=True)

    page.get_by_role("tab", name="System metrics").click()
    chart = page.locator("[data-testid=experiment-view-compare-runs-card]", has=page.locator("[title='system/cpu_utilization_percentage']"))
    chart.get_by_text(f"{run.name} (system/cpu_utilization_percentage)", exact=True).wait_for()  # the run's line


def test_the_view_s_charts_compare_losses_headline_metrics_and_swept_params(page, ui: SimpleNamespace) -> None:
    from vaelab.tracking.view_charts import LINE_CHARTS, SECTION_NAME

    assert ui.charts_address == f"{ui.address}&compareRunsMode=CHART"
    # Tall enough for the section's three rows of cards: the page draws only the cards in view.
    page.set_viewport_size({"width": 1600, "height": 1500})
    page.goto(ui.charts_address)
    page.get_by_text(SECTION_NAME, exact=True).first.wait_for()
    assistant = page.get_by_role("button", name="Close", exact=True)
    if assistant.count():  # the assistant side panel takes a third of the width, and closing it redraws the charts
        assistant.first.click()
    cards = page.locator("[data-testid=experiment-view-compare-runs-card]")

    def card(title: str):
        found = cards.filter(has=page.locator(f"[title='{title}']")).first
        found.wait_for()
        return found

    # Line charts: both metrics of each run on one axis, named in the legend as "<run> (<metric>)".
    for metrics in LINE_CHARTS:
        shown = card(" vs ".join(metrics))
        for run in ui.runs:
            for metric in metrics:
                shown.get_by_text(f"{run.name} ({metric})", exact=True).wait_for()
    # Bar charts: one per headline metric, each run's value on its bar.
    for metric in SHOWN_METRICS:
        shown = card(metric)
        for run in ui.runs:
            shown.locator("text", has_text=f"{run.metrics[metric]:.2f}").first.wait_for()
    # Parallel coordinates (the page titles it itself): an axis per swept param and one for the NLL, as
    # plotly's axis titles (drawn, though plotly hides the ones that would overlap on a narrow card).
    parallel = cards.filter(has_text="Parallel Coordinates").first
    parallel.wait_for()
    for axis in (*SWEPT_PARAMS, SHOWN_METRICS[0]):
        parallel.locator("text", has_text=axis).first.wait_for(state="attached")
    assert parallel.locator("path").count() > 0  # the runs' lines

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "runs-charts.png"))  # docs/runs-charts.png is a copy


def _open_runs_list(page, ui: SimpleNamespace) -> None:
    page.goto(f"/#/experiments/{ui.experiment_id}/runs")
    for run in ui.runs:
        page.get_by_text(run.name, exact=True).wait_for()
    assistant = page.get_by_role("button", name="Close", exact=True)
    if assistant.count():  # the assistant side panel takes a third of the width
        assistant.first.click()


def test_runs_list_shows_both_runs_by_name_with_their_test_metrics(page, ui: SimpleNamespace) -> None:
    _open_runs_list(page, ui)
    page.get_by_role("button", name="Columns").click()
    search = page.get_by_placeholder("Search columns")
    for metric in SHOWN_METRICS:
        search.fill(metric)
        page.get_by_text(metric, exact=True).first.click()
    page.keyboard.press("Escape")
    for metric in SHOWN_METRICS:
        page.locator(f"[role=columnheader][col-id='metrics.`{metric}`']").wait_for()

    for run in ui.runs:
        index = _row_index(page, run.name)
        row_text = " ".join(page.locator(f"[role=row][row-index='{index}']").all_inner_texts())
        shown = [float(number) for number in re.findall(r"-?\d+\.\d+(?:e[-+]?\d+)?", row_text)]
        for metric in SHOWN_METRICS:
            assert any(value == pytest.approx(run.metrics[metric], rel=1e-9) for value in shown), (run.name, metric, row_text)


def test_comparison_view_shows_params_side_by_side(page, ui: SimpleNamespace) -> None:
    _open_runs_list(page, ui)
    for run in ui.runs:
        page.locator("[role=row]", has_text=run.name).locator("input.ag-checkbox-input").check()
    page.get_by_role("button", name="Compare", exact=True).click()
    page.get_by_text(f"Comparing {len(ui.runs)} Runs").wait_for()
    assert "/compare-runs?" in page.url

    names = page.locator("tr", has_text="Run Name:").inner_text().split()[2:]
    by_name = {run.name: run for run in ui.runs}
    assert sorted(names) == sorted(by_name)
    z_dims = page.locator("tr", has_text="train.z_dim").first.inner_text().split()
    assert z_dims == ["train.z_dim", *(str(by_name[name].z_dim) for name in names)]
    assert page.locator("tr", has_text="base.seed").first.inner_text().split() == ["base.seed", "42", "42"]

    page.get_by_text("Show diff only").first.click()  # the parameters table's switch
    page.locator("tr", has_text="base.seed").first.wait_for(state="detached")
    assert page.locator("tr", has_text="train.z_dim").count() >= 1


def test_image_artifact_loads(page, ui: SimpleNamespace) -> None:
    run = ui.runs[-1]  # the run whose plots are still in reports/plots
    page.goto(f"/#/experiments/{ui.experiment_id}/runs/{run.id}")
    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_text("plots", exact=True).click()
    page.get_by_text("samples.png", exact=True).click()
    image = page.locator("img[src^='blob:']").first
    image.wait_for()
    page.wait_for_function("image => image.complete && image.naturalWidth > 0", arg=image.element_handle())
    assert tuple(image.evaluate("image => [image.naturalWidth, image.naturalHeight]")) == ui.samples_size
