"""Where a stream hop's network time goes: a one-frame int8 graph against variants of it.

    python -m benchmarks.frame_graph [--model model.stream.onnx] [--rounds 11] [--calls 2000]

Each variant runs one frame per call through onnxruntime IOBinding on arrays allocated once (as
:class:`speechmask.onnx_backend.BoundFrames` runs a stream's hops), on one thread; variants
alternate round by round, and each round's mean time per call is paired with the graph's own.

- **as given**: the graph in the file (default: the shipped ``model.stream.onnx``).
- **relaid as exported now** (a graph exported before 2026-12-08 only): the same graph as
  ``speechmask export --onnx`` lays it out now: each layer's RNN state an input and an output
  of its own instead of the stacked ``h: [layers, B, hidden]`` (no Gathers, Unsqueezes and
  Concat), and the first layer's per-column int8 product run with one scale and a Mul by the
  columns' scales, its bias folded in. Checked to give the graph's rows and state within
  float32 rounding.
- **products only**: the graph's int8 products alone (its ``DynamicQuantizeMatMul`` and
  ``MatMulIntegerToFloat`` nodes, with the quantization that feeds the latter), their inputs
  random: what the network would cost if every other node were free.

Prints a markdown table (µs per call, median and min over rounds; the paired difference to the
graph as given, mean ± standard error over rounds). Measured on 2026-12-08 (2-core AMD EPYC
with AVX-512, one idle thread): the shipped model's graph as exported before that day (git
show 4718e57:src/speechmask/pretrained/default/model.stream.onnx), 15 rounds: medians 59.0 /
55.8 / 39.6 µs, relaid −6.0 ± 1.2 µs, products only −21.8 ± 1.4; the shipped graph relaid
(11 rounds): 55.7 µs, its products alone 37.7 (docs/benchmark.md).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from speechmask.onnx_backend import (
    OnnxMaskModel,
    _column_scales_after,
    _state_per_layer,
    default_onnx_path,
    frame_graph_path,
)

PRODUCTS = ("DynamicQuantizeMatMul", "MatMulIntegerToFloat")


def _session(proto: onnx.ModelProto, optimized: Path | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if optimized is not None:  # the graph after onnxruntime's fusions, portable level only
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(optimized)
    return ort.InferenceSession(proto.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def relaid(proto: onnx.ModelProto) -> onnx.ModelProto:
    """``proto`` as ``speechmask export --onnx`` lays a one-frame graph out since 2026-12-08:
    the RNN state per layer, the per-column int8 product run with one scale and a Mul
    (``onnx_backend._state_per_layer``, ``_column_scales_after``); None if it already is."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    names = [i.name for i in out.graph.input]
    if "h" in names:
        out = _state_per_layer(out)
    before = len(out.graph.node)
    out = _column_scales_after(out)
    return out if "h" in names or len(out.graph.node) != before else None


