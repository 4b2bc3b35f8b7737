"""The benchmark harness: FLOP counts checked by hand, its statistics and goals, and a real tiny-mode run.

The tiny run trains a few steps of every implementation, runs the real stages, `dvc repro` and three
small sweeps in a scratch folder, and must write a results.json with every field, typed and consistent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import flops, pipeline, report, stats, sweeps, throughput
from bench.goals import NO_NATIVE_BF16, judge_goals
from bench.processes import Measured
from vaelab.precision import resolve as resolve_precision

PROJECT = Path(__file__).resolve().parents[1]
# The PyTorch reference is measured when this interpreter exists (`make bench-torch`), skipped otherwise.
TORCH_PYTHON = os.environ.get("VAELAB_BENCH_TORCH_PYTHON", str(PROJECT / ".venv-torch" / "bin" / "python"))
HAS_TORCH = Path(TORCH_PYTHON).exists()

SPEED_GOALS = (
    "vaelab_over_keras_reference",
    "vaelab_over_keras_reference_equal_precision",
    "vaelab_over_best_torch_equal_precision",
    "fraction_of_matmul_peak",
)
CHAPTER_FORWARD_MACS = 14_921_088  # worked out layer by layer in test_the_chapters_model_costs_about_15_m_multiply_adds


# --- FLOPs -----------------------------------------------------------------------------------------------------


def test_layer_formulas_on_hand_checkable_shapes():
    # 3x3 kernel over 1 channel, 2 filters, 4x4 output: 16 outputs x 2 filters x 9 products.
    assert flops.conv2d_macs((4, 4), 1, 2, (3, 3)) == 288
    assert flops.conv2d_macs((2, 2), 1, 2, (3, 3)) == 72  # stride 2: a quarter of the outputs
    # Transposed: each of 2x2 inputs x 3 channels scatters a 3x3 patch into 5 channels.
    assert flops.conv2d_transpose_macs((2, 2), 3, 5, (3, 3)) == 540
    assert flops.dense_macs(3136, 2) == 6272
    assert flops.dense_macs(8, 4, positions=3) == 96
    assert flops.training_flops_per_image(1000) == 6000  # x2 FLOPs per MAC, x3 passes


def test_layer_costs_read_the_shapes_of_a_small_keras_model():
    import keras

    images = keras.Input((4, 4, 1))
    x = keras.layers.Conv2D(2, 3, padding="same", name="conv")(images)  # (batch, 4, 4, 2)
    x = keras.layers.LeakyReLU()(x)
    x = keras.layers.Conv2DTranspose(3, 3, strides=2, padding="same", name="up")(x)  # (batch, 8, 8, 3)
    x = keras.layers.Flatten()(x)  # (batch, 192)
    x = keras.layers.Dense(5, name="dense")(x)
    costs = flops.layer_costs(keras.Model(images, x))

    assert [(c.name, c.kind, c.multiply_adds) for c in costs] == [
        ("conv", "Conv2D", 4 * 4 * 2 * 9 * 1),
        ("up", "Conv2DTranspose", 4 * 4 * 2 * 9 * 3),
        ("dense", "Dense", 192 * 5),
    ]
    assert flops.forward_macs(costs) == 288 + 864 + 960


def test_a_kernel_layer_without_a_rule_is_an_error_not_zero():
    import keras

    images = keras.Input((4, 4, 2))
    model = keras.Model(images, keras.layers.DepthwiseConv2D(3, name="depthwise")(images))
    with pytest.raises(ValueError, match="layer 'depthwise' of type DepthwiseConv2D has a kernel but no FLOP rule"):
        flops.layer_costs(model)


def test_the_chapters_model_costs_about_15_m_multiply_adds():
    from bench.keras_reference import build_reference_vae
    from vaelab.config.schema import TrainSection
    from vaelab.model import build_vae

    vae = build_vae((28, 28, 1), TrainSection(), seed=0)
    by_layer = {c.name: c.multiply_adds for c in flops.layer_costs(vae.encoder, vae.decoder)}
    assert by_layer == {
        "encoder_conv_0": 28 * 28 * 32 * 9 * 1,  # 225,792
        "encoder_conv_1": 14 * 14 * 64 * 9 * 32,  # 3,612,672
        "encoder_conv_2": 7 * 7 * 64 * 9 * 64,  # 1,806,336
        "encoder_conv_3": 7 * 7 * 64 * 9 * 64,
        "mu": 3136 * 2,
        "log_var": 3136 * 2,
        "decoder_dense": 2 * 3136,
        "decoder_conv_t_0": 7 * 7 * 64 * 9 * 64,  # counted on the input grid
        "decoder_conv_t_1": 7 * 7 * 64 * 9 * 64,
        "decoder_conv_t_2": 14 * 14 * 64 * 9 * 32,
        "decoder_conv_t_3": 28 * 28 * 32 * 9 * 1,
    }
    forward = sum(by_layer.values())
    assert forward == CHAPTER_FORWARD_MACS
    assert abs(forward - 15e6) / 15e6 < 0.01  # the "forward ≈ 15 M multiply-adds"
    assert 89e6 < flops.training_flops_per_image(forward) == 89_526_528 < 90e6  # the "about 89 MFLOP"

    reference = build_reference_vae()  # the yardstick must do exactly the same work
    assert flops.forward_macs(flops.layer_costs(reference.encoder, reference.decoder)) == CHAPTER_FORWARD_MACS


# --- statistics, goals, report ------------------------------------------------------------------------------


def test_summary_of_repetitions():
    figure = stats.summarize([300.0, 100.0, 200.0], "images/s")
    assert figure == {
        "median": 200.0,
        "min": 100.0,
        "max": 300.0,
        "spread_percent": 100.0,
        "samples": [300.0, 100.0, 200.0],
        "unit": "images/s",
        "status": "measured",
    }
    assert stats.summarize([], "s")["status"] == "not measured: no samples"
    assert stats.ratios([6.0, 9.0], [2.0, 3.0]) == [3.0, 3.0]


def test_goals_say_whether_and_by_how_much_they_are_missed():
    missed = stats.goal("ratio", {"median": 1.2}, ">=", 1.5, "×")
    assert missed["met"] is False and missed["shortfall"] == pytest.approx(0.3) and missed["shortfall_percent"] == pytest.approx(20)
    met = stats.goal("ratio", {"median": 1.6}, ">=", 1.5, "×")
    assert met["met"] is True and met["shortfall"] == 0
    slow = stats.goal("repro", {"median": 4.5}, "<=", 3.0, " s")
    assert slow["met"] is False and slow["shortfall"] == pytest.approx(1.5) and slow["shortfall_percent"] == pytest.approx(50)
    skipped = stats.goal("torch", stats.missing("skipped: no torch", "ratio"), ">=", 1.5, "×")
    assert skipped["met"] is None and skipped["shortfall"] is None and skipped["status"] == "skipped: no torch"


def _measured_results(precision: str, best_torch: str, **batch_figures: float) -> dict:
    """A results dict with every section judge_goals reads, each figure measured once at ``batch_figures``' values."""
    figures = {key: stats.summarize([value], "ratio") for key, value in batch_figures.items()}
    one = stats.summarize([1.0], "s")
    batch = {"vaelab_fraction_of_peak": one, "best_torch_equal_precision": best_torch, **figures}
    return {
        "throughput": {"vaelab_precision": precision, "batch_32": batch},
        "quality": {"gap": 0.0, "status": "measured"},
        "pipeline": {"noop_dvc_repro_s": one, "startup_to_first_step_end_s": one, "evaluate_fraction_of_epoch": one},
        "memory": {"sweep_trials": 3, "sweep_growth_mb_per_trial": 0.0, "status": "measured"},
        "sweeps": {"status": "measured", "epochs_fraction": 0.4, "best_value_gap": 0.0},
    }


