"""Where a training step's time goes: ``python -m bench.step_profile [--batch 128] [--steps 40] [--out FILE]``.

For each precision, a fresh process trains vaelab's own step (``vaelab.training.train``, as bench/throughput.py
does) on random images twice: once with oneDNN's verbose log on, which times every primitive it runs
(convolutions by direction, reorders, matmuls), and once under TensorFlow's profiler, which times every
TensorFlow op on the compute threads. Each run first trains one untimed segment (tracing, warm-up), then the
timed one. Written per step, in milliseconds:

- ``onednn``: primitive time by kind. A transposed convolution's forward pass is oneDNN's ``backward_data``
  and its data gradient a ``forward_training``: the kinds name the primitive's direction, not the layer's.
  TensorFlow routes its convolutions through oneDNN only where its oneDNN ops are on (by default, on CPUs with
  AVX512_VNNI, AVX512_BF16 or AMX; ``TF_ENABLE_ONEDNN_OPTS`` overrides); elsewhere the log holds matmuls at most,
  and ``onednn_ops`` says which case the figures come from.
- ``tensorflow_ops``: op time by kind (convolution, matmul, casts, element-wise and reductions, optimizer,
  input pipeline, the rest), summed over threads, and ``busy``: the time at least one op was running.
- ``wall``: the timed segment's seconds per step from the step clock, and ``outside_ops = wall - busy``:
  Python, Keras and the executor between ops.

Both logs slow the step they watch (the verbose log prints a line per primitive), so shares are the figures
to read; the throughput bench gives the speeds. Run on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

PRECISIONS = ("float32", "mixed_bfloat16")
MARK_BEGIN, MARK_END = "STEP_PROFILE_BEGIN", "STEP_PROFILE_END"
# oneDNN's verbose line: onednn_verbose,[v1,][primitive,]exec,cpu,<kind>,<implementation>,<direction>,...,<ms>
_ONEDNN_EXEC = re.compile(r"^onednn_verbose,(?:v\d+,)?(?:primitive,)?exec,cpu,([^,]+),([^,]*),([^,]*),.*,([0-9.eE+-]+)$")
# Op types by kind; the optimizer is recognised by its name scope instead (Keras 3 names it after the optimizer).
OP_KINDS = {
    "convolution": re.compile(r"Conv2D|Conv3D|DepthwiseConv|BiasAddGrad"),
    "matmul": re.compile(r"MatMul|Einsum"),
    "casts": re.compile(r"^Cast$|_MklCast"),
    "input_pipeline": re.compile(r"Iterator|Dataset|Prefetch"),
}
OPTIMIZER_SCOPE = re.compile(r"(^|/)(adam|adamw|sgd|rmsprop)(_\d+)?/", re.IGNORECASE)
LARGEST = 15  # op types listed by time in each profile
VARIABLE_OPS = {"ReadVariableOp", "AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp", "VarHandleOp"}


def onednn_kind(primitive: str, direction: str) -> str:
    """``convolution_forward``, ``convolution_backward_data``, ``convolution_backward_weights``, ``reorder``, ..."""
    if primitive in ("convolution", "deconvolution"):
        if direction.startswith("forward"):
            return f"{primitive}_forward"
        return f"{primitive}_{direction}"
    if primitive in ("inner_product", "matmul"):
        return "matmul"
    return primitive


def parse_onednn(lines: list[str]) -> dict[str, float]:
    """Milliseconds by :func:`onednn_kind` over the verbose lines between the markers."""
    totals: dict[str, float] = defaultdict(float)
    inside = False
    for line in lines:
        if line.startswith(MARK_BEGIN):
            inside = True
        elif line.startswith(MARK_END):
            inside = False
        elif inside and (found := _ONEDNN_EXEC.match(line.strip())):
            primitive, _, direction, ms = found.groups()
            totals[onednn_kind(primitive, direction)] += float(ms)
    return dict(totals)


def op_kind(name: str, op_type: str) -> str:
    if OPTIMIZER_SCOPE.search(name):
        return "optimizer"
    for kind, pattern in OP_KINDS.items():
        if pattern.search(op_type):
            return kind
    if op_type in VARIABLE_OPS:
        return "variables"
    return "elementwise_and_reductions"


def parse_xspace(path: Path) -> tuple[dict[str, float], float, dict[tuple[str, str], float]]:
    """(milliseconds by :func:`op_kind` summed over the compute threads, milliseconds at least one op ran,
    milliseconds by (kind, op type): which ops make up each kind)."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    space.ParseFromString(path.read_bytes())
    totals: dict[str, float] = defaultdict(float)
    by_type: dict[tuple[str, str], float] = defaultdict(float)
    intervals: list[tuple[int, int]] = []
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            if not line.name.startswith(("tf_Compute", "tf_data_iterator_get_next")):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" not in name or name.startswith(("ThreadpoolListener", "ExecutorState")):
                    continue  # "scope/op:OpType" names an op; the rest are the executor's own events
                op_name, _, op_type = name.rpartition(":")
                kind = op_kind(op_name, op_type)
                totals[kind] += event.duration_ps / 1e9
                by_type[kind, op_type] += event.duration_ps / 1e9
                start = line.timestamp_ns * 1000 + event.offset_ps
                intervals.append((start, start + event.duration_ps))
    return dict(totals), _union_ps(intervals) / 1e9, dict(by_type)


