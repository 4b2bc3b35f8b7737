"""The machine a benchmark ran on, and results.md: the tables the README includes between its bench markers."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

README_BEGIN = "<!-- bench:begin (written by `make bench`; edits here are overwritten) -->"
README_END = "<!-- bench:end -->"


def machine(torch_version: str | None) -> dict:
    cpuinfo = _read("/proc/cpuinfo")
    flags = set(_cpuinfo_field(cpuinfo, "flags").split())
    cores = {(block.get("physical id"), block.get("core id")) for block in _cpuinfo_blocks(cpuinfo)}
    return {
        "cpu_model": _cpuinfo_field(cpuinfo, "model name") or platform.processor() or "unknown",
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "physical_cores": len(cores) if cores != {(None, None)} else None,
        "cpu_flags": sorted(flags & {"avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile"}),
        "memory_gb": _memory_gb(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "tensorflow": _version("tensorflow-cpu") or _version("tensorflow"),
        "keras": _version("keras"),
        "torch": torch_version,
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "load_average_start": list(os.getloadavg()),
    }


BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def bf16_features() -> dict[str, bool]:
    """Whether this CPU multiplies bfloat16 natively: AVX512_BF16 (vector dot products) and AMX_BF16 (tiles)."""
    flags = set(_cpuinfo_field(_read("/proc/cpuinfo"), "flags").split())
    return {flag: flag in flags for flag in BF16_FLAGS}


def render_markdown(results: dict) -> str:
    m = results["machine"]
    lines = [
        f"Benchmark ({results['mode']} mode) of {m['date_utc'][:10]} on {m['cpu_model']}, {m['usable_cpus']} usable CPUs "
        f"({m['physical_cores'] or '?'} physical cores; {', '.join(m['cpu_flags']) or 'no AVX'}), {m['memory_gb']} GB; "
        f"Python {m['python']}, TensorFlow {m['tensorflow']}, Keras {m['keras']}, NumPy {m['numpy']}, "
        f"PyTorch {m['torch'] or 'not installed'}. Load average {_loads(m['load_average_start'])} at the start, "
        f"{_loads(m.get('load_average_end'))} at the end. Median of {results['settings']['repetitions']} interleaved "
        "repetitions, with min–max in brackets.",
        "",
        "| training throughput (images/s) | " + " | ".join(f"batch {b}" for b in results["settings"]["batches"]) + " |",
        "|---|" + "---|" * len(results["settings"]["batches"]),
    ]
    precision = results["throughput"]["vaelab_precision"]
    rows = [
        (f"vaelab ({precision}: what `train.precision: auto` picks here)", "vaelab", "{:.0f}"),
        ("plain Keras 3 reference, float32", "keras_reference", "{:.0f}"),
        ("plain Keras 3 reference, mixed_bfloat16", "keras_reference_bf16", "{:.0f}"),
        ("PyTorch eager, float32", "torch_eager", "{:.0f}"),
        ("PyTorch eager, autocast bfloat16", "torch_eager_bf16", "{:.0f}"),
        ("PyTorch `torch.compile`, float32", "torch_compiled", "{:.0f}"),
        ("PyTorch `torch.compile`, autocast bfloat16", "torch_compiled_bf16", "{:.0f}"),
        ("**vaelab / Keras reference in float32**", "vaelab_over_keras_reference", "{:.2f}×"),
        ("**vaelab / Keras reference at equal precision**", "vaelab_over_keras_reference_equal_precision", "{:.2f}×"),
        ("vaelab / PyTorch eager in float32", "vaelab_over_torch_eager", "{:.2f}×"),
        ("vaelab / PyTorch eager at equal precision", "vaelab_over_torch_eager_equal_precision", "{:.2f}×"),
        ("vaelab / PyTorch compiled in float32", "vaelab_over_torch_compiled", "{:.2f}×"),
        ("vaelab / PyTorch compiled at equal precision", "vaelab_over_torch_compiled_equal_precision", "{:.2f}×"),
        ("**vaelab / the faster PyTorch at equal precision**", "vaelab_over_best_torch_equal_precision", "{:.2f}×"),
        ("vaelab GFLOP/s", "vaelab_gflops", "{:.1f}"),
        (f"vaelab, share of the {precision} matmul peak", "vaelab_fraction_of_peak", "{:.0%}"),
    ]
    for title, key, fmt in rows:
        cells = [_figure(results["throughput"][f"batch_{b}"][key], fmt) for b in results["settings"]["batches"]]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    executions = [str(results["throughput"][f"batch_{b}"]["vaelab_steps_per_execution"]) for b in results["settings"]["batches"]]
    lines.append("| vaelab steps per execution (as in an MNIST epoch) | " + " | ".join(executions) + " |")
    lines += compile_rows(results)

    flops, pipeline, memory, sweeps = results["flops"], results["pipeline"], results["memory"], results["sweeps"]
    matmul, quality = results["matmul_peak_gflops"], results["quality"]
    figures = [
        (
            "model cost per training image",
            f"{_number(flops['training_flops_per_image'], 1e-6, '{:.1f} MFLOP')} "
            f"({_number(flops['forward_multiply_adds_per_image'], 1e-6, '{:.2f} M')} multiply-adds forward; "
            "×2 FLOPs each, ×3 for a training step)",
        ),
        (f"float32 matmul peak ({matmul.get('matrix_size')}², NumPy)", _figure(matmul, "{:.1f} GFLOP/s")),
        (
            f"bfloat16 matmul peak ({matmul.get('matrix_size')}², TensorFlow)",
            _figure(results["throughput"]["bfloat16_matmul_peak_gflops"], "{:.1f} GFLOP/s"),
        ),
        (f"quality check: test negative ELBO after {quality['epochs']} epochs, float32 / {quality['precision']}", _quality(quality)),
        ("no-op `dvc repro`", _figure(pipeline["noop_dvc_repro_s"], "{:.2f} s")),
        ("train stage: start to end of first training step", _figure(pipeline["startup_to_first_step_end_s"], "{:.1f} s")),
        (
            "evaluate stage / one training epoch",
            f"{_figure(pipeline['evaluate_fraction_of_epoch'], '{:.0%}')} "
            f"({_figure(pipeline['evaluate_s'], '{:.1f} s')} / {_figure(pipeline['train_epoch_s'], '{:.1f} s')})",
        ),
        ("sweep epochs, pruned / unpruned", _sweep_pair(sweeps, "epochs_spent", "{:d}")),
        ("sweep best value, pruned / unpruned", _sweep_pair(sweeps, "best_value", "{:.2f}")),
        (
            "peak RSS: preprocess, train",
            f"{_figure(memory['preprocess_peak_rss_mb'], '{:.0f} MB')}, {_figure(memory['train_peak_rss_mb'], '{:.0f} MB')}",
        ),
        (
            f"peak RSS: {memory['sweep_trials'] or '?'}-trial sweep; growth per trial",
            f"{_number(memory['sweep_peak_rss_mb'], 1, '{:.0f} MB')}; "
            f"{_number(memory['sweep_growth_mb_per_trial'], 1, '{:+.1f} MB')} ({_flat(memory['sweep_memory_flat'])})",
        ),
    ]
    lines += ["", "| figure | value |", "|---|---|", *(f"| {label} | {value} |" for label, value in figures)]
    lines += profile_table(results.get("profile"))
    lines += ["", "| goal | target | actual | met | short by |", "|---|---|---|---|---|"]
    lines += [goal_row(goal) for goal in results["goals"].values()]
    notes = [f"- {key}: {status}" for key, status in results["notes"].items()]
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines) + "\n"


def goal_row(goal: dict) -> str:
    """A goal's table row; an unjudged one says why (skipped, not applicable, ...) rather than looking missed."""
    actual = "—" if goal["actual"] is None else f"{goal['actual']:.3g}"
    met = {True: "yes", False: "**no**"}.get(goal["met"]) or goal["status"].split(":")[0]
    short = "—" if not goal["shortfall"] else f"{goal['shortfall']:.3g}{goal['unit']} ({goal['shortfall_percent']:.0f}%)"
    return f"| {goal['description']} | {goal['comparison']} {goal['target']:g}{goal['unit']} | {actual} | {met} | {short} |"


