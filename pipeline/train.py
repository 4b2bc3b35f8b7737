"""DVC stage `train`: train the VAE, logging one MLflow run; resumes an interrupted training.

Run by `dvc repro` (see dvc.yaml), or directly: `python pipeline/train.py --help`.
"""

from vaelab.cli import stage_main

if __name__ == "__main__":
    stage_main("train")
