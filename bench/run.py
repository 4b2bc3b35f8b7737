"""The side-by-side benchmark: ``make bench`` (about 40 minutes) or ``python -m bench.run --mode tiny --out DIR``.

Writes ``results.json`` (every figure as median, min, max and samples; each goal with target, actual,
met and shortfall) and ``results.md`` (the tables, with the machine) into ``--out``, and with
``--readme`` copies the tables into the README between its bench markers. Sections:

1. training throughput of vaelab, the plain Keras reference and PyTorch eager and compiled (bench/throughput.py),
   with the compiled peers' compile times apart, and where vaelab's training step spends its time
   (bench/step_profile.py);
2. FLOPs per training image (bench/flops.py) and vaelab's share of the measured float32 matmul peak;
3. no-op ``dvc repro`` and the train stage's start-up to its first step, 4. the evaluate stage against
   one training epoch, 6. stage peak memory (bench/pipeline.py); 5. sweeps with and without pruning and
   memory over a 20-trial sweep (bench/sweeps.py).

A section that cannot run is recorded with ``"status": "failed: ..."`` (or "skipped: ...") and null figures;
the others still run. Run only on an otherwise idle machine: every figure is a wall-clock time.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from bench import flops, pipeline, quality_check, report, sweeps, throughput
from bench.goals import judge_goals
from bench.stats import missing, ratios, summarize

log = logging.getLogger("bench")

PROJECT = Path(__file__).resolve().parents[1]
BATCHES = (32, 128)
IMPLEMENTATIONS = (
    "vaelab",
    "keras_reference",
    "torch_eager",
    "torch_compiled",
    "keras_reference_bf16",
    "torch_eager_bf16",
    "torch_compiled_bf16",
)
# The PyTorch peers: name -> (precision bench/torch_reference.py takes, torch.compile or not).
TORCH_PEERS = {
    "torch_eager": ("float32", False),
    "torch_compiled": ("float32", True),
    "torch_eager_bf16": ("bfloat16", False),
    "torch_compiled_bf16": ("bfloat16", True),
}
# The references that run at vaelab's precision: the "_bf16" ones (Keras' mixed_bfloat16 policy, PyTorch's
# CPU autocast to bfloat16) only when vaelab trains in mixed bfloat16, the float32 ones otherwise.
EQUAL_PRECISION = {
    "float32": {"keras_reference": "keras_reference", "torch_eager": "torch_eager", "torch_compiled": "torch_compiled"},
    "mixed_bfloat16": {
        "keras_reference": "keras_reference_bf16",
        "torch_eager": "torch_eager_bf16",
        "torch_compiled": "torch_compiled_bf16",
    },
}
MNIST_TRAIN_IMAGES = 60_000


@dataclass(frozen=True)
class Mode:
    name: str
    repetitions: int  # timed rounds, after one discarded warm-up round
    warmup_steps: int  # untimed steps at the start of every segment
    timed_images: int  # per segment: steps = timed_images / batch
    matmul_size: int
    stage_repetitions: int
    fake_raw: tuple[int, int] | None  # (train, test) random images instead of the project's downloaded data
    stage_overrides: dict = field(default_factory=dict)
    sweep_trials: int = 10
    sweep_epochs: int = 4
    sweep_max_train: int = 2000
    memory_trials: int = 50
    memory_epochs: int = 1
    memory_max_train: int = 1000
    quality_epochs: int = 3  # the check: 3 epochs on the full training set
    quality_seeds: int = 3  # trainings per precision (bench/quality_check.py says why more than one)
    # Each compiled model (per batch size and precision) pays its compile, 12-24 s on a 2-core EPYC, before its
    # rounds: more than tiny mode's budget for the whole throughput section.
    torch_compiled: bool = True
    profile_batch: int = 128
    profile_steps: int = 40


MODES = {
    "full": Mode(
        "full",
        repetitions=5,
        warmup_steps=10,
        timed_images=4096,
        matmul_size=2048,
        stage_repetitions=3,
        fake_raw=None,
        stage_overrides={"train.epochs": 1, "classifier.epochs": 1},
    ),
    # Every code path with a few steps, images and trials: for the test suite, not for figures.
    "tiny": Mode(
        "tiny",
        repetitions=2,
        warmup_steps=1,
        timed_images=256,
        matmul_size=512,
        stage_repetitions=1,
        fake_raw=(400, 64),
        sweep_trials=3,
        sweep_epochs=2,
        sweep_max_train=64,
        memory_trials=3,
        memory_max_train=64,
        quality_epochs=1,
        quality_seeds=2,
        torch_compiled=False,
        profile_batch=32,
        profile_steps=4,
        stage_overrides={
            "train.epochs": 1,
            "classifier.epochs": 1,
            "evaluate.batch_size": 64,
            "evaluate.latent_points": 64,
            "evaluate.manifold_grid": 4,
            "evaluate.nll_samples": 4,
            "evaluate.nll_images": 16,
            "evaluate.quality_samples": 64,
        },
    ),
}


def run_benchmark(mode: Mode, *, scratch: Path, torch_python: str | None) -> dict:
    from vaelab.config.load import load_config

    started = time.perf_counter()
    config = load_config(PROJECT / "params.yaml")
    notes: dict[str, str] = {}
    try:
        flops_section = count_flops(config)
    except Exception as err:  # throughput is still worth measuring without FLOPs
        log.exception("counting FLOPs failed")
        notes["flops"] = f"failed: {type(err).__name__}: {_first_line(err)}"
        flops_section = {
            "convention": flops.CONVENTION,
            "forward_multiply_adds_per_image": None,
            "forward_flops_per_image": None,
            "training_flops_per_image": None,
            "layers": [],
            "keras_reference_forward_multiply_adds_per_image": None,
            "same_architecture_as_references": None,
            "status": notes["flops"],
        }
    throughput_section, matmul, torch_version = measure_throughput(mode, config, flops_section, torch_python, notes)
    machine = report.machine(torch_version)
    profile_section = measure_profile(mode, config, notes)
    pipeline_section, stage_memory = measure_pipeline(mode, scratch, notes)
    quality_section = measure_quality(mode, config, scratch, notes)
    sweeps_section, memory_section = measure_sweeps(mode, config, scratch, notes)
    memory_section.update(stage_memory)
    machine["load_average_end"] = list(os.getloadavg())
    results = {
        "schema_version": 1,
        "mode": mode.name,
        "machine": machine,
        "settings": {
            **asdict(mode),
            "batches": list(BATCHES),
            "timed_steps": {str(b): throughput.steps_for(b, mode.timed_images) for b in BATCHES},
            "vaelab_train": config.train.model_dump(mode="json"),
        },
        "flops": flops_section,
        "throughput": throughput_section,
        "matmul_peak_gflops": matmul,
        "profile": profile_section,
        "quality": quality_section,
        "pipeline": pipeline_section,
        "memory": memory_section,
        "sweeps": sweeps_section,
        "notes": notes,
        "definitions": DEFINITIONS,
    }
    results["goals"] = judge_goals(results, BATCHES)
    results["duration_s"] = time.perf_counter() - started
    return results


DEFINITIONS = {
    "throughput": "images/s over the timed steps of a segment, after its warm-up steps; ratios pair the rounds",
    "vaelab_steps_per_execution": "training steps vaelab runs per compiled call at that batch size in an MNIST epoch",
    "vaelab_fraction_of_peak": "vaelab images/s x flops.training_flops_per_image / the same round's matmul GFLOP/s",
    "matmul_peak_gflops": "fastest of 3 NumPy float32 products of two matrix_size^2 matrices per round, 2 n^3 FLOPs",
    "compile_seconds": "the compiled PyTorch peer's first training step at that batch size, which compiles it; not in images/s",
    "best_torch_equal_precision": "the faster (by median images/s) of PyTorch eager and compiled at vaelab's precision",
    "profile": "bench.step_profile at vaelab's precision: ms per step by kind; shares are of the wall-clock step",
    "startup_to_first_step_end_s": (
        "from starting the train stage's process to the end of its first training step (the first execution of steps_per_execution steps)"
    ),
    "train_epoch_s": "one epoch's training steps at train.batch_size, without the first execution's graph tracing",
    "evaluate_s": "wall time of the evaluate stage's process, start-up included",
    "noop_dvc_repro_s": "wall time of `dvc repro` with every stage up to date",
    "peak_rss_mb": "the kernel's peak resident set size of the stage's process (ru_maxrss)",
    "epochs_spent": "validation values the study's trials reported to Optuna, one per trained epoch",
    "best_value_gap": "(best pruned - best unpruned) / |best unpruned| of the validation negative ELBO; + = pruned worse",
}


def count_flops(config) -> dict:
    from bench.keras_reference import build_reference_vae
    from vaelab.model import build_vae

    vae = build_vae((28, 28, 1), config.train, config.base.seed)
    costs = flops.layer_costs(vae.encoder, vae.decoder)
    reference = build_reference_vae()
    reference_macs = flops.forward_macs(flops.layer_costs(reference.encoder, reference.decoder))
    macs = flops.forward_macs(costs)
    return {
        "convention": flops.CONVENTION,
        "forward_multiply_adds_per_image": macs,
        "forward_flops_per_image": flops.FLOPS_PER_MAC * macs,
        "training_flops_per_image": flops.training_flops_per_image(macs),
        "layers": [asdict(cost) for cost in costs],
        "keras_reference_forward_multiply_adds_per_image": reference_macs,
        # False when params.yaml's train section is not the chapter's model: the ratios then compare different work.
        "same_architecture_as_references": macs == reference_macs,
        "status": "measured",
    }


def measure_throughput(mode: Mode, config, flops_section: dict, torch_python: str | None, notes: dict) -> tuple[dict, dict, str | None]:
    from vaelab import precision
    from vaelab.data.preprocess import split_indices
    from vaelab.training import MAX_STEPS_PER_EXECUTION

    # vaelab's segments round up to whole executions of at most MAX_STEPS_PER_EXECUTION steps.
    needed = max((mode.warmup_steps + throughput.steps_for(b, mode.timed_images) + MAX_STEPS_PER_EXECUTION) * b for b in BATCHES)
    images = np.random.default_rng(0).random((needed, 28, 28, 1), dtype=np.float32)
    # An MNIST epoch: its training images less the validation split, as the preprocess stage splits them.
    epoch_images = len(split_indices(MNIST_TRAIN_IMAGES, config.data.val_fraction, config.base.seed)[0])
    policy = precision.resolve(config.train.precision)  # vaelab's fastest setting here: what auto picks
    bf16 = policy == "mixed_bfloat16"
    vaelab = throughput.Vaelab(config, images, epoch_images)
    implementations: list = [vaelab, throughput.KerasReference(config.base.seed, images)]
    skipped: dict[str, str] = {}
    if bf16:
        implementations.append(throughput.KerasReference(config.base.seed, images, policy, name="keras_reference_bf16"))
    else:
        skipped.update({name: f"skipped: vaelab trains in {policy} here" for name in IMPLEMENTATIONS if name.endswith("_bf16")})
    torch_version = None
    python, reason = throughput.find_torch_python(torch_python)
    if not mode.torch_compiled:
        for name in ("torch_compiled", "torch_compiled_bf16"):
            skipped.setdefault(name, f"skipped: PyTorch compiled runs in full mode only, not in {mode.name} mode")
    torch_impls = []
    for name, (torch_precision, compiled) in TORCH_PEERS.items():
        if name in skipped:
            continue
        if not python:
            skipped[name] = reason
            continue
        try:
            torch_impls.append(throughput.TorchPeer(python, torch_precision, name=name, compiled=compiled))
            torch_version = torch_impls[-1].info.get("torch")
        except Exception as err:  # noqa: BLE001 - the others are still worth measuring
            skipped[name] = f"failed: {err}"
    implementations += torch_impls
    peaks = {"float32": partial(throughput.matmul_gflops, mode.matmul_size)}
    if bf16:
        peaks["bfloat16"] = partial(throughput.tf_matmul_gflops, "bfloat16", mode.matmul_size)
    try:
        raw = throughput.measure(
            implementations, list(BATCHES), rounds=mode.repetitions, warmup=mode.warmup_steps, timed_images=mode.timed_images, peaks=peaks
        )
    finally:
        for impl in torch_impls:
            impl.close()
    skipped.update(raw["failures"])
    notes.update({f"throughput.{name}": status for name, status in skipped.items() if not status.startswith("skipped: vaelab trains")})
    compile_seconds = {impl.name: impl.compile_seconds for impl in torch_impls if impl.compiled}
    vaelab_peaks = raw["peak_gflops"]["bfloat16" if bf16 else "float32"]
    equal = EQUAL_PRECISION.get(policy, {})
    section: dict = {"vaelab_precision": policy}
    for batch in BATCHES:
        rates = {name: raw["images_per_second"].get(name, {}).get(batch, []) for name in IMPLEMENTATIONS}
        figures: dict[str, object] = {
            name: missing(skipped[name], "images/s") if name in skipped else summarize(rates[name], "images/s") for name in IMPLEMENTATIONS
        }
        for reference in ("keras_reference", "torch_eager", "torch_compiled"):
            figures[f"vaelab_over_{reference}"] = _ratio(rates, skipped, "vaelab", reference)
            figures[f"vaelab_over_{reference}_equal_precision"] = (
                _ratio(rates, skipped, "vaelab", equal[reference])
                if equal
                else missing(f"skipped: no reference trains in {policy}", "ratio")
            )
        best = best_torch([equal[peer] for peer in ("torch_eager", "torch_compiled")] if equal else [], figures)
        figures["best_torch_equal_precision"] = best
        figures["vaelab_over_best_torch_equal_precision"] = (
            _ratio(rates, skipped, "vaelab", best) if best else missing(_torch_skip_reason(equal, skipped, policy), "ratio")
        )
        figures["compile_seconds"] = {
            name: compile_seconds.get(name, {}).get(batch) for name, (_, compiled) in TORCH_PEERS.items() if compiled
        }
        training_flops = flops_section["training_flops_per_image"]
        gflops = [rate * training_flops / 1e9 for rate in rates["vaelab"]] if training_flops else []
        blocked = skipped.get("vaelab") or (None if training_flops else flops_section["status"])
        figures["vaelab_gflops"] = missing(blocked, "GFLOP/s") if blocked else summarize(gflops, "GFLOP/s")
        figures["vaelab_fraction_of_peak"] = (
            missing(blocked, "fraction") if blocked else summarize(ratios(gflops, vaelab_peaks), "fraction")
        )
        figures["vaelab_steps_per_execution"] = vaelab.steps_per_execution(batch)
        section[f"batch_{batch}"] = figures
    matmul = {**summarize(raw["peak_gflops"]["float32"], "GFLOP/s"), "matrix_size": mode.matmul_size}
    bf16_peak = (
        summarize(raw["peak_gflops"]["bfloat16"], "GFLOP/s") if bf16 else missing(f"skipped: vaelab trains in {policy} here", "GFLOP/s")
    )
    section["bfloat16_matmul_peak_gflops"] = {**bf16_peak, "matrix_size": mode.matmul_size}
    return section, matmul, torch_version


def best_torch(candidates: list[str], figures: dict) -> str | None:
    """The measured PyTorch peer with the highest median images/s among ``candidates``, or None if none was."""
    measured = [name for name in candidates if figures[name]["median"] is not None]
    return max(measured, key=lambda name: figures[name]["median"], default=None)


def _torch_skip_reason(equal: dict, skipped: dict, policy: str) -> str:
    if not equal:
        return f"skipped: no PyTorch peer trains in {policy}"
    reasons = [skipped.get(equal[peer]) for peer in ("torch_eager", "torch_compiled")]
    return next((reason for reason in reasons if reason), "not measured: no PyTorch samples")


def _ratio(rates: dict, skipped: dict, numerator: str, denominator: str) -> dict:
    blocked = skipped.get(numerator) or skipped.get(denominator)
    return missing(blocked, "ratio") if blocked else summarize(ratios(rates[numerator], rates[denominator]), "ratio")


def measure_profile(mode: Mode, config, notes: dict) -> dict:
    """bench.step_profile at vaelab's precision, with what decides how fast bfloat16 can be here."""
    from bench import step_profile
    from vaelab import precision

    policy = precision.resolve(config.train.precision)
    section: dict = {
        "batch": mode.profile_batch,
        "steps": mode.profile_steps,
        "cpu_bf16_features": report.bf16_features(),
        "runs": [],
        "onednn_ops": None,
        "status": "measured",
    }
    try:
        section["runs"] = [step_profile.profile(policy, mode.profile_batch, mode.profile_steps)]
    except Exception as err:
        log.exception("the step profile failed")
        section["status"] = notes["profile"] = f"failed: {type(err).__name__}: {_first_line(err)}"
        return section
    section["onednn_ops"] = section["runs"][0]["onednn_ops"]
    return section