def test_the_float32_keras_goal_applies_only_where_vaelab_trains_in_bfloat16():
    ratios = {
        "vaelab_over_keras_reference": 1.4,
        "vaelab_over_keras_reference_equal_precision": 1.3,
        "vaelab_over_best_torch_equal_precision": 1.0,
    }
    float32 = judge_goals(_measured_results("float32", "torch_compiled", **ratios), (32,))["vaelab_over_keras_reference_batch_32"]
    assert float32["status"] == NO_NATIVE_BF16 == "not applicable: no native bfloat16 on this machine"
    assert float32["met"] is None and float32["actual"] is None and float32["shortfall"] is None
    assert report.goal_row(float32) == (
        "| vaelab in mixed bfloat16 / float32 Keras reference, batch 32 | >= 1.5× | — | not applicable | — |"
    )
    bf16 = judge_goals(_measured_results("mixed_bfloat16", "torch_compiled", **ratios), (32,))["vaelab_over_keras_reference_batch_32"]
    assert (bf16["actual"], bf16["target"], bf16["met"], bf16["status"]) == (1.4, 1.5, False, "measured")
    assert bf16["shortfall"] == pytest.approx(0.1) and bf16["shortfall_percent"] == pytest.approx(100 / 15)


def test_equal_precision_goals_ask_1_2x_and_say_by_how_much_they_are_missed():
    ratios = {
        "vaelab_over_keras_reference": 1.4,
        "vaelab_over_keras_reference_equal_precision": 1.3,
        "vaelab_over_best_torch_equal_precision": 0.9,
    }
    goals = judge_goals(_measured_results("mixed_bfloat16", "torch_compiled_bf16", **ratios), (32,))
    keras = goals["vaelab_over_keras_reference_equal_precision_batch_32"]
    assert (keras["target"], keras["met"], keras["shortfall"]) == (1.2, True, 0)
    torch = goals["vaelab_over_best_torch_equal_precision_batch_32"]
    assert torch["description"] == "vaelab / torch compiled (the faster PyTorch) at equal precision, batch 32"
    assert (torch["target"], torch["actual"], torch["met"]) == (1.2, 0.9, False)
    assert torch["shortfall"] == pytest.approx(0.3) and torch["shortfall_percent"] == pytest.approx(25)
    assert report.goal_row(torch) == (
        "| vaelab / torch compiled (the faster PyTorch) at equal precision, batch 32 | >= 1.2× | 0.9 | **no** | 0.3× (25%) |"
    )
    assert "vaelab_over_torch_eager_equal_precision_batch_32" not in goals  # the best-PyTorch goal replaces it
    evaluate = goals["evaluate_fraction_of_epoch"]
    assert (evaluate["target"], evaluate["actual"], evaluate["met"]) == (0.5, 1.0, False) and evaluate["shortfall"] == 0.5


