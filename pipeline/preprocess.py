"""DVC stage `preprocess`: scale, shape and split the raw data into paths.processed.

Run by `dvc repro` (see dvc.yaml), or directly: `python pipeline/preprocess.py --help`.
"""

from vaelab.cli import stage_main

if __name__ == "__main__":
    stage_main("preprocess")
