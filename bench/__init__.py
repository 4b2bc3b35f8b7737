"""Side-by-side benchmark of vaelab against plain Keras 3 and PyTorch references: `make bench` (see run.py)."""
