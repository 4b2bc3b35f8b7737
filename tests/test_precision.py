"""train.precision: what `auto` picks on which hardware, and training, resuming and evaluating in every precision."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import yaml
from training_helpers import IMAGE_SHAPE, InterruptAfterEpoch, weights_of

from vaelab import precision
from vaelab.config.load import with_overrides
from vaelab.config.schema import Config

AVX2_ONLY = {"fpu", "sse2", "avx", "avx2", "fma"}  # an AMD EPYC of this project's CI, for one
SAPPHIRE_RAPIDS = AVX2_ONLY | {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}


@pytest.mark.parametrize(
    ("flags", "gpus", "chosen"),
    [
        (AVX2_ONLY, [], "float32"),
        (AVX2_ONLY | {"avx512f", "avx512_bf16"}, [], "mixed_bfloat16"),  # Cooper Lake, Zen 4
        (SAPPHIRE_RAPIDS, [], "mixed_bfloat16"),
        (AVX2_ONLY, [(8, 0)], "mixed_bfloat16"),  # A100
        (AVX2_ONLY, [(9, 0), (8, 6)], "mixed_bfloat16"),
        (SAPPHIRE_RAPIDS, [(7, 5)], "mixed_float16"),  # T4: the GPU trains, whatever the CPU has
        (AVX2_ONLY, [(7, 0), (8, 0)], "mixed_float16"),  # the oldest GPU decides
        (SAPPHIRE_RAPIDS, [(6, 1)], "float32"),  # a P4 has neither
    ],
)
def test_auto_picks_what_the_hardware_runs_natively(flags: set[str], gpus: list, chosen: str) -> None:
    assert precision.resolve("auto", cpu_flags=flags, gpus=gpus) == chosen


def test_the_default_is_auto_and_follows_the_feature_check(project_root: Path) -> None:
    params = yaml.safe_load((project_root / "params.yaml").read_text())
    setting = Config.model_validate(params).train.precision

    assert setting == "auto"
    assert precision.resolve(setting, cpu_flags=SAPPHIRE_RAPIDS, gpus=[]) == "mixed_bfloat16"
    assert precision.resolve(setting, cpu_flags=AVX2_ONLY, gpus=[]) == "float32"


def test_an_explicit_setting_is_kept_and_an_emulated_one_is_said_once(caplog: pytest.LogCaptureFixture, monkeypatch) -> None:
    monkeypatch.setattr(precision, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="vaelab.precision"):
        assert precision.resolve("mixed_bfloat16", cpu_flags=AVX2_ONLY, gpus=[]) == "mixed_bfloat16"
        assert precision.resolve("mixed_bfloat16", cpu_flags=AVX2_ONLY, gpus=[]) == "mixed_bfloat16"
        assert precision.resolve("float32", cpu_flags=SAPPHIRE_RAPIDS, gpus=[]) == "float32"

    (record,) = caplog.records
    assert "no native bfloat16 arithmetic" in record.getMessage() and "`auto` would choose float32" in record.getMessage()


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\n")

    assert precision.read_cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512_bf16"}
    assert precision.read_cpu_flags(tmp_path / "absent") == set()


# --- training in each precision (mixed policies run emulated on this CPU: a tiny network keeps it quick) -----


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16", "mixed_float16"])
def test_each_precision_trains_checkpoints_resumes_exactly_and_evaluates(policy: str, tiny_train_config, square_splits, tmp_path) -> None:
    import keras

    from vaelab.evaluation import likelihood, metrics
    from vaelab.model import build_vae
    from vaelab.training import read_checkpoint, train

    config = tiny_train_config(**{"train.epochs": 2, "train.precision": policy})
    uninterrupted = train(config, square_splits, verbose=0)
    checkpoints = tmp_path / "ckpt"
    with pytest.raises(KeyboardInterrupt):
        train(config, square_splits, checkpoint_dir=checkpoints, callbacks=[InterruptAfterEpoch(1)], verbose=0)
    assert (read_checkpoint(checkpoints, config, IMAGE_SHAPE) or {}).get("epoch") == 1
    resumed = train(config, square_splits, checkpoint_dir=checkpoints, verbose=0)

    assert uninterrupted.precision == resumed.precision == policy
    assert resumed.initial_epoch == 1
    for a, b in zip(weights_of(uninterrupted.model), weights_of(resumed.model), strict=True):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5)
    for row, resumed_row in zip(uninterrupted.history, resumed.history, strict=True):
        assert resumed_row == pytest.approx(row, rel=1e-4)
    assert uninterrupted.history[-1]["val_loss"] < uninterrupted.history[0]["val_loss"]

    # The policy is in the saved model; weights, heads, logits and losses stay float32.
    path = tmp_path / "vae.keras"
    resumed.model.save(path)
    model = keras.models.load_model(path, safe_mode=True)
    layers = {layer.name: layer for part in (model.encoder, model.decoder) for layer in part.layers}
    assert layers["encoder_conv_0"].dtype_policy.name == policy
    assert layers["decoder_conv_t_0"].dtype_policy.name == policy
    float32_layers = ("mu", "log_var", "decoder_dense", "decoder_conv_t_1", "decoder_output")
    assert {layers[name].dtype_policy.name for name in float32_layers} == {"float32"}
    assert {keras.backend.standardize_dtype(w.dtype) for w in model.weights} == {"float32"}
    x = np.asarray(square_splits.x_val[:8])
    mu, log_var = model.encode(x)
    assert [keras.backend.standardize_dtype(t.dtype) for t in (mu, log_var, model.decode_logits(mu), model(x))] == ["float32"] * 4
    if policy == "mixed_float16":
        assert isinstance(resumed.model.optimizer, keras.optimizers.LossScaleOptimizer)

    evaluation = with_overrides(config, {"evaluate.batch_size": 32})
    scores = metrics.evaluate(model, square_splits, evaluation)
    nll = likelihood.estimate_nll(model, square_splits.x_val, 8, 16, 0, 32)
    assert all(np.isfinite(value) for value in scores.values()) and np.isfinite(nll)
    # The same weights in a float32 model score within 2%: the 16-bit layers round the numbers, nothing more.
    as_float32 = build_vae(IMAGE_SHAPE, config.train, config.base.seed, "float32")
    as_float32.set_weights(model.get_weights())
    elbo, elbo_float32 = (metrics.mean_negative_elbo(m, square_splits.x_val, 32, 0) for m in (model, as_float32))
    assert elbo == pytest.approx(elbo_float32, rel=0.02 if policy != "float32" else 1e-6)
