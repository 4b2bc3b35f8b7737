"""bench/step_profile.py: its oneDNN log and op classifications on hand-written lines, and a real tiny run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import step_profile

PROJECT = Path(__file__).resolve().parents[1]
CONV = (
    "src:f32::blocked:acdb::f0 wei:f32:ap:blocked:Adcb16a::f0,attr-scratchpad:user,alg:convolution_direct,"
    "mb32_ic1oc8_ih28oh14kh3sh2dh0ph0_iw28ow14kw3sw2dw0pw0"
)


def test_the_verbose_log_is_summed_by_primitive_and_direction_between_the_markers_only():
    lines = [
        f"onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx512_core,forward_training,{CONV},9.5",
        step_profile.MARK_BEGIN,
        f"onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx512_core_amx,forward_training,{CONV},0.25",
        f"onednn_verbose,v1,primitive,exec,cpu,convolution,brgconv_strided:avx512_core,backward_data,{CONV},0.5",
        f"onednn_verbose,v1,primitive,exec,cpu,convolution,jit:avx512_core,backward_weights,{CONV},1.5",
        f"onednn_verbose,v1,primitive,exec,cpu,convolution,jit:avx512_core,backward_weights,{CONV},2",
        "onednn_verbose,v1,primitive,exec,cpu,reorder,jit:uni,undef,src:f32::blocked:cdba::f0 dst:f32::blocked:Adcb16a::f0,,,8x1x3x3,0.125",
        "onednn_verbose,exec,cpu,inner_product,brgemm:avx512_core,forward_training,src:f32 wei:f32,,,mb32ic64oc10,0.75",
        "onednn_verbose,v1,primitive,create:cache_miss,cpu,convolution,jit:avx512_core,backward_weights,x,,y,3",
        "some other line, 4",
        step_profile.MARK_END,
        f"onednn_verbose,v1,primitive,exec,cpu,convolution,jit:avx512_core,backward_weights,{CONV},7",
    ]
    assert step_profile.parse_onednn(lines) == {
        "convolution_forward": 0.25,
        "convolution_backward_data": 0.5,
        "convolution_backward_weights": 3.5,
        "reorder": 0.125,
        "matmul": 0.75,
    }


@pytest.mark.parametrize(
    ("name", "op_type", "kind"),
    [
        ("StatefulPartitionedCall/vae/encoder/conv_1/BiasAdd", "_MklNativeFusedConv2D", "convolution"),
        ("gradient_tape/vae/decoder/conv_t_1/conv_transpose", "Conv2DBackpropFilter", "convolution"),
        ("StatefulPartitionedCall/vae/encoder/dense/MatMul", "_MklMatMul", "matmul"),
        ("StatefulPartitionedCall/vae/encoder/Cast", "Cast", "casts"),
        ("StatefulPartitionedCall/adam/Mul_3", "Mul", "optimizer"),
        ("StatefulPartitionedCall/adam_1/AssignVariableOp", "AssignVariableOp", "optimizer"),
        ("StatefulPartitionedCall/vae/ReadVariableOp", "ReadVariableOp", "variables"),
        ("IteratorGetNext", "IteratorGetNext", "input_pipeline"),
        ("StatefulPartitionedCall/vae/leaky_re_lu/LeakyRelu", "LeakyRelu", "elementwise_and_reductions"),
        ("StatefulPartitionedCall/madam/Sum", "Sum", "elementwise_and_reductions"),
    ],
)
def test_ops_are_sorted_into_kinds(name, op_type, kind):
    assert step_profile.op_kind(name, op_type) == kind


def test_busy_time_counts_overlapping_ops_once():
    assert step_profile._union_ps([(0, 10), (5, 12), (20, 25), (21, 22), (30, 30)]) == 17
    assert step_profile._union_ps([]) == 0


@pytest.mark.slow
def test_a_tiny_profile_run_writes_both_logs_figures(tmp_path: Path):
    out = tmp_path / "profile.json"
    command = [sys.executable, "-m", "bench.step_profile", "--batch", "32", "--steps", "4", "--precisions", "float32", "--out", str(out)]
    subprocess.run(command, cwd=PROJECT, check=True, capture_output=True, timeout=900)
    (figures,) = json.loads(out.read_text())["profiles"]
    assert figures["precision"] == "float32" and figures["batch"] == 32
    onednn, ops = figures["onednn_ms_per_step"], figures["tensorflow_ops_ms_per_step"]
    # TensorFlow's own rule for its oneDNN ops on x86 Linux: TF_ENABLE_ONEDNN_OPTS if set, else on where the CPU
    # has neural-network instructions. With them on, the VAE's convolutions run in all three directions, each
    # taking time; with them off, oneDNN sees no convolution at all. (TF_ENABLE_ONEDNN_OPTS=0 tests the second case
    # on a machine of the first.)
    if "TF_ENABLE_ONEDNN_OPTS" in os.environ:
        expected_on = os.environ["TF_ENABLE_ONEDNN_OPTS"].lower() in ("1", "true")
    else:
        cpu_flags = set(Path("/proc/cpuinfo").read_text().split())
        expected_on = bool(cpu_flags & {"avx512_vnni", "avx512_bf16", "amx_tile", "avx_vnni"})
    assert figures["onednn_ops"] is expected_on
    convolution_kinds = ("convolution_forward", "convolution_backward_data", "convolution_backward_weights")
    if expected_on:
        for kind in convolution_kinds:
            assert onednn[kind] > 0, kind
    else:
        assert not set(onednn) & set(convolution_kinds), onednn
    assert ops["convolution"] > 0 and ops["optimizer"] > 0 and ops["elementwise_and_reductions"] > 0
    largest = figures["largest_op_types_ms_per_step"]
    assert 0 < len(largest) <= step_profile.LARGEST
    assert [ms for _, _, ms in largest] == sorted((ms for _, _, ms in largest), reverse=True)
    for kind in {kind for _, kind, _ in largest}:  # a kind's listed op types are part of its time
        assert sum(ms for _, listed, ms in largest if listed == kind) <= ops[kind] + 1e-3 * len(largest), kind
    assert any("Conv2D" in op_type and kind == "convolution" for op_type, kind, _ in largest), largest  # _MklNative... with oneDNN
    assert 0 < figures["busy_ms_per_step"] <= sum(ops.values()) + 1e-3
    assert figures["wall_ms_per_step"] > 0
