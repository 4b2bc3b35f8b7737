"""The training loop on tiny data: determinism, the NaN stop, the LR schedule and interrupt-and-resume."""

from __future__ import annotations

import json
import logging

import keras
import numpy as np
import pytest
from training_helpers import IMAGE_SHAPE, InterruptAfterEpoch, weights_of

from vaelab.config.load import with_overrides
from vaelab.errors import TrainingError
from vaelab.training import (
    HISTORY_KEYS,
    OPTIONAL_HISTORY_KEYS,
    STATE_FILE,
    clear_checkpoint,
    default_steps_per_execution,
    read_checkpoint,
    train,
)


class InterruptAtStart(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        raise KeyboardInterrupt


@pytest.mark.slow
def test_the_same_seed_gives_the_same_history(tiny_train_config, square_splits):
    config = tiny_train_config()
    first = train(config, square_splits, verbose=0)
    second = train(config, square_splits, verbose=0)

    assert [row["epoch"] for row in first.history] == [1, 2]
    assert all(set(row) == {"epoch", *HISTORY_KEYS} for row in first.history)
    for a, b in zip(first.history, second.history, strict=True):
        assert b == pytest.approx(a, abs=1e-5)
    assert first.history[1]["loss"] < first.history[0]["loss"]  # it does learn


def test_the_learning_rate_halves_every_epoch_with_lr_decay_half(tiny_train_config, square_splits):
    config = tiny_train_config(**{"train.lr_decay": 0.5, "train.learning_rate": 0.001, "train.epochs": 3})
    result = train(config, square_splits, verbose=0)
    rates = [row["learning_rate"] for row in result.history]
    assert rates == pytest.approx([0.001, 0.0005, 0.00025], rel=1e-6)  # float32 on the optimizer


@pytest.mark.parametrize(
    ("absurd", "advice"),
    [
        ({"train.learning_rate": 1e6}, "train.learning_rate (now 1e+06) or train.r_loss_factor (now 1000)"),
        ({"train.r_loss_factor": 1e30}, "train.learning_rate (now 0.002) or train.r_loss_factor (now 1e+30)"),
    ],
    ids=["learning_rate", "r_loss_factor"],
)
def test_a_diverging_training_stops_with_a_training_error(tiny_train_config, square_splits, tmp_path, absurd, advice):
    with pytest.raises(TrainingError) as caught:
        train(tiny_train_config(**absurd), square_splits, checkpoint_dir=tmp_path / "ckpt", verbose=0)
    message = str(caught.value)
    assert message.startswith("loss became nan at epoch 1, by batch ")
    assert message.endswith(f"; try a lower {advice}")
    assert not (tmp_path / "ckpt" / STATE_FILE).exists()  # a diverged model is never checkpointed


@pytest.mark.slow
def test_an_interrupted_training_resumes_where_it_stopped(tiny_train_config, square_splits, tmp_path):
    config = tiny_train_config(**{"train.epochs": 3, "train.lr_decay": 0.8})
    checkpoints = tmp_path / "ckpt"
    uninterrupted = train(config, square_splits, verbose=0)

    with pytest.raises(KeyboardInterrupt):
        interrupt = [InterruptAfterEpoch(2)]
        train(config, square_splits, checkpoint_dir=checkpoints, callbacks=interrupt, checkpoint_meta={"run_id": "abc"}, verbose=0)
    state = read_checkpoint(checkpoints, config, IMAGE_SHAPE)
    assert state is not None and state["epoch"] == 2 and state["meta"] == {"run_id": "abc"}
    assert sorted(p.name for p in checkpoints.iterdir()) == ["model-epoch-0002.keras", STATE_FILE]

    resumed = train(config, square_splits, checkpoint_dir=checkpoints, verbose=0)
    assert resumed.initial_epoch == 2
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3]
    # Weights, optimizer moments, RNG positions and the shuffle order all carry over, so the resumed
    # run repeats the uninterrupted one: bit for bit on a quiet CPU, and every weight within 1e-5
    # (absolute) allowing for thread-order round-off.
    for a, b in zip(weights_of(uninterrupted.model), weights_of(resumed.model), strict=True):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5)
    for row, resumed_row in zip(uninterrupted.history, resumed.history, strict=True):
        assert resumed_row == pytest.approx(row, rel=1e-4)