def test_the_best_pytorch_is_the_faster_measured_one():
    from bench.run import best_torch

    eager, compiled = stats.summarize([900.0, 1000.0], "images/s"), stats.summarize([1200.0, 1100.0], "images/s")
    skipped = stats.missing("skipped: torch.compile failed: no compiler", "images/s")
    assert best_torch(["torch_eager", "torch_compiled"], {"torch_eager": eager, "torch_compiled": compiled}) == "torch_compiled"
    assert best_torch(["torch_eager", "torch_compiled"], {"torch_eager": compiled, "torch_compiled": eager}) == "torch_eager"
    assert best_torch(["torch_eager", "torch_compiled"], {"torch_eager": eager, "torch_compiled": skipped}) == "torch_eager"
    assert best_torch(["torch_eager", "torch_compiled"], {"torch_eager": skipped, "torch_compiled": skipped}) is None


def test_the_report_shows_compile_times_and_the_step_profile():
    results = {
        "settings": {"batches": [32, 128]},
        "throughput": {
            "batch_32": {"compile_seconds": {"torch_compiled": 41.25, "torch_compiled_bf16": None}},
            "batch_128": {"compile_seconds": {"torch_compiled": 12.0, "torch_compiled_bf16": None}},
        },
    }
    assert report.compile_rows(results) == [
        "| torch_compiled: compile time (first step, not in images/s) | 41.2 s | 12.0 s |",
        "| torch_compiled_bf16: compile time (first step, not in images/s) | — | — |",
    ]
    run = {
        "precision": "mixed_bfloat16",
        "wall_ms_per_step": 80.0,
        "tensorflow_ops_ms_per_step": {"convolution": 40.0, "casts": 4.0},
        "onednn_ms_per_step": {"convolution_forward": 20.0},
        "busy_ms_per_step": 60.0,
        "outside_ops_ms_per_step": 20.0,
    }
    profile = {
        "batch": 128,
        "steps": 40,
        "cpu_bf16_features": {"avx512_bf16": True, "amx_bf16": False},
        "onednn_ops": True,
        "runs": [run],
        "status": "measured",
    }
    assert report.profile_table(profile) == [
        "",
        "Where vaelab's training step goes (batch 128, 40 timed steps; avx512_bf16 yes, amx_bf16 no; TensorFlow's oneDNN ops on):",
        "",
        "| kind | mixed_bfloat16: ms per step | share of the step |",
        "|---|---|---|",
        "| TensorFlow ops: casts | 4.00 | 5% |",
        "| TensorFlow ops: convolution | 40.00 | 50% |",
        "| oneDNN primitives: convolution forward | 20.00 | 25% |",
        "| **ops running (busy)** | 60.00 | 75% |",
        "| **outside ops** | 20.00 | 25% |",
        "| **wall-clock step** | 80.00 | 100% |",
    ]
    failed = {**profile, "runs": [], "onednn_ops": None, "status": "failed: CalledProcessError: exit 1"}
    assert report.profile_table(failed)[1].endswith("TensorFlow's oneDNN ops not reported): failed: CalledProcessError: exit 1")
    assert report.profile_table(None) == []


def test_slope_and_memory_flatness():
    assert stats.least_squares_slope([1.0, 3.0, 5.0]) == pytest.approx(2.0)
    assert stats.least_squares_slope([4.0]) is None
    # The first trial (caches being built) is left out; then +1 MB per trial is flat, +5 MB is not.
    assert sweeps.memory_growth([500.0, 900.0, 901.0, 902.0]) == (pytest.approx(1.0), True)
    assert sweeps.memory_growth([900.0, 905.0, 910.0])[1] is False