def measure_quality(mode: Mode, config, scratch: Path, notes: dict) -> dict:
    """The quality check (bench/quality_check.py) on the workspace measure_pipeline leaves behind."""
    from vaelab import precision

    policy = precision.resolve(config.train.precision)
    empty = {"epochs": mode.quality_epochs, "precision": policy, "test_neg_elbo_nats": {}, "seconds": {}, "gap": None}
    if policy == quality_check.REFERENCE_PRECISION:
        return {**empty, "status": f"skipped: vaelab trains in {policy} here, the precision of the comparison"}
    try:
        return quality_check.compare(scratch / "work", policy, mode.quality_epochs, mode.quality_seeds)
    except Exception as err:
        log.exception("the quality check failed")
        notes["quality"] = f"failed: {type(err).__name__}: {_first_line(err)}"
        return {**empty, "status": notes["quality"]}


PIPELINE_UNITS = {
    "noop_dvc_repro_s": "s",
    "startup_to_first_step_begin_s": "s",
    "startup_to_first_step_end_s": "s",
    "train_epoch_s": "s",
    "evaluate_s": "s",
    "evaluate_fraction_of_epoch": "fraction",
}
STAGE_MEMORY_UNITS = {"preprocess_peak_rss_mb": "MB", "train_peak_rss_mb": "MB"}


