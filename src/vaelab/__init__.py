"""vaelab: the convolutional VAE of "Generative Deep Learning" (chapter 3) as a tracked, tunable pipeline.

Importing the package is cheap on purpose: TensorFlow, MLflow and Optuna load only in the modules
that need them, so `dvc status` and `--help` stay fast.
"""

__version__ = "0.1.0"