def test_trial_peaks_take_the_samples_inside_each_trial():
    run = Measured(["x"], 0.0, 10.0, 999.0, rss_samples=[(1.0, 100.0), (2.0, 300.0), (3.0, 200.0), (5.0, 250.0), (9.0, 800.0)])
    trials = [{"start": 0.5, "end": 3.5}, {"start": 4.0, "end": 6.0}, {"start": 6.5, "end": 7.0}]
    assert sweeps.trial_peaks(run, trials) == [300.0, 250.0, None]


def test_pruning_comparison():
    pruned = {"epochs_spent": 14, "best_value": 102.0}
    unpruned = {"epochs_spent": 40, "best_value": 100.0}
    assert sweeps.compare_pruning(pruned, unpruned) == {"epochs_fraction": 0.35, "best_value_gap": pytest.approx(0.02)}


def test_throughput_skips_the_warm_up_steps():
    # Steps end at 1, 2, 4 and 6 s; with one warm-up step, 3 steps of 10 images take 6 - 1 = 5 s.
    assert throughput.rate_from_step_ends([(1, 1.0), (2, 2.0), (3, 4.0), (4, 6.0)], warmup=1, batch=10) == pytest.approx(6.0)
    # Executions of 4 steps end at 1, 3 and 5 s: timing starts after the first one that covers the warm-up,
    # and counts the steps each execution really ran (2 in the last), not one per reported batch.
    assert throughput.rate_from_step_ends([(4, 1.0), (8, 3.0), (10, 5.0)], warmup=2, batch=10) == pytest.approx(60 / 4)
    with pytest.raises(throughput.BenchError):
        throughput.rate_from_step_ends([(4, 1.0), (8, 3.0)], warmup=5, batch=10)
    assert throughput.steps_for(32, 4096) == 128 and throughput.steps_for(128, 100) == 1


def test_readme_block_is_replaced_between_the_markers_only():
    readme = f"# Title\n\nintro\n\n{report.README_BEGIN}\nold table\n{report.README_END}\n\nafter\n"
    updated = report.replace_readme_block(readme, "| new | table |\n")
    assert updated == f"# Title\n\nintro\n\n{report.README_BEGIN}\n| new | table |\n{report.README_END}\n\nafter\n"
    assert report.replace_readme_block(updated, "| new | table |\n") == updated
    with pytest.raises(ValueError, match="the README has no benchmark section"):
        report.replace_readme_block("# no markers\n", "x")


def test_the_projects_readme_has_the_markers():
    readme = (PROJECT / "README.md").read_text(encoding="utf-8")
    # Once each, begin before end, each on a line of its own: `make bench` rewrites exactly one block.
    lines = readme.splitlines()
    assert lines.count(report.README_BEGIN) == 1 and lines.count(report.README_END) == 1
    assert lines.index(report.README_BEGIN) < lines.index(report.README_END)
    before, after = readme.split(report.README_BEGIN)[0], readme.split(report.README_END)[1]
    assert report.replace_readme_block(readme, "x") == f"{before}{report.README_BEGIN}\nx\n{report.README_END}{after}"


# --- child processes --------------------------------------------------------------------------------------------


