"""The one retry loop (vaelab.retries) and its notion of a transient failure, as downloads and MLflow calls use it."""

from __future__ import annotations

import logging

import pytest
import requests
from mlflow.exceptions import MlflowException

from vaelab.retries import doubling, is_transient, retry
from vaelab.tracking.store import with_retries


def http_error(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    return requests.HTTPError(f"{status}", response=response)


def raised_while_handling(outer: Exception, inner: Exception) -> Exception:
    """``outer`` as MLflow's REST client raises it: inside an ``except`` for ``inner``, so chained to it."""
    try:
        try:
            raise inner
        except type(inner):
            raise outer  # noqa: B904 - the implicit chaining is what is under test
    except type(outer) as err:
        return err


def name_not_resolved() -> requests.ConnectionError:
    class NameResolutionError(Exception):
        pass

    return requests.ConnectionError(NameResolutionError("no such host"))


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (ConnectionRefusedError("refused"), True),
        (TimeoutError(), True),
        (requests.Timeout(), True),
        (requests.exceptions.ChunkedEncodingError(), True),
        (http_error(503), True),
        (http_error(500), True),
        (http_error(429), True),
        (http_error(408), True),
        (http_error(404), False),
        (http_error(400), False),
        (name_not_resolved(), False),  # an unknown host stays unknown
        (MlflowException("Invalid parameter value"), False),
        (raised_while_handling(MlflowException("API request failed"), requests.ConnectionError("refused")), True),
        (ValueError("bad"), False),
    ],
)
def test_what_counts_as_transient(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient


class Failing:
    """A call that raises ``error`` the first ``times`` calls, then returns "ok"; ``.calls`` counts them."""

    def __init__(self, times: int, error: Exception) -> None:
        self.times, self.error, self.calls = times, error, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.times:
            raise self.error
        return "ok"


def test_a_transient_failure_is_tried_again_after_each_delay_and_said(caplog: pytest.LogCaptureFixture) -> None:
    call = Failing(2, ConnectionRefusedError("refused"))

    with caplog.at_level(logging.WARNING):
        assert retry(call, [0, 0, 0], "the store") == "ok"

    assert call.calls == 3
    assert [record.getMessage() for record in caplog.records] == [
        "the store failed (refused); trying again in 0 s (1 of 4 tries done)",
        "the store failed (refused); trying again in 0 s (2 of 4 tries done)",
    ]


def test_the_last_failure_is_raised_after_every_try() -> None:
    call = Failing(10, http_error(502))

    with pytest.raises(requests.HTTPError):
        retry(call, [0, 0], "a download")
    assert call.calls == 3


def test_other_errors_are_raised_at_once() -> None:
    call = Failing(10, MlflowException("Invalid parameter value"))

    with pytest.raises(MlflowException):
        with_retries(call, attempts=3, first_delay=0)
    assert call.calls == 1


def test_mlflow_requests_retry_a_refused_connection_wrapped_by_mlflow() -> None:
    call = Failing(2, raised_while_handling(MlflowException("API request failed"), requests.ConnectionError("refused")))

    assert with_retries(call, attempts=4, first_delay=0) == "ok"
    assert call.calls == 3


def test_doubling_delays() -> None:
    assert doubling(0.5, 4) == [0.5, 1.0, 2.0]
    assert doubling(1.0, 1) == []