def compile_rows(results: dict) -> list[str]:
    """One row per compiled PyTorch peer: seconds of its first, compiling step at each batch size."""
    batches = results["settings"]["batches"]
    peers = results["throughput"][f"batch_{batches[0]}"].get("compile_seconds", {})
    rows = []
    for peer in peers:
        cells = [_number(results["throughput"][f"batch_{b}"]["compile_seconds"][peer], 1, "{:.1f} s") for b in batches]
        rows.append(f"| {peer}: compile time (first step, not in images/s) | " + " | ".join(cells) + " |")
    return rows


PROFILE_TOTALS = (
    ("ops running (busy)", "busy_ms_per_step"),
    ("outside ops", "outside_ops_ms_per_step"),
    ("wall-clock step", "wall_ms_per_step"),
)
PROFILE_ROWS = (
    ("TensorFlow ops", "tensorflow_ops_ms_per_step"),
    ("oneDNN primitives", "onednn_ms_per_step"),
)


def profile_table(profile: dict | None) -> list[str]:
    """Milliseconds per training step by kind, and each kind's share of the wall-clock step."""
    if not profile:
        return []
    features = ", ".join(f"{flag} {'yes' if present else 'no'}" for flag, present in profile["cpu_bf16_features"].items())
    onednn = {True: "on", False: "off", None: "not reported"}[profile["onednn_ops"]]
    heading = (
        f"Where vaelab's training step goes (batch {profile['batch']}, {profile['steps']} timed steps; "
        f"{features}; TensorFlow's oneDNN ops {onednn})"
    )
    if not profile["runs"]:
        return ["", f"{heading}: {profile['status']}"]
    runs = profile["runs"]
    lines = [
        "",
        f"{heading}:",
        "",
        "| kind | " + " | ".join(f"{run['precision']}: ms per step | share of the step" for run in runs) + " |",
        "|---|" + "---|---|" * len(runs),
    ]
    for source, key in PROFILE_ROWS:
        for kind in sorted({kind for run in runs for kind in run[key]}):
            lines.append(_profile_row(f"{source}: {kind.replace('_', ' ')}", [(run[key].get(kind), run) for run in runs]))
    for label, key in PROFILE_TOTALS:
        lines.append(_profile_row(f"**{label}**", [(run[key], run) for run in runs]))
    return lines


