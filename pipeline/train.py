"""DVC stage `train`: train the VAE, logging one MLflow run; resumes an interrupted training.

Run by `dvc repro` (see dvc.yaml), or directly: `python pipeline/train.py --help`;
`--workers N` trains on N processes of this machine (see the README, "Several workers").
"""

from vaelab.cli import train_main

if __name__ == "__main__":
    train_main()