def test_peak_rss_is_the_commands_own_not_the_harness(tmp_path: Path):
    import numpy as np

    from bench.processes import BenchError, run_measured

    ballast = np.ones(400 * 2**20 // 8)  # 400 MB resident in this process, which a plain fork would pass on
    common: dict[str, Any] = {"cwd": tmp_path, "env": dict(os.environ), "timeout": 120}
    small = run_measured([sys.executable, "-c", "pass"], log=tmp_path / "small.log", **common)
    assert small.peak_rss_mb < 100, small.peak_rss_mb
    grows = "import numpy, time; a = numpy.ones(300 * 2**20 // 8); time.sleep(1)"
    big = run_measured([sys.executable, "-c", grows], log=tmp_path / "big.log", sample_rss=True, **common)
    assert 300 < big.peak_rss_mb < 400, big.peak_rss_mb
    assert max(mb for _, mb in big.rss_samples) > 300  # the samples watch the command, not its launcher
    assert big.wall_seconds >= 1 and big.started <= big.rss_samples[0][0]
    with pytest.raises(BenchError, match=r"exited with code 3: boom \(see .*fails.log\)"):
        run_measured([sys.executable, "-c", "print('boom'); raise SystemExit(3)"], log=tmp_path / "fails.log", **common)
    del ballast


def test_the_no_op_repro_records_only_the_pipelines_stages(tmp_path: Path):
    """A .dvc file whose data lives in another machine's cache (a saved training state, say) is no pipeline output:
    the bench's `dvc commit` must leave it alone, as the copy of the project it works on does not have that data."""
    work = tmp_path / "work"
    work.mkdir()
    subprocess.run([*pipeline.dvc_command(), "init", "--no-scm", "-q"], cwd=work, check=True)
    write = "open('out.txt', 'w').write('made')"
    (work / "dvc.yaml").write_text(f'stages:\n  make:\n    cmd: python -c "{write}"\n    outs:\n    - out.txt\n')
    (work / "out.txt").write_text("made")  # the stage ran, as the bench's rounds run every stage first
    (work / "elsewhere").mkdir()
    (work / "elsewhere" / "state.dvc").write_text("outs:\n- md5: 0123456789abcdef0123456789abcdef\n  size: 5\n  hash: md5\n  path: state\n")

    noop = pipeline.commit_then_repro(work, pipeline.stage_env(work), tmp_path / "repro.log")

    assert pipeline.UP_TO_DATE in (tmp_path / "repro.log").read_text() and noop.wall_seconds > 0
    assert "out.txt" in (work / "dvc.lock").read_text()


# --- the references at equal precision ---------------------------------------------------------------------


def test_the_keras_reference_in_mixed_bfloat16_keeps_the_heads_sampling_output_and_weights_float32():
    import numpy as np

    from bench.keras_reference import build_reference_vae

    model = build_reference_vae(0, policy="mixed_bfloat16")
    layers = [*model.encoder.layers[1:], *model.decoder.layers[1:]]
    float32 = {layer.name for layer in layers if layer.compute_dtype == "float32"}
    assert float32 == {"z_mean", "z_log_var", model.encoder.layers[-1].name, model.decoder.layers[-1].name}
    assert {layer.compute_dtype for layer in layers if layer.name not in float32} == {"bfloat16"}
    assert {w.dtype for w in model.weights} == {"float32"}
    history = model.fit(np.random.default_rng(0).random((8, 28, 28, 1), dtype=np.float32), batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0]) and history.history["loss"][0] > 0
    assert model.decoder(np.zeros((1, 2), dtype="float32")).dtype == "float32"


# --- the real thing, tiny --------------------------------------------------------------------------------------

FIGURE_KEYS = {"median", "min", "max", "spread_percent", "samples", "unit", "status"}


def _check_figure(figure: dict, samples: int | None) -> None:
    """``samples`` = how many a measured figure must have; None = must be unmeasured (skipped)."""
    assert set(figure) >= FIGURE_KEYS, figure
    assert isinstance(figure["unit"], str) and isinstance(figure["status"], str)
    if samples is None:
        assert figure["status"] != "measured" and figure["median"] is None and figure["samples"] == []
        return
    assert figure["status"] == "measured", figure["status"]
    assert len(figure["samples"]) == samples and all(isinstance(v, float) for v in figure["samples"])
    assert all(isinstance(figure[k], float) for k in ("median", "min", "max"))
    assert figure["min"] <= figure["median"] <= figure["max"]