@pytest.mark.slow
def test_a_resumed_training_continues_the_kl_warm_up(tiny_train_config, square_splits, tmp_path):
    # Warm-up over 3 epochs of 8 steps, so epoch 2 (the resumed one) still weights the KL by 9/24 .. 16/24.
    config = tiny_train_config(**{"train.kl_warmup_epochs": 3, "train.epochs": 2})
    uninterrupted = train(config, square_splits, verbose=0)
    assert uninterrupted.model.kl_warmup_steps == 24

    checkpoints = tmp_path / "ckpt"
    with pytest.raises(KeyboardInterrupt):
        train(config, square_splits, checkpoint_dir=checkpoints, callbacks=[InterruptAfterEpoch(1)], verbose=0)
    resumed = train(config, square_splits, checkpoint_dir=checkpoints, verbose=0)

    assert resumed.initial_epoch == 1 and resumed.model.kl_warmup_steps == 24  # set again on the loaded model
    for a, b in zip(weights_of(uninterrupted.model), weights_of(resumed.model), strict=True):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5)
    for row, resumed_row in zip(uninterrupted.history, resumed.history, strict=True):
        assert resumed_row == pytest.approx(row, rel=1e-4)


def test_a_checkpoint_of_other_settings_is_ignored_and_replaced(tiny_train_config, square_splits, tmp_path, caplog):
    config = tiny_train_config(**{"train.epochs": 1})
    checkpoints = tmp_path / "ckpt"
    checkpoints.mkdir()
    (checkpoints / "model-epoch-0005.keras").write_bytes(b"not a model")
    stale = {"epoch": 5, "history": [], "fingerprint": "other", "meta": {}, "model_file": "model-epoch-0005.keras"}
    (checkpoints / STATE_FILE).write_text(json.dumps(stale))
    assert read_checkpoint(checkpoints, config, IMAGE_SHAPE) is None

    with caplog.at_level(logging.WARNING, logger="vaelab.training"), pytest.raises(KeyboardInterrupt):
        train(config, square_splits, checkpoint_dir=checkpoints, callbacks=[InterruptAtStart()], verbose=0)
    assert "ignoring and replacing the checkpoint" in caplog.text
    assert not checkpoints.exists()  # gone before the first epoch, not merely overwritten after it

    result = train(config, square_splits, checkpoint_dir=checkpoints, verbose=0)
    assert result.initial_epoch == 0
    assert (read_checkpoint(checkpoints, config, IMAGE_SHAPE) or {}).get("epoch") == 1
    assert sorted(p.name for p in checkpoints.iterdir()) == ["model-epoch-0001.keras", STATE_FILE]

    # A finished checkpoint (the caller crashed before clearing it) gives the model back untouched.
    again = train(config, square_splits, checkpoint_dir=checkpoints, verbose=0)
    assert again.initial_epoch == 1 and again.history == result.history
    for a, b in zip(weights_of(result.model), weights_of(again.model), strict=True):
        np.testing.assert_array_equal(a, b)

    clear_checkpoint(checkpoints)
    assert not checkpoints.exists()


def test_a_checkpoint_of_other_data_does_not_match(tiny_train_config, tmp_path):
    config = tiny_train_config()
    checkpoints = tmp_path / "ckpt"
    checkpoints.mkdir()
    (checkpoints / "model-epoch-0001.keras").write_bytes(b"")
    assert read_checkpoint(checkpoints, config, IMAGE_SHAPE) is None  # no state.json at all
    # Fake a checkpoint of this very config by borrowing the fingerprint train would write.
    from vaelab.precision import resolve
    from vaelab.training import _fingerprint

    fingerprint = _fingerprint(config, IMAGE_SHAPE, resolve(config.train.precision))
    state = {"epoch": 1, "history": [], "fingerprint": fingerprint, "meta": {}, "model_file": "model-epoch-0001.keras"}
    (checkpoints / STATE_FILE).write_text(json.dumps(state))
    assert read_checkpoint(checkpoints, config, IMAGE_SHAPE) == state
    assert read_checkpoint(checkpoints, config, (32, 32, 1)) is None
    assert read_checkpoint(checkpoints, with_overrides(config, {"data.max_train": 100}), IMAGE_SHAPE) is None
    assert read_checkpoint(checkpoints, with_overrides(config, {"base.seed": 7}), IMAGE_SHAPE) is None


def test_without_a_terminal_progress_is_one_line_per_epoch(tiny_train_config, square_splits, capsys):
    train(tiny_train_config(**{"train.epochs": 2}), square_splits)  # verbose="auto"; pytest's captured stdout is no TTY
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out
    assert "━" not in out and "\r" not in out  # no redrawn progress bar


@pytest.mark.parametrize(("steps_per_epoch", "expected"), [(844, 4), (1688, 8), (422, 2), (211, 1), (48, 16), (17, 1), (1, 1)])
def test_steps_per_execution_is_the_largest_divisor_of_the_epoch_up_to_16(steps_per_epoch, expected):
    assert default_steps_per_execution(steps_per_epoch) == expected


