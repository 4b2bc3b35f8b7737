"""Peak memory of the preprocess and train stages on a generated image folder (the README's figures).

    python scripts/peak_memory.py --images 20000 --size 128 [--epochs 1] [--work DIR]

Generates the folder, then runs each stage in its own process with the face preset (presets/celeba.yaml)
and prints the process's peak resident memory (``ru_maxrss``), which counts every page it ever held.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

STAGE = """
import json, logging, resource, sys, time
from vaelab.config.load import load_config
from vaelab import stages
logging.basicConfig(level=logging.WARNING)
config = load_config(sys.argv[1], json.loads(sys.argv[2]))
start = time.monotonic()
for name in sys.argv[3].split(","):
    getattr(stages, "run_" + name)(config)
print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "seconds": time.monotonic() - start}))
"""


def measure(stages: str, overrides: dict, work: Path) -> dict:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, "-c", STAGE, str(ROOT / "params.yaml"), json.dumps(overrides), stages],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"{stages} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=128, help="generated images and data.image_size (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--work", type=Path, help="working folder (default: a new temporary one)")
    args = parser.parse_args()

    from vaelab.config.presets import preset_overrides
    from vaelab.data.synthetic import write_faces

    work = args.work or Path(tempfile.mkdtemp(prefix="vaelab-memory-"))
    folder = work / "faces"
    if not folder.exists():
        started = time.monotonic()
        write_faces(folder, args.images, size=(args.size, args.size), seed=0)
        print(f"generated {args.images} images of {args.size}x{args.size} in {folder} ({time.monotonic() - started:.0f} s)")
    overrides = {
        **preset_overrides("celeba", ROOT / "presets", ROOT / "params.yaml"),
        "data.image_dir": str(folder),
        "data.image_size": args.size,
        "data.crop": "square",
        "train.epochs": args.epochs,
    }
    as_float32 = args.images * args.size * args.size * 3 * 4 / 2**20
    print(f"the images as float32 would take {as_float32:.0f} MB, as uint8 {as_float32 / 4:.0f} MB")
    for stages in ("download,preprocess", "train"):
        result = measure(stages, overrides, work)
        print(f"{stages}: peak {result['peak_mb']:.0f} MB, {result['seconds']:.0f} s")


if __name__ == "__main__":
    main()