def products_only(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The int8 products of ``proto`` after onnxruntime's fusions, alone, each fed from a graph
    input (``[1, K]`` float32 for a product's K weight rows)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "optimized.onnx"
        _session(proto, optimized=path)
        fused = onnx.load(str(path))
    weights = {t.name: t for t in fused.graph.initializer}
    producers = {o: n for n in fused.graph.node for o in n.output}
    nodes, inputs, outputs, seen = [], [], [], set()
    for node in fused.graph.node:
        if node.op_type not in PRODUCTS:
            continue
        rows = weights[node.input[1]].dims[0]
        source = node.input[0]
        if node.op_type == "MatMulIntegerToFloat":  # fed by a DynamicQuantizeLinear
            quantizer = producers[source]
            if id(quantizer) not in seen:
                nodes.append(quantizer)
                seen.add(id(quantizer))
            source = quantizer.input[0]
        if source not in {i.name for i in inputs}:
            inputs.append(helper.make_tensor_value_info(source, TensorProto.FLOAT, [1, rows]))
        nodes.append(node)
        outputs.append(helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, None))
    used = {name for n in nodes for name in n.input}
    graph = helper.make_graph(nodes, "products", inputs, outputs,
                              [w for name, w in weights.items() if name in used])
    model = helper.make_model(graph, opset_imports=list(fused.opset_import))
    model.ir_version = fused.ir_version
    return model


def _random_inputs(session: ort.InferenceSession, seed: int) -> dict[str, np.ndarray]:
    """Non-negative float32 inputs for every input of ``session`` (free dimensions: 1)."""
    rng = np.random.default_rng(seed)
    return {spec.name: (np.abs(rng.standard_normal(
        [d if isinstance(d, int) else 1 for d in spec.shape])) * 0.3).astype(np.float32)
        for spec in session.get_inputs()}


def _bound(session: ort.InferenceSession, seed: int = 0) -> tuple[Callable[[], None], dict]:
    """A no-argument call that runs ``session`` once on inputs and outputs bound to arrays
    allocated once; also returns the input arrays (kept alive while bound)."""
    binding, arrays = session.io_binding(), _random_inputs(session, seed)
    for name, array in arrays.items():
        binding.bind_cpu_input(name, array)
    for spec in session.get_outputs():
        binding.bind_output(spec.name, "cpu")
    return (lambda: session.run_with_iobinding(binding)), arrays


def _mean_us(call: Callable[[], None], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - start) / calls * 1e6


def check_close(graph: onnx.ModelProto, other: onnx.ModelProto) -> None:
    """Raise unless ``other`` gives ``graph``'s rows and state within float32 rounding (1e-5)
    for one frame of random inputs, whichever way each lays out its state."""
    got = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, proto in enumerate((graph, other)):
            path = Path(tmp) / f"{k}.onnx"
            path.write_bytes(proto.SerializeToString())
            model = OnnxMaskModel(path)
            rng = np.random.default_rng(1)
            state = tuple((rng.standard_normal(s.shape) * 0.3).astype(np.float32)
                          for s in model.initial_state(1))
            mag = np.abs(rng.standard_normal((1, 1, model.n_freqs))).astype(np.float32)
            mask, new_state = model(mag, state)
            got.append([mask, *new_state])
    if any(np.abs(a - b).max() > 1e-5 for a, b in zip(*got, strict=True)):
        raise AssertionError("the relaid graph does not give the graph's outputs")


def measure(model: Path, rounds: int, calls: int) -> list[tuple[str, float, float, str]]:
    """``[(variant, median us, min us, paired difference to the graph)]``."""
    graph = onnx.load(str(model))
    variants = {"as given": graph}
    relaid_graph = relaid(graph)
    if relaid_graph is not None:  # an export from before 2026-12-08
        check_close(graph, relaid_graph)
        variants["relaid as exported now"] = relaid_graph
    variants["products only"] = products_only(graph)
    runs = {name: _bound(_session(proto)) for name, proto in variants.items()}
    for call, _ in runs.values():  # warm-up
        _mean_us(call, max(1, calls // 10))
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, (call, _) in runs.items():
            times[name].append(_mean_us(call, calls))
    base = np.array(times["as given"])
    rows = []
    for name, values in times.items():
        diff = np.array(values) - base
        paired = "—" if name == "as given" else (
            f"{diff.mean():+.1f} ± {diff.std(ddof=1) / np.sqrt(len(diff)):.1f}")
        rows.append((name, float(np.median(values)), float(min(values)), paired))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None,
                        help="a one-frame graph (default: the shipped model.stream.onnx)")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--calls", type=int, default=2000, help="calls per variant per round")
    args = parser.parse_args(argv)
    model = args.model or frame_graph_path(default_onnx_path())
    rows = measure(model, max(2, args.rounds), max(1, args.calls))
    print(f"{model}: µs per one-frame call, one thread, {args.rounds} alternating rounds\n")
    print("| variant | median µs | min µs | minus as given (± s.e.) |")
    print("|---|---:|---:|---:|")
    for name, median, low, paired in rows:
        print(f"| {name} | {median:.1f} | {low:.1f} | {paired} |")


if __name__ == "__main__":
    main()