@pytest.mark.parametrize("count", [3, 0])
def test_steps_per_execution_that_does_not_divide_the_epoch_is_refused(tiny_train_config, square_splits, count):
    with pytest.raises(ValueError, match=f"^steps_per_execution={count} must be a positive divisor of the 8 steps of an epoch$"):
        train(tiny_train_config(), square_splits, verbose=0, steps_per_execution=count)


@pytest.mark.slow
def test_several_steps_per_execution_train_exactly_like_one_step_per_call(tiny_train_config, square_splits):
    fused = train(tiny_train_config(), square_splits, verbose=0)
    plain = train(tiny_train_config(), square_splits, verbose=0, steps_per_execution=1)

    # 256 images in batches of 32: one execution of 8 steps per epoch against 8 calls of one step.
    assert (fused.model.steps_per_execution, plain.model.steps_per_execution) == (8, 1)
    for fused_row, plain_row in zip(fused.history, plain.history, strict=True):
        assert fused_row == pytest.approx(plain_row, rel=1e-5)
    for fused_weight, plain_weight in zip(weights_of(fused.model), weights_of(plain.model), strict=True):
        np.testing.assert_allclose(fused_weight, plain_weight, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_an_interrupted_iwae_training_with_a_vamp_prior_resumes_where_it_stopped(tiny_train_config, square_splits, tmp_path):
    # The pseudo-images are weights like any other: the resumed run must end with the same ones, and the bound
    # (iwae_nats) is recorded every epoch beside the loss.
    objectives = {
        "train.loss": "iwae",
        "train.iwae_samples": 3,
        "train.prior": "vamp",
        "train.vamp_components": 4,
        "train.reconstruction": "bce",
        "train.r_loss_factor": 784.0,
        "train.kl_warmup_epochs": 2,
        "train.epochs": 2,
    }
    config = tiny_train_config(**objectives)
    uninterrupted = train(config, square_splits, verbose=0)
    assert all(set(row) == {"epoch", *HISTORY_KEYS, *OPTIONAL_HISTORY_KEYS} for row in uninterrupted.history)
    # Validation weighs the KL fully, so its loss is the bound; training's is warmed up, so it is another number.
    assert all(row["val_loss"] == pytest.approx(row["val_iwae_nats"], rel=1e-6) for row in uninterrupted.history)
    assert uninterrupted.history[0]["loss"] != uninterrupted.history[0]["iwae_nats"]

    checkpoints = tmp_path / "ckpt"
    with pytest.raises(KeyboardInterrupt):
        train(config, square_splits, checkpoint_dir=checkpoints, callbacks=[InterruptAfterEpoch(1)], verbose=0)
    resumed = train(config, square_splits, checkpoint_dir=checkpoints, verbose=0)

    assert resumed.initial_epoch == 1
    pseudo = [i for i, w in enumerate(resumed.model.weights) if w.path.endswith("pixel_logits")]
    assert len(pseudo) == 1
    first = np.asarray(train(tiny_train_config(**{**objectives, "train.epochs": 1}), square_splits, verbose=0).model.weights[pseudo[0]])
    final = weights_of(resumed.model)[pseudo[0]]
    assert np.abs(final - first).max() > 1e-5  # the pseudo-images did train in the resumed epoch
    for a, b in zip(weights_of(uninterrupted.model), weights_of(resumed.model), strict=True):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5)
    for row, resumed_row in zip(uninterrupted.history, resumed.history, strict=True):
        assert resumed_row == pytest.approx(row, rel=1e-4)


def test_a_checkpoint_from_before_the_objective_keys_still_matches(tiny_train_config):
    # Checkpoints written before train.loss, iwae_samples, prior and vamp_components existed hashed the train
    # section without them; at their defaults the fingerprint is still that hash, so such a training resumes.
    import hashlib

    from vaelab.precision import resolve
    from vaelab.training import _fingerprint

    config = tiny_train_config()
    policy = resolve(config.train.precision)
    train_section = config.train.model_dump(mode="json")
    for key in ("loss", "iwae_samples", "prior", "vamp_components"):
        del train_section[key]
    before = {"policy": policy, "train": train_section, "data": config.data.model_dump(mode="json"), "seed": 42, "image_shape": [28, 28, 1]}
    expected = hashlib.sha256(json.dumps(before, sort_keys=True).encode("utf-8")).hexdigest()
    assert _fingerprint(config, IMAGE_SHAPE, policy) == expected
    # Any of them away from its default is other settings.
    for change in ({"train.prior": "vamp"}, {"train.vamp_components": 7, "train.prior": "vamp"}):
        assert _fingerprint(tiny_train_config(**change), IMAGE_SHAPE, policy) != expected
