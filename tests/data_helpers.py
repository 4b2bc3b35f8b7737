"""Builders of tiny datasets and a real local HTTP server for the data-layer tests."""

from __future__ import annotations

import gzip
import hashlib
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from vaelab.data.idx import write_idx
from vaelab.data.raw import array_sha256
from vaelab.data.sources import MNIST_IDX_FILES, DatasetSpec, IdxFile, IdxHttpSource

CLASS_NAMES = tuple(str(digit) for digit in range(10))


def tiny_arrays(n_train: int = 30, n_test: int = 12, size: tuple[int, int] = (6, 6), seed: int = 0) -> dict[str, np.ndarray]:
    """Random uint8 images and labels 0..9 in the raw layout; ``x_train[i, 0, 0] == i`` identifies image i."""
    rng = np.random.default_rng(seed)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, *size), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, *size), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    arrays["x_train"][:, 0, 0] = np.arange(n_train)
    return arrays


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)  # fixed mtime: the same input always gives the same bytes


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def idx_gz_files(arrays: dict[str, np.ndarray]) -> dict[str, bytes]:
    """The four MNIST file names -> gzip'd IDX bytes of ``arrays``."""
    return {MNIST_IDX_FILES[name].filename: gz(write_idx(array)) for name, array in arrays.items()}


def idx_source(base_url: str, files: dict[str, bytes], hash_overrides: dict[str, str] | None = None) -> IdxHttpSource:
    """An IdxHttpSource for ``files`` as served, md5-pinned; ``hash_overrides`` replaces pins by file name."""
    pins = {}
    for name, entry in MNIST_IDX_FILES.items():
        known = (hash_overrides or {}).get(entry.filename, f"md5:{md5(files[entry.filename])}")
        pins[name] = IdxFile(entry.filename, known)
    return IdxHttpSource(base_url, pins)


def tiny_spec(sources, arrays: dict[str, np.ndarray] | None = None, size: tuple[int, int] = (6, 6)) -> DatasetSpec:
    """A spec named "tiny"; ``arrays`` pins the decoded arrays' sha256 like the real registry does."""
    return DatasetSpec(
        name="tiny",
        image_shape=(*size, 1),
        class_names=CLASS_NAMES,
        sources=tuple(sources),
        expected_arrays={name: array_sha256(a) for name, a in (arrays or {}).items()},
    )


# ("ok", body), ("truncate", body) or ("status", code): a status alone is a number.
Answer = tuple[str, bytes] | tuple[str, int]


class FileServer:
    """A ThreadingHTTPServer on 127.0.0.1 (random port) serving byte strings at fixed paths.

    Each path has a script of answers used in turn, the last one repeating:
    ``("ok", body)``, ``("status", 503)`` or ``("truncate", body)`` (a Content-Length larger than
    what is sent before the connection closes). ``requests`` counts requests per path.
    """

    def __init__(self) -> None:
        self.scripts: dict[str, list[Answer]] = {}
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/"

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def serve(self, path: str, *answers: Answer) -> None:
        self.scripts["/" + path.lstrip("/")] = list(answers)

    def serve_files(self, files: dict[str, bytes], prefix: str = "") -> None:
        for name, body in files.items():
            self.serve(prefix + name, ("ok", body))

    def __enter__(self) -> FileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _next_answer(self, path: str) -> Answer:
        with self._lock:
            self.requests[path] += 1
            script = self.scripts.get(path)
            if not script:
                return ("status", 404)
            return script.pop(0) if len(script) > 1 else script[0]

    def _handler_class(self):
        files = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # the name http.server dispatches to
                kind, value = files._next_answer(self.path)
                if isinstance(value, int):  # ("status", code)
                    self.send_error(value)
                    return
                body = value
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                if kind == "truncate":
                    self.send_header("Content-Length", str(len(body) + 1000))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format, *args) -> None:  # http.server's signature
                pass

        return Handler


def bar_images(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """28x28 images of one of 3 horizontal bars on faint noise; the label says which bar.

    Easy for a classifier and for a 2-D latent space to separate, so trained-model tests can assert on it.
    """
    labels = rng.integers(0, 3, n).astype("uint8")
    x = rng.uniform(0, 0.1, (n, 28, 28, 1)).astype("float32")
    for i, label in enumerate(labels):
        x[i, 6 + 7 * label : 10 + 7 * label, 4:24, 0] = 0.9
    return x, labels