def _profile_row(label: str, values: list[tuple[float | None, dict]]) -> str:
    cells = []
    for ms, run in values:
        share = None if ms is None or not run["wall_ms_per_step"] else ms / run["wall_ms_per_step"]
        cells += [_number(ms, 1, "{:.2f}"), _number(share, 1, "{:.0%}")]
    return f"| {label} | " + " | ".join(cells) + " |"


def replace_readme_block(readme: str, block: str) -> str:
    """``readme`` with the text between the bench markers replaced by ``block``; ValueError if the markers are missing."""
    begin, end = readme.find(README_BEGIN), readme.find(README_END)
    if begin < 0 or end < begin:
        raise ValueError(f"the README has no benchmark section; add the lines {README_BEGIN!r} and {README_END!r}")
    return readme[: begin + len(README_BEGIN)] + "\n" + block.rstrip("\n") + "\n" + readme[end:]


def _figure(figure: dict, fmt: str) -> str:
    if figure.get("median") is None:
        return "—"
    text = fmt.format(figure["median"])
    if figure["min"] != figure["max"]:
        text += f" [{fmt.format(figure['min'])}–{fmt.format(figure['max'])}]"
    return text


def _number(value, scale: float, fmt: str) -> str:
    return "—" if value is None else fmt.format(value * scale)


def _quality(quality: dict) -> str:
    if quality["gap"] is None:
        return quality["status"]
    scores, seeds = quality["test_neg_elbo_nats"], len(quality["seeds"])
    return f"{scores['float32']:.1f} / {scores[quality['precision']]:.1f} nats ({quality['gap']:+.1%}; mean of {seeds} seeds)"


def _sweep_pair(sweeps: dict, key: str, fmt: str) -> str:
    pair = [sweeps[side][key] for side in ("pruned", "unpruned")]
    return " / ".join("—" if value is None else fmt.format(value) for value in pair)


def _flat(flat: bool | None) -> str:
    return {True: "flat", False: "**growing**", None: "not measured"}[flat]


def _loads(loads) -> str:
    return "?" if not loads else "/".join(f"{value:.1f}" for value in loads)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _memory_gb() -> float | None:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024**2, 1)
    return None


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _cpuinfo_blocks(cpuinfo: str) -> list[dict[str, str]]:
    blocks = []
    for chunk in cpuinfo.strip().split("\n\n"):
        fields = dict(line.split(":", 1) for line in chunk.splitlines() if ":" in line)
        blocks.append({key.strip(): value.strip() for key, value in fields.items()})
    return blocks


def _cpuinfo_field(cpuinfo: str, key: str) -> str:
    blocks = _cpuinfo_blocks(cpuinfo)
    return blocks[0].get(key, "") if blocks else ""