@pytest.mark.slow
def test_tiny_mode_writes_every_field(tmp_path: Path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{report.README_BEGIN}\nold\n{report.README_END}\n", encoding="utf-8")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--mode",
            "tiny",
            "--out",
            str(tmp_path / "out"),
            "--scratch",
            str(tmp_path / "scratch"),
            "--readme",
            str(readme),
            "--torch-python",
            TORCH_PYTHON,
        ],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    rounds = 2  # MODES["tiny"].repetitions

    assert results["mode"] == "tiny" and results["schema_version"] == 1 and isinstance(results["duration_s"], float)
    machine = results["machine"]
    for key in ("cpu_model", "os", "python", "numpy", "tensorflow", "keras", "date_utc"):
        assert isinstance(machine[key], str) and machine[key], key
    assert isinstance(machine["usable_cpus"], int) and machine["usable_cpus"] >= 1
    assert len(machine["load_average_start"]) == 3 and len(machine["load_average_end"]) == 3
    assert (machine["torch"] is not None) == HAS_TORCH
    assert results["settings"]["batches"] == [32, 128] and results["settings"]["timed_steps"] == {"32": 8, "128": 2}

    assert results["flops"]["forward_multiply_adds_per_image"] == CHAPTER_FORWARD_MACS
    assert results["flops"]["training_flops_per_image"] == 89_526_528
    assert results["flops"]["same_architecture_as_references"] is True
    _check_figure(results["matmul_peak_gflops"], rounds)
    assert results["matmul_peak_gflops"]["matrix_size"] == 512
    # vaelab runs at what train.precision: auto picks on this machine; the bfloat16 references run beside it
    # only when that is mixed bfloat16 (a CPU with avx512_bf16 or AMX), and the equal-precision ratios follow.
    precision = results["throughput"]["vaelab_precision"]
    assert precision == resolve_precision("auto")
    bf16 = precision == "mixed_bfloat16"
    bf16_peak = results["throughput"]["bfloat16_matmul_peak_gflops"]
    _check_figure(bf16_peak, rounds if bf16 else None)
    for batch in (32, 128):
        figures = results["throughput"][f"batch_{batch}"]
        for key in ("vaelab", "keras_reference", "vaelab_over_keras_reference", "vaelab_over_keras_reference_equal_precision"):
            _check_figure(figures[key], rounds)
        for key in ("vaelab_gflops", "vaelab_fraction_of_peak"):
            _check_figure(figures[key], rounds)
        _check_figure(figures["keras_reference_bf16"], rounds if bf16 else None)
        for key in ("torch_eager", "vaelab_over_torch_eager", "vaelab_over_torch_eager_equal_precision"):
            _check_figure(figures[key], rounds if HAS_TORCH else None)
        _check_figure(figures["torch_eager_bf16"], rounds if HAS_TORCH and bf16 else None)
        # Each torch.compile'd model costs 12-24 s to compile, so tiny mode leaves the compiled peers out.
        for key in ("torch_compiled", "torch_compiled_bf16", "vaelab_over_torch_compiled", "vaelab_over_torch_compiled_equal_precision"):
            _check_figure(figures[key], None)
        assert figures["torch_compiled"]["status"] == "skipped: PyTorch compiled runs in full mode only, not in tiny mode"
        assert figures["compile_seconds"] == {"torch_compiled": None, "torch_compiled_bf16": None}
        _check_figure(figures["vaelab_over_best_torch_equal_precision"], rounds if HAS_TORCH else None)
        if HAS_TORCH:
            assert figures["best_torch_equal_precision"] == ("torch_eager_bf16" if bf16 else "torch_eager")
            assert figures["vaelab_over_best_torch_equal_precision"] == figures["vaelab_over_torch_eager_equal_precision"]
        vaelab = figures["vaelab"]["samples"]
        for ratio, reference in (
            ("vaelab_over_keras_reference", "keras_reference"),
            ("vaelab_over_keras_reference_equal_precision", "keras_reference_bf16" if bf16 else "keras_reference"),
        ):
            expected = [v / r for v, r in zip(vaelab, figures[reference]["samples"], strict=True)]
            assert figures[ratio]["samples"] == pytest.approx(expected), ratio
        assert figures["vaelab_gflops"]["samples"] == pytest.approx([v * 89_526_528 / 1e9 for v in vaelab])
        peaks = (bf16_peak if bf16 else results["matmul_peak_gflops"])["samples"]
        expected_shares = [g / p for g, p in zip(figures["vaelab_gflops"]["samples"], peaks, strict=True)]
        assert figures["vaelab_fraction_of_peak"]["samples"] == pytest.approx(expected_shares)
    # An MNIST epoch of 54,000 images: 1688 steps of 32 (8 x 211), 422 steps of 128 (2 x 211).
    assert [results["throughput"][f"batch_{b}"]["vaelab_steps_per_execution"] for b in (32, 128)] == [8, 2]
    if not HAS_TORCH:
        assert results["notes"]["throughput.torch_eager"].startswith("skipped: ")

    profile = results["profile"]
    assert profile["status"] == "measured" and (profile["batch"], profile["steps"]) == (32, 4)
    cpu_flags = set(Path("/proc/cpuinfo").read_text().split())
    assert profile["cpu_bf16_features"] == {flag: flag in cpu_flags for flag in ("avx512_bf16", "amx_bf16")}
    (run,) = profile["runs"]
    assert run["precision"] == precision and run["batch"] == 32 and run["wall_ms_per_step"] > 0
    assert isinstance(run["onednn_ops"], bool) and profile["onednn_ops"] is run["onednn_ops"]

    quality = results["quality"]
    assert quality["epochs"] == 1 and quality["precision"] == precision
    if bf16:
        scores, by_seed = quality["test_neg_elbo_nats"], quality["by_seed"]
        assert quality["status"] == "measured" and set(scores) == set(by_seed) == {"float32", "mixed_bfloat16"}
        # Two trainings per precision, from params.yaml's seed and the next; the gap is that of their means.
        assert quality["seeds"] == [42, 43] and all(len(runs) == 2 for runs in by_seed.values())
        assert by_seed["float32"][0] != by_seed["float32"][1]
        assert scores == {policy: pytest.approx(sum(runs) / 2) for policy, runs in by_seed.items()}
        assert quality["gap"] == pytest.approx((scores["mixed_bfloat16"] - scores["float32"]) / scores["float32"])
    else:
        assert quality["status"].startswith("skipped: ") and quality["gap"] is None

    pipeline = results["pipeline"]
    assert pipeline["status"] == "measured"
    for key in (
        "noop_dvc_repro_s",
        "startup_to_first_step_begin_s",
        "startup_to_first_step_end_s",
        "train_epoch_s",
        "evaluate_s",
        "evaluate_fraction_of_epoch",
    ):
        _check_figure(pipeline[key], 1)
    assert pipeline["startup_to_first_step_begin_s"]["median"] < pipeline["startup_to_first_step_end_s"]["median"]
    assert pipeline["evaluate_fraction_of_epoch"]["median"] == pytest.approx(
        pipeline["evaluate_s"]["median"] / pipeline["train_epoch_s"]["median"]
    )

    memory = results["memory"]
    assert memory["status"] == "measured"
    _check_figure(memory["preprocess_peak_rss_mb"], 1)
    _check_figure(memory["train_peak_rss_mb"], 1)
    assert memory["train_peak_rss_mb"]["median"] > memory["preprocess_peak_rss_mb"]["median"]  # TensorFlow is big
    assert memory["sweep_trials"] == 3 and len(memory["sweep_trial_peak_rss_mb"]) == 3
    assert isinstance(memory["sweep_peak_rss_mb"], float) and isinstance(memory["sweep_growth_mb_per_trial"], float)
    assert isinstance(memory["sweep_memory_flat"], bool)

    sweep = results["sweeps"]
    assert sweep["status"] == "measured" and sweep["pruner"] in ("median", "percentile", "successive_halving", "hyperband")
    assert sweep["pruned"]["trials"] == sweep["unpruned"]["trials"] == 3
    assert sweep["unpruned"]["epochs_spent"] == 3 * 2 and sweep["unpruned"]["states"] == {"COMPLETE": 3}
    assert 3 <= sweep["pruned"]["epochs_spent"] <= 6
    assert sweep["epochs_fraction"] == pytest.approx(sweep["pruned"]["epochs_spent"] / 6)
    assert isinstance(sweep["pruned"]["best_value"], float) and isinstance(sweep["best_value_gap"], float)

    assert set(results["goals"]) == {
        *(f"{figure}_batch_{batch}" for batch in (32, 128) for figure in SPEED_GOALS),
        "quality_gap",
        "noop_dvc_repro_s",
        "startup_to_first_step_s",
        "evaluate_fraction_of_epoch",
        "sweep_growth_mb_per_trial",
        "pruned_sweep_epochs_fraction",
        "pruned_best_value_gap",
    }
    for name, goal in results["goals"].items():
        assert set(goal) == {"description", "target", "comparison", "actual", "unit", "met", "shortfall", "shortfall_percent", "status"}
        if goal["actual"] is None:
            not_applicable = not bf16 and name.startswith("vaelab_over_keras_reference_batch_")
            assert not_applicable == (goal["status"] == NO_NATIVE_BF16), name
            assert (not HAS_TORCH and "torch" in name) or (not bf16 and name == "quality_gap") or not_applicable, name
            assert goal["met"] is None
            continue
        beats = goal["actual"] >= goal["target"] if goal["comparison"] == ">=" else goal["actual"] <= goal["target"]
        assert goal["met"] is beats and (goal["shortfall"] == 0) is beats, name
        assert goal["shortfall"] == pytest.approx(abs(goal["actual"] - goal["target"]) if not beats else 0.0), name

    table = (tmp_path / "out" / "results.md").read_text()
    assert "| **vaelab / Keras reference in float32** |" in table and "| goal | target |" in table
    assert "| torch_compiled: compile time (first step, not in images/s) | — | — |" in table
    assert f"| kind | {precision}: ms per step | share of the step |" in table
    assert f"{report.README_BEGIN}\n{table}" in readme.read_text() and "old" not in readme.read_text()
    assert not (tmp_path / "scratch" / "work").exists()  # the scratch workspace is removed, the logs stay
    assert (tmp_path / "scratch" / "logs" / "train-1.log").exists()


