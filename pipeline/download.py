"""DVC stage `download`: fetch the dataset named by data.dataset into paths.raw, checksums verified.

Run by `dvc repro` (see dvc.yaml), or directly: `python pipeline/download.py --help`.
"""

from vaelab.cli import stage_main

if __name__ == "__main__":
    stage_main("download")
