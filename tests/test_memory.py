"""Preprocessing an image folder holds a few shards in memory, never the dataset."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vaelab.data.synthetic import write_faces

pytestmark = pytest.mark.slow

IMAGES = 5_000
SIZE = 128
# The processed images alone are 5,000 x 128 x 128 x 3 = 246 MB as uint8 (983 MB as float32), so a
# process that held them could not stay under this bound; streaming measured about 140 MB.
PEAK_BOUND_MB = 200

MEASURE = """
import json, re, sys
from vaelab.config.schema import DataSection
from vaelab.data.folder import record_folder
from vaelab.data.preprocess import preprocess

folder, work = sys.argv[1], sys.argv[2]
raw = record_folder(folder, work + "/raw")
data = DataSection(dataset="image_folder", image_dir=folder, image_size=int(sys.argv[3]))
stats = preprocess(raw, work + "/processed", data, seed=0)
# VmHWM is this program's own peak; ru_maxrss would also carry the forking test process's size.
peak_kb = int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
print(json.dumps({"peak_mb": peak_kb / 1024, "stats": stats}))
"""


def test_preprocessing_5000_images_stays_under_the_bound(tmp_path: Path) -> None:
    write_faces(tmp_path / "faces", IMAGES, size=(SIZE, SIZE), seed=0)
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(tmp_path / "faces"), str(tmp_path), str(SIZE)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert sum(split["count"] for split in result["stats"].values()) == IMAGES
    stored = sum(p.stat().st_size for p in (tmp_path / "processed").glob("x_*.npy"))
    assert stored > IMAGES * SIZE * SIZE * 3  # every image is really there, as uint8
    assert result["peak_mb"] < PEAK_BOUND_MB, f"preprocessing peaked at {result['peak_mb']:.0f} MB"