def measure_pipeline(mode: Mode, scratch: Path, notes: dict) -> tuple[dict, dict]:
    try:
        work = pipeline.make_workspace(PROJECT, scratch / "work", mode.stage_overrides, mode.fake_raw)
        samples = pipeline.measure_rounds(work, mode.stage_repetitions, scratch / "logs")
        status = "measured"
    except Exception as err:
        log.exception("the pipeline measurements failed")
        samples, status = {}, f"failed: {type(err).__name__}: {_first_line(err)}"
        notes["pipeline"] = status
    figures = {
        key: summarize(samples[key], unit) if samples else missing(status, unit)
        for key, unit in {**PIPELINE_UNITS, **STAGE_MEMORY_UNITS}.items()
    }
    return ({**{k: figures[k] for k in PIPELINE_UNITS}, "status": status}, {k: figures[k] for k in STAGE_MEMORY_UNITS})


def measure_sweeps(mode: Mode, config, scratch: Path, notes: dict) -> tuple[dict, dict]:
    """Needs the scratch workspace with processed data, which measure_pipeline leaves behind."""
    work, logs = scratch / "work", scratch / "logs"
    pruner = config.sweep.pruner if config.sweep.pruner != "none" else "median"
    small = dict(trials=mode.sweep_trials, epochs=mode.sweep_epochs, max_train=mode.sweep_max_train)
    sweeps_section = {"pruner": pruner, **small, "status": "measured"}
    try:
        pruned = sweeps.run_study(work, logs, "bench-pruned", pruner=pruner, **small)
        unpruned = sweeps.run_study(work, logs, "bench-unpruned", pruner="none", **small)
        sweeps_section.update(pruned=pruned, unpruned=unpruned, **sweeps.compare_pruning(pruned, unpruned))
    except Exception as err:
        log.exception("the pruning comparison failed")
        sweeps_section["status"] = notes["sweeps"] = f"not measured: {type(err).__name__}: {_first_line(err)}"
        empty: dict[str, object] = {
            "trials": None,
            "states": {},
            "epochs_spent": None,
            "best_value": None,
            "wall_seconds": None,
            "peak_rss_mb": None,
            "trial_peak_rss_mb": [],
        }
        sweeps_section.update(pruned=empty, unpruned=dict(empty), epochs_fraction=None, best_value_gap=None)

    memory: dict[str, object] = {
        "sweep_trials": mode.memory_trials,
        "sweep_peak_rss_mb": None,
        "sweep_trial_peak_rss_mb": [],
        "sweep_growth_mb_per_trial": None,
        "sweep_memory_flat": None,
        "flat_criterion": f"per-trial peak RSS grows by at most {sweeps.FLAT_MB_PER_TRIAL} MB per trial after the first",
        "status": "measured",
    }
    try:
        study = sweeps.run_study(
            work, logs, "bench-memory", trials=mode.memory_trials, epochs=mode.memory_epochs, max_train=mode.memory_max_train, pruner="none"
        )
        growth, flat = sweeps.memory_growth(study["trial_peak_rss_mb"])
        memory.update(
            sweep_peak_rss_mb=study["peak_rss_mb"],
            sweep_trial_peak_rss_mb=study["trial_peak_rss_mb"],
            sweep_growth_mb_per_trial=growth,
            sweep_memory_flat=flat,
        )
    except Exception as err:
        log.exception("the memory sweep failed")
        memory["status"] = notes["memory.sweep"] = f"not measured: {type(err).__name__}: {_first_line(err)}"
    return sweeps_section, memory


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else "no message"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=sorted(MODES), default="full")
    parser.add_argument("--out", type=Path, default=PROJECT / "bench", help="where results.json and results.md go")
    parser.add_argument("--scratch", type=Path, default=PROJECT / "bench" / "out", help="workspace and logs (default: %(default)s)")
    parser.add_argument("--readme", type=Path, help="also put the tables into this README between its bench markers")
    parser.add_argument(
        "--torch-python",
        default=str(PROJECT / ".venv-torch" / "bin" / "python"),
        help="interpreter with torch for the PyTorch reference (default: %(default)s, else this one)",
    )
    parser.add_argument("--keep-work", action="store_true", help="keep the scratch workspace (data, models, stores)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="bench %(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing notices: vaelab builds a model per segment
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from vaelab.files import write_json, write_text

    shutil.rmtree(args.scratch / "logs", ignore_errors=True)
    results = run_benchmark(MODES[args.mode], scratch=args.scratch, torch_python=args.torch_python)
    write_json(args.out / "results.json", results)
    table = report.render_markdown(results)
    write_text(args.out / "results.md", table)
    if args.readme:
        write_text(args.readme, report.replace_readme_block(args.readme.read_text(encoding="utf-8"), table))
    if not args.keep_work:
        shutil.rmtree(args.scratch / "work", ignore_errors=True)
    log.info("wrote %s and %s in %.0f s", args.out / "results.json", args.out / "results.md", results["duration_s"])


if __name__ == "__main__":
    main()