@pytest.mark.slow
@pytest.mark.skipif(not HAS_TORCH, reason=f"no PyTorch interpreter at {TORCH_PYTHON} (make bench-torch)")
def test_torch_reference_reports_images_per_second():
    done = subprocess.run(
        [TORCH_PYTHON, str(PROJECT / "bench" / "torch_reference.py"), "--batch", "4", "--warmup", "1", "--steps", "2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    reply = json.loads(done.stdout)
    assert reply["batch"] == 4 and reply["steps"] == 2 and reply["images_per_second"] > 0
    assert reply["loss"] > 0 and reply["torch"].startswith("2.13")


@pytest.mark.slow
@pytest.mark.skipif(not HAS_TORCH, reason=f"no PyTorch interpreter at {TORCH_PYTHON} (make bench-torch)")
def test_torch_reference_serves_both_precisions_from_one_process():
    requests = [{"batch": 4, "warmup": 1, "steps": 2, "precision": p} for p in ("float32", "bfloat16", "float64")]
    done = subprocess.run(
        [TORCH_PYTHON, str(PROJECT / "bench" / "torch_reference.py"), "--serve"],
        input="".join(json.dumps(r) + "\n" for r in requests[:2]) + "\n",
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    ready, float32, bfloat16 = (json.loads(line) for line in done.stdout.splitlines())
    assert ready["ready"] is True and float32["images_per_second"] > 0 and bfloat16["images_per_second"] > 0
    # The same seed and data: bfloat16 arithmetic moves the loss, but only a little.
    assert bfloat16["loss"] != float32["loss"] and bfloat16["loss"] == pytest.approx(float32["loss"], rel=0.05)
    refused = subprocess.run(
        [TORCH_PYTHON, str(PROJECT / "bench" / "torch_reference.py"), "--batch", "4", "--precision", "float64"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert refused.returncode == 2 and "invalid choice: 'float64'" in refused.stderr


@pytest.mark.slow
@pytest.mark.skipif(not HAS_TORCH, reason=f"no PyTorch interpreter at {TORCH_PYTHON} (make bench-torch)")
def test_torch_reference_serves_compiled_models_and_times_their_compilation_apart():
    requests = [
        {"batch": 4, "warmup": 1, "steps": 2, "compile": True},
        {"batch": 4, "warmup": 1, "steps": 2, "compile": True},  # the same model again: compiled once only
        {"batch": 4, "warmup": 1, "steps": 2},
    ]
    done = subprocess.run(
        [TORCH_PYTHON, str(PROJECT / "bench" / "torch_reference.py"), "--serve"],
        input="".join(json.dumps(r) + "\n" for r in requests) + "\n",
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    _, compiled, again, eager = (json.loads(line) for line in done.stdout.splitlines())
    assert compiled["compile_seconds"] > 0 and again["compile_seconds"] == compiled["compile_seconds"]
    assert eager["compile_seconds"] is None
    # Compiling takes whole seconds; the two timed steps after it are a small fraction of that.
    assert compiled["seconds"] < compiled["compile_seconds"] and compiled["images_per_second"] > 0


@pytest.mark.slow
@pytest.mark.skipif(not HAS_TORCH, reason=f"no PyTorch interpreter at {TORCH_PYTHON} (make bench-torch)")
def test_a_compiled_model_without_a_compiler_is_skipped_and_the_server_goes_on(tmp_path: Path):
    # Inductor reads its C++ compiler from CXX; an empty cache makes it need one.
    env = {**os.environ, "CXX": str(tmp_path / "no-such-g++"), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "cache")}
    requests = [{"batch": 4, "warmup": 1, "steps": 2, "compile": True}, {"batch": 4, "warmup": 1, "steps": 2}]
    done = subprocess.run(
        [TORCH_PYTHON, str(PROJECT / "bench" / "torch_reference.py"), "--serve"],
        input="".join(json.dumps(r) + "\n" for r in requests) + "\n",
        capture_output=True,
        text=True,
        env={**env, "TORCHINDUCTOR_FORCE_DISABLE_CACHES": "1"},
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    _, skipped, eager = (json.loads(line) for line in done.stdout.splitlines())
    assert set(skipped) == {"skipped"} and skipped["skipped"].startswith("torch.compile failed: ")
    assert "\n" not in skipped["skipped"] and "no-such-g++" in skipped["skipped"]
    assert eager["images_per_second"] > 0


@pytest.mark.slow
@pytest.mark.skipif(not HAS_TORCH, reason=f"no PyTorch interpreter at {TORCH_PYTHON} (make bench-torch)")
def test_the_harness_keeps_each_compiled_peers_compile_time_out_of_its_rounds():
    peer = throughput.TorchPeer(TORCH_PYTHON, "float32", name="torch_compiled", compiled=True)
    try:
        raw = throughput.measure([peer], [4, 8], rounds=1, warmup=1, timed_images=16, peaks={})
    finally:
        peer.close()
    assert raw["failures"] == {}
    assert set(peer.compile_seconds) == {4, 8} and all(seconds > 0 for seconds in peer.compile_seconds.values())
    rates = raw["images_per_second"]["torch_compiled"]
    assert [len(rates[4]), len(rates[8])] == [1, 1]
    # Had compilation been timed, 16 images in whole seconds would be a few images/s at most.
    assert min(rates[4][0], rates[8][0]) > 16 / min(peer.compile_seconds.values())
