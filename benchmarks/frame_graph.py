"""Where a stream hop's network time goes: the one-frame int8 graph against two variants of it.

    python -m benchmarks.frame_graph [--model model.stream.onnx] [--rounds 11] [--calls 2000]

Each variant runs one frame per call through onnxruntime IOBinding on arrays allocated once (as
:class:`speechmask.onnx_backend.BoundFrames` runs a stream's hops), on one thread; variants
alternate round by round, and each round's mean time per call is paired with the graph's own.

- **as exported**: the graph as ``speechmask export --onnx`` writes it (the RNN state stacked
  as ``h: [layers, B, hidden]``).
- **state per layer**: the same graph with the stacked state's Gathers, Unsqueezes and Concat
  removed, each layer's state an input and an output of its own; its rows and state are
  checked to equal the graph's to the bit.
- **products only**: the graph's int8 products alone (its ``DynamicQuantizeMatMul`` and
  ``MatMulIntegerToFloat`` nodes, with the quantization that feeds the latter), their inputs
  random: what the network would cost if every other node were free.

Prints a markdown table (µs per call, median and min over rounds; the paired difference to the
graph as exported, mean ± standard error over rounds). Measured on 2026-12-08 (2-core AMD EPYC
with AVX-512, the shipped model, 11 rounds): medians 59.1 / 54.9 / 37.7 µs; state per layer
−3.1 ± 1.2 µs, products only −21.6 ± 2.0 µs (docs/benchmark.md).
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

from speechmask.onnx_backend import default_onnx_path, frame_graph_path

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


def state_per_layer(proto: onnx.ModelProto) -> onnx.ModelProto:
    """``proto`` (a speechmask one-frame graph) with each layer's RNN state as its own input
    ``{name}{layer}`` and output ``{name}{layer}_out`` instead of the stacked ``h`` (``c``)."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    graph = out.graph
    stacked = [i.name for i in graph.input if i.name in ("h", "c")]
    producers = {o: n for n in graph.node for o in n.output}
    constants = {t.name: t for t in graph.initializer}  # a Gather's index: one, or a Constant
    inputs, outputs, drop = [], [], set()
    for name in stacked:
        hidden = graph.input[[i.name for i in graph.input].index(name)].type.tensor_type
        size = hidden.shape.dim[2].dim_value
        gathers = [n for n in graph.node if n.op_type == "Gather" and n.input[0] == name]
        layers = []
        for node in gathers:  # h[layer] -> the input of that layer
            index = constants.get(node.input[1]) or producers[node.input[1]].attribute[0].t
            layer = int(onnx.numpy_helper.to_array(index))
            drop.add(id(node))
            layers.append((layer, helper.make_tensor_value_info(node.output[0],
                                                                TensorProto.FLOAT, [1, size])))
        inputs += [value for _, value in sorted(layers, key=lambda pair: pair[0])]
        concat = producers[f"{name}_out"]  # Concat(Unsqueeze(layer 0), Unsqueeze(layer 1), ...)
        drop.add(id(concat))
        for part in concat.input:
            unsqueeze = producers[part]
            drop.add(id(unsqueeze))
            outputs.append(helper.make_tensor_value_info(unsqueeze.input[0], TensorProto.FLOAT,
                                                         [1, size]))
    kept = [n for n in graph.node if id(n) not in drop]
    del graph.node[:]
    graph.node.extend(kept)
    rest_in = [i for i in graph.input if i.name not in stacked]
    del graph.input[:]
    graph.input.extend(rest_in + inputs)
    rest_out = [o for o in graph.output if o.name not in {f"{s}_out" for s in stacked}]
    del graph.output[:]
    graph.output.extend(rest_out + outputs)
    return out


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


def check_state_per_layer(graph: onnx.ModelProto, split: onnx.ModelProto) -> None:
    """Raise unless ``split`` gives ``graph``'s rows and state to the bit on random inputs."""
    a, b = _session(graph), _session(split)
    feeds = _random_inputs(a, seed=1)
    want = dict(zip([o.name for o in a.get_outputs()], a.run(None, feeds), strict=True))
    split_feeds = {k: v for k, v in feeds.items() if k not in ("h", "c")}
    names = [i.name for i in b.get_inputs() if i.name not in split_feeds]
    per_layer = [feeds[s][layer] for s in ("h", "c") if s in feeds
                 for layer in range(feeds[s].shape[0])]
    split_feeds.update(zip(names, per_layer, strict=True))
    got = dict(zip([o.name for o in b.get_outputs()], b.run(None, split_feeds), strict=True))
    stacked = np.concatenate([got[o.name][None] for o in b.get_outputs()
                              if o.name not in want])
    expected = np.concatenate([want[s] for s in ("h_out", "c_out") if s in want])
    if not (np.array_equal(got["mask"], want["mask"]) and np.array_equal(stacked, expected)):
        raise AssertionError("the per-layer graph does not give the graph's outputs")


def measure(model: Path, rounds: int, calls: int) -> list[tuple[str, float, float, str]]:
    """``[(variant, median us, min us, paired difference to the graph)]``."""
    graph = onnx.load(str(model))
    split = state_per_layer(graph)
    check_state_per_layer(graph, split)
    variants = {"as exported": graph, "state per layer": split,
                "products only": products_only(graph)}
    runs = {name: _bound(_session(proto)) for name, proto in variants.items()}
    for call, _ in runs.values():  # warm-up
        _mean_us(call, max(1, calls // 10))
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, (call, _) in runs.items():
            times[name].append(_mean_us(call, calls))
    base = np.array(times["as exported"])
    rows = []
    for name, values in times.items():
        diff = np.array(values) - base
        paired = "—" if name == "as exported" else (
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
    print("| variant | median µs | min µs | minus as exported (± s.e.) |")
    print("|---|---:|---:|---:|")
    for name, median, low, paired in rows:
        print(f"| {name} | {median:.1f} | {low:.1f} | {paired} |")


if __name__ == "__main__":
    main()
