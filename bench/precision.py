"""vaelab's training in each precision on this machine, side by side, and what `train.precision: auto` picks here.

``python -m bench.precision --out bench/precision.json`` (a few minutes) times vaelab's own training path
(bench.throughput.Vaelab: the chapter's model at params.yaml's settings, random images in memory) in float32
and in mixed bfloat16, rounds interleaved, and the matmul peak TensorFlow reaches in each (2 n^3 FLOPs per
product of two n x n matrices). It records the CPU's bfloat16 flags and the policy ``auto`` resolves to, so
the figure that decided the default is in the file beside the hardware it was measured on.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import time
from functools import partial
from pathlib import Path

import numpy as np

from bench.throughput import IMAGE_SHAPE, Vaelab, measure, tf_matmul_gflops

PROJECT = Path(__file__).resolve().parents[1]
POLICIES = ("float32", "mixed_bfloat16")


def main(argv: list[str] | None = None) -> None:
    from vaelab import precision
    from vaelab.config.load import load_config, with_overrides

    parser = argparse.ArgumentParser(prog="python -m bench.precision", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds after a warm-up round (default: %(default)s)")
    parser.add_argument("--timed-images", type=int, default=2048, help="timed images per segment (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=PROJECT / "bench/precision.json", help="results file (default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    config = load_config(PROJECT / "params.yaml")
    images = np.random.default_rng(0).random((8192, *IMAGE_SHAPE), dtype=np.float32)
    implementations = []
    for policy in POLICIES:
        implementation = Vaelab(with_overrides(config, {"train.precision": policy}), images, epoch_images=54_000)
        implementation.name = f"vaelab_{policy}"
        implementations.append(implementation)
    peaks = {dtype: partial(tf_matmul_gflops, dtype, 1024) for dtype in ("float32", "bfloat16")}
    measured = measure(implementations, [32, 128], rounds=args.rounds, warmup=10, timed_images=args.timed_images, peaks=peaks)
    rates = {
        name: {str(batch): statistics.median(values) for batch, values in by_batch.items() if values}
        for name, by_batch in measured["images_per_second"].items()
    }
    flags = precision.read_cpu_flags()
    summary = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "cpu_bf16_flags": sorted(flags & set(precision.CPU_BF16_FLAGS)),
        "auto_resolves_to": precision.resolve("auto"),
        "images_per_second_median": rates,
        "images_per_second_samples": measured["images_per_second"],
        "bf16_over_float32": {
            batch: rates["vaelab_mixed_bfloat16"][batch] / rates["vaelab_float32"][batch] for batch in rates["vaelab_float32"]
        },
        "matmul_gflops": {dtype: statistics.median(values) for dtype, values in measured["peak_gflops"].items()},
        "failures": measured["failures"],
    }
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    tmp.replace(args.out)
    print(
        json.dumps(
            {
                key: summary[key]
                for key in ("cpu_bf16_flags", "auto_resolves_to", "images_per_second_median", "bf16_over_float32", "matmul_gflops")
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
