"""Which floating-point precision trains the model: ``train.precision`` resolved against this machine's hardware.

``float32`` computes everything in 32 bits. ``mixed_bfloat16`` and ``mixed_float16`` are Keras' mixed
policies: the convolutions and dense layers compute in 16 bits while every weight, the optimizer's state,
the latent means and log-variances, the sampling, the decoder's logits and sigmoid, the losses, the KL term
and all log-likelihoods stay float32 (see :mod:`vaelab.model`). bfloat16 keeps float32's exponent range, so
it needs no loss scaling; float16 does, and training wraps the optimizer in Keras' ``LossScaleOptimizer``.

``auto`` picks what the hardware runs natively, never an emulation: bfloat16 on a CPU that reports
``avx512_bf16`` or ``amx_bf16`` (recent Xeons) and on GPUs of compute capability 8.0 or newer (Ampere on),
float16 on GPUs of 7.x (Volta, Turing), float32 everywhere else. On a CPU without bfloat16 instructions
TensorFlow would emulate it, slower than float32: asking for it explicitly there is allowed but warned about.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)
_warned: set[str] = set()  # settings already warned about in this process

AUTO = "auto"
FLOAT32 = "float32"
MIXED_BFLOAT16 = "mixed_bfloat16"
MIXED_FLOAT16 = "mixed_float16"
RUN_TAG = "vaelab.precision"  # the MLflow tag that records the policy a training used

CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo's names for native bfloat16 arithmetic
BF16_GPU = (8, 0)  # compute capability from which GPUs have bfloat16 tensor cores
FP16_GPU = (7, 0)  # ... and float16 ones


def resolve(setting: str, *, cpu_flags: set[str] | None = None, gpus: Sequence[tuple[int, int]] | None = None) -> str:
    """The Keras dtype policy for ``train.precision``; ``cpu_flags`` and ``gpus`` (compute capabilities) default
    to this machine's."""
    flags = cpu_flags if cpu_flags is not None else read_cpu_flags()
    capabilities = list(gpus) if gpus is not None else gpu_capabilities()
    native_bf16 = (bool(capabilities) and min(capabilities) >= BF16_GPU) or (not capabilities and bool(flags & set(CPU_BF16_FLAGS)))
    if setting == AUTO:
        if native_bf16:
            return MIXED_BFLOAT16
        if capabilities and min(capabilities) >= FP16_GPU:
            return MIXED_FLOAT16
        return FLOAT32
    if setting in _warned:
        return setting
    if setting == MIXED_BFLOAT16 and not native_bf16:
        _warned.add(setting)
        log.warning(
            "train.precision mixed_bfloat16: this machine has no native bfloat16 arithmetic (no GPU of compute capability "
            "8.0+, no CPU flag %s), so TensorFlow emulates it, slower than float32; `auto` would choose %s",
            " or ".join(CPU_BF16_FLAGS),
            resolve(AUTO, cpu_flags=flags, gpus=capabilities),
        )
    if setting == MIXED_FLOAT16 and not capabilities:
        _warned.add(setting)
        log.warning("train.precision mixed_float16 on a CPU: float16 arithmetic is emulated there, slower than float32")
    return setting


def read_cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags as Linux lists them (empty where there is no /proc/cpuinfo)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def gpu_capabilities() -> list[tuple[int, int]]:
    """Compute capabilities of the GPUs TensorFlow sees (none on a CPU-only build or machine)."""
    import tensorflow as tf

    capabilities = []
    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        if capability:
            capabilities.append((int(capability[0]), int(capability[1])))
    return capabilities