def _union_ps(intervals: list[tuple[int, int]]) -> int:
    covered, end = 0, None
    for start, stop in sorted(intervals):
        if end is None or start > end:
            covered += stop - start
            end = stop
        elif stop > end:
            covered += stop - end
            end = stop
    return covered


def child(precision: str, batch: int, steps: int, profile_dir: str | None) -> None:
    """One timed segment after an untimed one; prints the markers around it and its step rate as JSON."""
    import tensorflow as tf

    from bench.throughput import IMAGE_SHAPE, Vaelab
    from vaelab.config.load import load_config, with_overrides

    config = with_overrides(load_config(Path(__file__).resolve().parents[1] / "params.yaml"), {"train.precision": precision})
    warmup = Vaelab(config, np.empty(0), epoch_images=60_000).steps_per_execution(batch)
    # The segment trains whole executions of `warmup` steps each: its warm-up steps, then at least `steps` more.
    total = math.ceil((warmup + steps) / warmup) * warmup
    images = np.random.default_rng(0).random((total * batch, *IMAGE_SHAPE), dtype=np.float32)
    bench = Vaelab(config, images, epoch_images=60_000)
    bench.segment(batch, warmup, steps)  # traces the step; not measured
    if profile_dir:
        tf.profiler.experimental.start(profile_dir)
    _mark(MARK_BEGIN)
    rate = bench.segment(batch, warmup, steps)
    _mark(MARK_END)
    if profile_dir:
        tf.profiler.experimental.stop()
    print(json.dumps({"images_per_second": rate, "steps": total, "onednn_ops": onednn_ops_enabled()}), flush=True)


def onednn_ops_enabled() -> bool:
    """Whether this TensorFlow runs its own ops (convolutions among them) on oneDNN, as it decides at start-up."""
    # Private, but the only place TensorFlow exposes the decision it prints in its start-up notice.
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


def _mark(text: str) -> None:
    # Straight to the file descriptor oneDNN's C code writes its log to, so the order holds.
    sys.stdout.flush()
    os.write(1, f"{text}\n".encode())


def profile(precision: str, batch: int, steps: int) -> dict:
    """Both runs of one precision in fresh processes; figures per step."""
    command = [sys.executable, "-m", "bench.step_profile", "--child", precision, "--batch", str(batch), "--steps", str(steps)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    verbose = subprocess.run(command, env={**env, "ONEDNN_VERBOSE": "1"}, capture_output=True, text=True, check=True, timeout=3600)
    lines = verbose.stdout.splitlines()
    onednn = parse_onednn(lines)
    with tempfile.TemporaryDirectory(prefix="vaelab-profile-") as folder:
        traced = subprocess.run([*command, "--profile-dir", folder], env=env, capture_output=True, text=True, check=True, timeout=3600)
        (xplane,) = glob.glob(f"{folder}/**/*.xplane.pb", recursive=True)
        ops, busy, by_type = parse_xspace(Path(xplane))
    steady = json.loads(traced.stdout.strip().splitlines()[-1])
    wall_ms = 1000 * batch / steady["images_per_second"]
    # Both logs cover the segment's untimed warm-up steps too, so their totals are divided by all its steps.
    profiled_steps = steady["steps"]
    per_step = {kind: round(ms / profiled_steps, 3) for kind, ms in sorted(ops.items())}
    verbose_run = json.loads(lines[-1])
    onednn_steps = verbose_run["steps"]
    return {
        "precision": precision,
        "batch": batch,
        "timed_steps": steps,
        "onednn_ops": verbose_run["onednn_ops"],
        "wall_ms_per_step": round(wall_ms, 3),
        "onednn_ms_per_step": {kind: round(ms / onednn_steps, 3) for kind, ms in sorted(onednn.items())},
        "tensorflow_ops_ms_per_step": per_step,
        # The op types that take longest, with their kind: what a fusion or a cast removed would have to shrink.
        "largest_op_types_ms_per_step": [
            [op_type, kind, round(ms / profiled_steps, 3)]
            for (kind, op_type), ms in sorted(by_type.items(), key=lambda item: -item[1])[:LARGEST]
        ],
        "busy_ms_per_step": round(busy / profiled_steps, 3),
        "outside_ops_ms_per_step": round(wall_ms - busy / profiled_steps, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Where vaelab's training step spends its time, per precision.")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=40, help="timed steps per run (default: %(default)s)")
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("step_profile.json"))
    parser.add_argument("--child", choices=PRECISIONS, help=argparse.SUPPRESS)
    parser.add_argument("--profile-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.batch, args.steps, args.profile_dir)
        return
    from bench.report import machine
    from vaelab.files import write_json

    results = {"machine": machine(None), "profiles": [profile(p, args.batch, args.steps) for p in args.precisions]}
    write_json(args.out, results)
    print(json.dumps(results["profiles"], indent=1))


if __name__ == "__main__":
    main()
