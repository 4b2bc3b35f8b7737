"""DVC stage `classifier`: train the small CNN that judges the VAE's samples (FID in its features, confidence).

Run by `dvc repro` (see dvc.yaml), or directly: `python pipeline/classifier.py --help`.
"""

from vaelab.cli import stage_main

if __name__ == "__main__":
    stage_main("classifier")
