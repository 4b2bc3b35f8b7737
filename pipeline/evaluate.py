"""DVC stage `evaluate`: test-set metrics and pictures, added to the training's MLflow run.

Run by `dvc repro` (see dvc.yaml), or directly: `python pipeline/evaluate.py --help`.
"""

from vaelab.cli import stage_main

if __name__ == "__main__":
    stage_main("evaluate")
