"""Torch-free inference: the mask network as an ONNX model, run with onnxruntime + numpy.

- :func:`export_onnx` (the only function that needs torch, imported inside it) writes the whole
  :class:`~speechmask.model.MaskNet` (compression + normalisation + RNN + dense + sigmoid) with
  the recurrent state as explicit inputs/outputs and the configs in the model's metadata.
- :class:`OnnxMaskModel` runs such a file: ``(mag [B, T, F], state) -> (mask [B, T, F], state)``.
- :func:`stft_np` / :func:`istft_np` reproduce :func:`speechmask.features.stft` /
  :func:`~speechmask.features.istft` (``torch.stft``/``torch.istft``, centred, sqrt-Hann).
- :class:`OnnxEnhancer` is the torch-free counterpart of :class:`speechmask.enhance.Enhancer`
  (any rate, any channel count, files via :func:`speechmask.pipeline.enhance_file`) and
  :class:`OnnxStreamingEnhancer` of :class:`speechmask.streaming.StreamingEnhancer`; both share
  the block code of :mod:`speechmask.pipeline` with the torch backend.

Importing this module does not import torch (nor ``speechmask.features``, which does).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort

from .atomic import write_atomic
from .deepfilter import DeepFilter
from .errors import first_line
from .pipeline import (
    ArrayEnhancer,
    ChannelPipeline,
    FrameStream,
    level_gains_offline,
    mask_floor,
    sqrt_hann,
    with_floor,
)
from .stft_config import StftConfig

if TYPE_CHECKING:  # only for annotations: importing this module imports torch
    from .model import MaskNet

log = logging.getLogger(__name__)

# Metadata keys written into the ONNX model's metadata_props.
META_FORMAT_VERSION = "speechmask_format_version"
META_MODEL_CONFIG = "speechmask_model_config"
META_STFT_CONFIG = "speechmask_stft_config"
# A one-frame graph (export_onnx_frame) says so, and how its weights are stored; a file
# without the key is a whole graph (any number of frames).
META_GRAPH = "speechmask_graph"
GRAPH_FRAME = "frame"
META_WEIGHTS = "speechmask_weights"
# Both graphs of one model carry the same fingerprint of its weights (weights_digest).
META_DIGEST = "speechmask_weights_digest"
# What a stream runs its 16 ms hops with (see load_frame_graph).
PRECISIONS = ("auto", "int8", "float32")
# Bump when the graph's inputs/outputs or the metadata change incompatibly.
FORMAT_VERSION = "1"
# Opset of the exported graph (LSTM/GRU ops and everything MaskNet uses exist since opset 14).
OPSET = 17
# The rate the exported models run at (speechmask.audio.MODEL_RATE).
MODEL_RATE = 16_000
# torch.istft refuses to divide by a window envelope below this; istft_np does the same.
_ENVELOPE_MIN = 1e-11


class OnnxModelError(ValueError):
    """An ONNX model file cannot be used. ``str(err)`` is one line naming the file."""


# The STFT geometry of an exported model (the same class as speechmask.features.StftConfig,
# which lives in a torch-free module); the old name stays for existing callers.
StftGeometry = StftConfig


# --------------------------------------------------------------------------------------------
# Export (torch needed here only)
# --------------------------------------------------------------------------------------------


def export_onnx(model: MaskNet, stft_cfg: StftConfig, path: str | os.PathLike) -> Path:
    """Export ``model`` to an ONNX file at ``path`` (written atomically); returns the path.

    Graph inputs: ``mag`` ``[B, T, F]`` float32 (``T`` and ``B`` dynamic), ``h`` (and ``c`` for
    LSTM) ``[layers, B, hidden]`` (and ``history`` ``[B, k, F]`` for look-ahead k > 0).
    Outputs: ``mask`` ``[B, T, F]`` (row t for frame t - k), ``h_out`` (``c_out``,
    ``history_out``).
    The model and STFT configs are stored as JSON in the metadata. ``model``'s train/eval mode
    is left as it was.
    """
    # 5 example frames, so that the frame axis is not traced as a constant 1.
    proto = _traced(_whole(model), model, stft_cfg, frames=5)
    return _write_with_metadata(proto, _metadata(model, stft_cfg), Path(path))


def _whole(net: MaskNet) -> Any:
    """A ``torch.nn.Module`` ``(mag, *state) -> (mask, *new_state)`` computing ``net``: flat
    tensors for the exporter (defined here: importing this module must not import torch)."""
    import torch

    class Whole(torch.nn.Module):
        def __init__(self, net: MaskNet):
            super().__init__()
            self.net = net

        def forward(self, mag: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
            mask, new_state = self.net(mag, tuple(state))
            return (mask, *new_state)

    return Whole(net)


def _traced(module: Any, model: MaskNet, stft_cfg: StftConfig, frames: int) -> Any:
    """The ONNX proto of ``module`` (``(mag, *state) -> (mask, *state)``, computing ``model``)
    traced in eval mode with the graph's input/output names; ``model``'s train/eval mode is
    left as it was. ``frames`` > 1: the frame axis of ``mag``/``mask`` is dynamic; 1: fixed."""
    import onnx
    import torch

    cfg = model.cfg
    if cfg.n_freqs != stft_cfg.n_fft // 2 + 1:
        raise ValueError(
            f"model has {cfg.n_freqs} frequency bins but the STFT gives "
            f"{stft_cfg.n_fft // 2 + 1} (n_fft={stft_cfg.n_fft})"
        )
    state_in = state_names(cfg.cell, cfg.lookahead)
    state_out = [f"{name}_out" for name in state_in]
    batch = 2  # not 1, so that the batch axis is not traced as a constant
    example = (torch.rand(batch, frames, cfg.n_freqs), *model.initial_state(batch))
    signal_axes = {0: "batch", 1: "frames"} if frames > 1 else {0: "batch"}
    dynamic_axes: dict[str, dict[int, str]] = {"mag": signal_axes, "mask": signal_axes}
    for name in state_in + state_out:
        dynamic_axes[name] = {0 if name.startswith("history") else 1: "batch"}

    was_training = model.training
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module.eval(), example, buffer, input_names=["mag", *state_in],
                              output_names=["mask", *state_out], dynamic_axes=dynamic_axes,
                              opset_version=OPSET, dynamo=False)
    finally:
        model.train(was_training)
    return onnx.load_from_string(buffer.getvalue())


def _metadata(model: MaskNet, stft_cfg: StftConfig) -> dict[str, str]:
    return {
        META_FORMAT_VERSION: FORMAT_VERSION,
        META_MODEL_CONFIG: json.dumps(asdict(model.cfg), sort_keys=True),
        META_STFT_CONFIG: json.dumps(asdict(stft_cfg), sort_keys=True),
        META_DIGEST: weights_digest(model),
    }


def weights_digest(model: MaskNet) -> str:
    """A fingerprint of ``model``'s weights (SHA-256 of its float32 state, 16 hex digits):
    a model's whole and one-frame graphs carry the same, so a stale frame graph beside a
    re-exported model is noticed."""
    import torch

    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().to(torch.float32).cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _write_with_metadata(proto: Any, meta: dict[str, str], path: Path) -> Path:
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return _write_atomic(path, proto.SerializeToString())


def export_onnx_frame(model: MaskNet, stft_cfg: StftConfig, path: str | os.PathLike,
                      int8: bool = True) -> Path:
    """Export ``model`` as a one-frame graph for streaming to ``path`` (written atomically).

    The same inputs, outputs, state and metadata as :func:`export_onnx`, but ``mag`` is
    ``[B, 1, F]``: the recurrent cells are written out as matrix products, so that with
    ``int8`` (the default) onnxruntime's dynamic quantization stores the weights as int8 (a
    quarter of the size) and runs them as int8 products, the values of each frame's inputs
    quantized as they come; the first layer's input product, which reads the features, has one
    weight scale per column (see :func:`_quantized`). A stream reads every weight once per 16 ms
    hop: this graph runs a hop of a mask-only 2 x 384 GRU in 99 us instead of 222 (2-core AMD
    EPYC, 2026-12-07); docs/benchmark.md pairs its streams with float32 on every set. The state
    is the whole graph's: the two graphs may take turns on one stream.
    """
    proto = _traced(_frame_step(model), model, stft_cfg, frames=1)
    if int8:
        proto = _quantized(proto, first_rows=model.cfg.n_freqs * (model.cfg.lookahead + 1))
        proto = _column_scales_after(proto)
    proto = _state_per_layer(proto)
    meta = _metadata(model, stft_cfg)
    meta[META_GRAPH] = GRAPH_FRAME
    meta[META_WEIGHTS] = "int8" if int8 else "float32"
    return _write_with_metadata(proto, meta, Path(path))


def _quantized(proto: Any, first_rows: int) -> Any:
    """``proto`` with its MatMuls' constant weights dynamically quantized to int8 (onnxruntime
    ``quantize_dynamic``: one scale per matrix), except the first layer's input product (the
    one with ``first_rows`` input rows), which :func:`_int8_columns` quantizes per column.

    The first layer reads the features, whose detail quiet speech lives in: quantized like the
    others, clean studio speech at -40 / -50 dBFS came back at 23.5 / 20.0 dB SNR against the
    input at 16 kHz; kept in float32, at 43.5 / 40.7 dB, a hop's network taking 134 us; with its
    weights per column in 7 bits, at 44.8 / 43.5 dB in 99 us (2-core AMD EPYC, 2026-12-07,
    called alone; docs/fidelity.md)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    weights = {t.name: t.dims for t in proto.graph.initializer}
    first_layer = [node.name for node in proto.graph.node if node.op_type == "MatMul"
                   and any(list(weights.get(i, ())[:1]) == [first_rows] for i in node.input)]

    # The quantizer logs advice and per-tensor notes on the root logger: silenced meanwhile.
    was_disabled = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "int8.onnx"
            # Per-tensor, signed weights: the quantizer's per-channel scales were less accurate
            # (max mask change 0.39 vs 0.12 on random frames; full 8-bit columns saturate, see
            # _int8_columns) and slower; uint8 weights slower (108 us).
            quantize_dynamic(proto, out, weight_type=QuantType.QInt8, per_channel=False,
                             nodes_to_exclude=first_layer)
            quantized = onnx.load(str(out))
    finally:
        logging.disable(was_disabled)
    return _int8_columns(quantized, set(first_layer))


# Largest |int8 weight| of a per-column quantized product: 7 bits. x86 CPUs without VNNI
# (AVX2) multiply the uint8 inputs by int8 weights in pairs summed to int16 (vpmaddubsw):
# 255 * 127 * 2 overflows it, 255 * 63 * 2 cannot. Full-range columns saturated: quiet speech
# at -40 dBFS came back at 16.6 dB SNR instead of 44.8. Per-column scales give the bit back.
COLUMN_INT8_MAX = 63


def _column_int8(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``matrix: [K, N]`` float32 -> (int8 levels ``[K, N]`` within +-:data:`COLUMN_INT8_MAX`,
    float32 scales ``[N]``, one per column; 1 for an all-zero column)."""
    peak = np.abs(matrix).max(axis=0)
    scale = np.where(peak > 0, peak / COLUMN_INT8_MAX, 1.0).astype(np.float32)
    levels = np.clip(np.round(matrix / scale), -COLUMN_INT8_MAX, COLUMN_INT8_MAX)
    return levels.astype(np.int8), scale


def _int8_columns(proto: Any, names: set[str]) -> Any:
    """``proto`` with the MatMul nodes ``names`` (input times a constant ``[K, N]`` matrix)
    replaced by onnxruntime's ``DynamicQuantizeMatMul``: the input quantized per frame as it
    comes (uint8, one scale), the matrix once, one scale per output column, weights within
    +-:data:`COLUMN_INT8_MAX`."""
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in proto.graph.initializer}
    for index, node in enumerate(list(proto.graph.node)):
        if node.name not in names:
            continue
        levels, scale = _column_int8(
            numpy_helper.to_array(inits[node.input[1]]).astype(np.float32))  # [K, N], [N]
        name = node.input[1]
        proto.graph.initializer.remove(inits[name])
        proto.graph.initializer.extend([
            numpy_helper.from_array(levels, f"{name}_int8"),
            numpy_helper.from_array(scale, f"{name}_scale")])
        proto.graph.node.remove(node)
        proto.graph.node.insert(index, helper.make_node(
            "DynamicQuantizeMatMul", [node.input[0], f"{name}_int8", f"{name}_scale"],
            list(node.output), name=f"{node.name}_int8", domain="com.microsoft"))
    if names and not any(op.domain == "com.microsoft" for op in proto.opset_import):
        proto.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return proto


def _column_scales_after(proto: Any) -> Any:
    """``proto`` with each ``DynamicQuantizeMatMul`` of per-column weight scales rewritten as
    one of a scalar scale (1) followed by a ``Mul`` by the column scales, the same int8 levels;
    a bias ``Add`` right after it folds into the product's bias (divided by the scales).

    The same products to the float32 rounding of the last step, for less time: onnxruntime's
    kernel takes a slower path with a scale per column (one 514 x 1152 product, the first
    layer's of a stream's hop: 15.2 us per column, 11.5 with one scale, 12.2 with one scale and
    the Mul; 2-core AMD EPYC with AVX-512, 2026-12-08, the product alone in a one-node graph,
    9 alternating rounds)."""
    from onnx import helper, numpy_helper

    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    for node in [n for n in graph.node if n.op_type == "DynamicQuantizeMatMul"]:
        scale = inits.get(node.input[2])
        if scale is None or len(scale.dims) != 1 or len(node.input) > 3:
            continue
        scales = numpy_helper.to_array(scale)
        out = node.output[0]
        users = [n for n in graph.node if out in n.input]
        add = users[0] if len(users) == 1 and users[0].op_type == "Add" else None
        bias = None if add is None else next(
            (inits[i] for i in add.input if i in inits and list(inits[i].dims) == [len(scales)]),
            None)
        one = f"{scale.name}_one"
        graph.initializer.append(numpy_helper.from_array(np.array(1.0, np.float32), one))
        inputs = [node.input[0], node.input[1], one]
        if bias is not None:
            folded = f"{bias.name}_per_scale"
            graph.initializer.append(numpy_helper.from_array(
                (numpy_helper.to_array(bias) / scales).astype(np.float32), folded))
            inputs += ["", folded]
            graph.node.remove(add)
            if not any(bias.name in n.input for n in graph.node):
                graph.initializer.remove(bias)
            target = add.output[0]
        else:
            target = out
        index = list(graph.node).index(node)
        graph.node.remove(node)
        graph.node.insert(index, helper.make_node("Mul", [f"{out}_levels", scale.name], [target],
                                                  name=f"{node.name}_columns"))
        graph.node.insert(index, helper.make_node(
            "DynamicQuantizeMatMul", inputs, [f"{out}_levels"],
            name=node.name, domain="com.microsoft"))
    return proto


def _state_per_layer(proto: Any) -> Any:
    """``proto`` (a one-frame graph) with each layer's RNN state an input ``{name}{layer}`` and
    an output ``{name}{layer}_out`` (``[B, hidden]``) instead of the stacked ``h`` (``c``)
    ``[layers, B, hidden]``: no Gather to take a layer's state out of the stack, no
    Unsqueeze and Concat to stack the new state, which cost a stream's hop 3.1 +- 1.2 us
    (``python -m benchmarks.frame_graph``). Same values to the bit. :class:`OnnxMaskModel`
    still takes and returns the stacked state (:class:`BoundFrames` binds each layer's to a
    row of it)."""
    from onnx import TensorProto, helper, numpy_helper

    graph = proto.graph
    producers = {o: n for n in graph.node for o in n.output}
    constants = {t.name: t for t in graph.initializer}
    stacked = [i for i in graph.input if i.name in ("h", "c")]
    renamed: dict[str, str] = {}
    drop: set[int] = set()
    inputs, outputs = [], []
    for value in stacked:
        name = value.name
        dims = value.type.tensor_type.shape.dim
        batch = dims[1].dim_param or dims[1].dim_value
        width = dims[2].dim_value
        for node in [n for n in graph.node if n.op_type == "Gather" and n.input[0] == name]:
            index = constants.get(node.input[1]) or producers[node.input[1]].attribute[0].t
            layer = int(numpy_helper.to_array(index))
            renamed[node.output[0]] = f"{name}{layer}"
            drop.add(id(node))
            inputs.append(helper.make_tensor_value_info(f"{name}{layer}", TensorProto.FLOAT,
                                                        [batch, width]))
        concat = producers[f"{name}_out"]  # Concat(Unsqueeze(layer 0), Unsqueeze(layer 1), ..)
        drop.add(id(concat))
        for layer, part in enumerate(concat.input):
            unsqueeze = producers[part]
            drop.add(id(unsqueeze))
            renamed[unsqueeze.input[0]] = f"{name}{layer}_out"
            outputs.append(helper.make_tensor_value_info(f"{name}{layer}_out", TensorProto.FLOAT,
                                                         [batch, width]))
    kept = [n for n in graph.node if id(n) not in drop]
    for node in kept:
        for i, name in enumerate(node.input):
            node.input[i] = renamed.get(name, name)
        for i, name in enumerate(node.output):
            node.output[i] = renamed.get(name, name)
    del graph.node[:]
    graph.node.extend(kept)
    rest_in = [i for i in graph.input if i.name not in ("h", "c")]
    inputs.sort(key=lambda v: (v.name[0] != "h", int(v.name[1:])))
    outputs.sort(key=lambda v: (v.name[0] != "h", int(v.name[1:-4])))
    history_in = [i for i in rest_in if i.name == "history"]
    del graph.input[:]
    graph.input.extend([i for i in rest_in if i.name != "history"] + inputs + history_in)
    rest_out = [o for o in graph.output if o.name not in ("h_out", "c_out")]
    history_out = [o for o in rest_out if o.name == "history_out"]
    del graph.output[:]
    graph.output.extend([o for o in rest_out if o.name != "history_out"] + outputs
                        + history_out)
    return proto


def export_onnx_int8(whole: str | os.PathLike, path: str | os.PathLike | None = None) -> Path:
    """Write the graph a whole file runs at ``--precision int8``: the whole float32 graph at
    ``whole`` (written by :func:`export_onnx`) with its recurrences in int8, to ``path``
    (default :func:`int8_graph_path`; written atomically). The inputs, outputs, state and
    metadata are ``whole``'s, its weights' digest too. Needs the ``onnx`` package, not torch.

    A whole file's float32 graph spends most of its time in the recurrent products, one frame
    after another: each step reads a layer's ``[3 x hidden, hidden]`` float32 matrix (1.77 MB
    at 2 x 384, more than a 1 MB L2 cache). Here every product that does not depend on the
    previous frame (the features, each layer's input product, the heads) stays float32 and runs
    over all frames at once as before, and the recurrences run frame by frame as ``Scan`` loops
    of int8 products (:func:`_int8_recurrences`): 40.9 instead of 58.2 us a frame on 1024
    frames of the shipped model (2-core AMD EPYC with AVX-512, 2026-12-08, one thread). The
    values differ from the float32 graph's by the int8 rounding of the recurrent products
    alone: within 0.01 dB SI-SDR and 0.002 PESQ-WB on noisy speech (docs/benchmark.md pairs
    the two on every set).
    """
    import onnx

    whole = Path(whole)
    proto = onnx.load(str(whole))
    meta = {entry.key: entry.value for entry in proto.metadata_props}
    if META_FORMAT_VERSION not in meta or meta.get(META_GRAPH) == GRAPH_FRAME or \
            meta.get(META_WEIGHTS, "float32") != "float32":
        raise OnnxModelError(f"{whole}: not a whole float32 speechmask graph (export_onnx)")
    proto = _int8_recurrences(proto)
    del proto.metadata_props[:]
    meta[META_WEIGHTS] = "int8"
    return _write_with_metadata(proto, meta, Path(path) if path else int8_graph_path(whole))


def _int8_recurrences(proto: Any) -> Any:
    """``proto`` with each ONNX ``GRU``/``LSTM`` node (one direction, default activations, as
    torch exports ``nn.GRU``/``nn.LSTM``) replaced by a float32 input product over all frames
    and a ``Scan`` over the frames whose step multiplies the state by the recurrent weights in
    int8 (``DynamicQuantizeMatMul``: the state quantized per step, uint8 with one scale; the
    matrix once, symmetric, one scale per column, in 7 bits (within +-:data:`COLUMN_INT8_MAX`):
    whatever the CPU, no pair of products can saturate the int16 sums of AVX2's vpmaddubsw,
    which the frame graph's full-range recurrent matrices could on a CPU without VNNI)."""
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in proto.graph.initializer}
    nodes, added = [], []
    for index, node in enumerate(proto.graph.node):
        if node.op_type not in ("GRU", "LSTM"):
            nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        lstm = node.op_type == "LSTM"
        expected = {"hidden_size"} | (set() if lstm else {"linear_before_reset"})
        if set(attrs) != expected or (not lstm and attrs["linear_before_reset"] != 1):
            raise ValueError(f"{node.op_type} node {node.name!r}: attributes {sorted(attrs)} "
                             "are not those of a torch export")
        hidden, gates = attrs["hidden_size"], 4 if lstm else 3
        inputs = list(node.input) + [""] * (7 - len(node.input))
        x, w, r, b, lengths, h0, c0 = inputs[:7]
        if lengths or not (h0 and b) or (lstm and not c0):
            raise ValueError(f"{node.op_type} node {node.name!r}: inputs {list(node.input)} "
                             "are not those of a torch export")
        p = f"int8_rnn{index}"
        w_mat = numpy_helper.to_array(inits[w])[0]  # [gates * H, K]
        r_mat = numpy_helper.to_array(inits[r])[0].T  # [H, gates * H]
        bias = numpy_helper.to_array(inits[b])[0]  # [2 * gates * H]: input's, then recurrent
        levels, scale = _column_int8(r_mat)  # [H, gates H], [gates H]
        added += [
            numpy_helper.from_array(np.ascontiguousarray(w_mat.T), f"{p}_w"),
            numpy_helper.from_array(bias[: gates * hidden].copy(), f"{p}_wb"),
            numpy_helper.from_array(levels, f"{p}_r"),
            numpy_helper.from_array(np.array(1.0, np.float32), f"{p}_one"),
            numpy_helper.from_array(scale, f"{p}_rs"),
            # The recurrent bias, added inside the product before the column scales.
            numpy_helper.from_array((bias[gates * hidden :] / scale).astype(np.float32),
                                    f"{p}_rb"),
            numpy_helper.from_array(np.array([0], np.int64), f"{p}_axis0"),
            numpy_helper.from_array(np.array([1], np.int64), f"{p}_axis1"),
        ]
        splits = {"iof_c": [3 * hidden, hidden]} if lstm else {
            "zr_n": [2 * hidden, hidden], "z_r": [hidden, hidden]}
        added += [numpy_helper.from_array(np.array(sizes, np.int64), f"{p}_{name}")
                  for name, sizes in splits.items()]
        # All frames at once: x [T, B, K] @ w -> [T, B, gates * H] (+ the input's biases).
        nodes += [helper.make_node("MatMul", [x, f"{p}_w"], [f"{p}_xw"]),
                  helper.make_node("Add", [f"{p}_xw", f"{p}_wb"], [f"{p}_x"]),
                  helper.make_node("Squeeze", [h0, f"{p}_axis0"], [f"{p}_h0"])]
        states = [f"{p}_h0"]
        if lstm:
            nodes.append(helper.make_node("Squeeze", [c0, f"{p}_axis0"], [f"{p}_c0"]))
            states.append(f"{p}_c0")
        body = _int8_step(p, hidden, lstm)
        scan_in = [f"{p}_x"]
        if not lstm:  # the GRU's n part enters its step apart from z and r
            nodes.append(helper.make_node("Split", [f"{p}_x", f"{p}_zr_n"],
                                          [f"{p}_x_zr", f"{p}_x_n"], axis=-1))
            scan_in = [f"{p}_x_zr", f"{p}_x_n"]
        finals = [f"{p}_hT"] + ([f"{p}_cT"] if lstm else [])
        nodes.append(helper.make_node("Scan", states + scan_in, finals + [f"{p}_ys"],
                                      body=body, num_scan_inputs=len(scan_in),
                                      name=f"{p}_scan"))
        # ONNX's outputs: Y [T, 1, B, H], Y_h (Y_c) [1, B, H]; unused ones are "".
        outputs = list(node.output) + [""] * (3 - len(node.output))
        for source, target, axis in zip([f"{p}_ys", *finals], outputs,
                                        ["axis1", "axis0", "axis0"], strict=False):
            if target:
                nodes.append(helper.make_node("Unsqueeze", [source, f"{p}_{axis}"], [target]))
        for name in (w, r, b):
            proto.graph.initializer.remove(inits[name])
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    proto.graph.initializer.extend(added)
    if not any(op.domain == "com.microsoft" for op in proto.opset_import):
        proto.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return proto


def _int8_step(p: str, hidden: int, lstm: bool) -> Any:
    """The ``Scan`` body of :func:`_int8_recurrences`: one frame of a GRU (state ``h``; scan
    inputs the frame's input products ``x_zr``, ``x_n``) or an LSTM (state ``h``, ``c``; scan
    input ``x``, gates i, o, f, c in ONNX's order), names prefixed ``p`` in the outer graph's
    weights. Outputs the new state, then ``h`` again as the scan output."""
    from onnx import TensorProto, helper

    def tensor(name: str, width: int) -> Any:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, width])

    # One weight scale per column, applied after the product (_column_scales_after says why).
    product = [helper.make_node("DynamicQuantizeMatMul",
                                ["h", f"{p}_r", f"{p}_one", "", f"{p}_rb"], ["levels"],
                                domain="com.microsoft"),
               helper.make_node("Mul", ["levels", f"{p}_rs"], ["g"])]
    if lstm:
        steps = [
            *product,
            helper.make_node("Add", ["x", "g"], ["a"]),
            helper.make_node("Split", ["a", f"{p}_iof_c"], ["a_iof", "a_c"], axis=-1),
            helper.make_node("Sigmoid", ["a_iof"], ["s"]),
            helper.make_node("Split", ["s"], ["i", "o", "f"], axis=-1),  # 3 equal parts
            helper.make_node("Tanh", ["a_c"], ["cand"]),
            helper.make_node("Mul", ["f", "c"], ["kept"]),
            helper.make_node("Mul", ["i", "cand"], ["new"]),
            helper.make_node("Add", ["kept", "new"], ["c_new"]),
            helper.make_node("Tanh", ["c_new"], ["tc"]),
            helper.make_node("Mul", ["o", "tc"], ["h_new"]),
        ]
        inputs = [tensor("h", hidden), tensor("c", hidden), tensor("x", 4 * hidden)]
        outputs = [tensor("h_new", hidden), tensor("c_new", hidden)]
    else:  # torch's GRU (linear_before_reset): n = tanh(x_n + r * (h R_n + b_n))
        steps = [
            *product,
            helper.make_node("Split", ["g", f"{p}_zr_n"], ["g_zr", "g_n"], axis=-1),
            helper.make_node("Add", ["x_zr", "g_zr"], ["a"]),
            helper.make_node("Sigmoid", ["a"], ["s"]),
            helper.make_node("Split", ["s", f"{p}_z_r"], ["z", "r"], axis=-1),
            helper.make_node("Mul", ["r", "g_n"], ["rg"]),
            helper.make_node("Add", ["x_n", "rg"], ["na"]),
            helper.make_node("Tanh", ["na"], ["n"]),
            # h' = (1 - z) n + z h = n + z (h - n)
            helper.make_node("Sub", ["h", "n"], ["d"]),
            helper.make_node("Mul", ["z", "d"], ["zd"]),
            helper.make_node("Add", ["n", "zd"], ["h_new"]),
        ]
        inputs = [tensor("h", hidden), tensor("x_zr", 2 * hidden), tensor("x_n", hidden)]
        outputs = [tensor("h_new", hidden)]
    steps.append(helper.make_node("Identity", ["h_new"], ["y"]))
    return helper.make_graph(steps, f"{p}_step", inputs, outputs + [tensor("y", hidden)])


def _frame_step(net: MaskNet) -> Any:
    """A ``torch.nn.Module`` (defined here: importing this module must not import torch) that
    computes ``net`` for one frame, the RNN cells as explicit products (which int8
    quantization can rewrite): ``(mag [B, 1, F], *state) -> (mask [B, 1, F], *state)``, as
    ``MaskNet.forward``."""
    import torch

    class FrameStep(torch.nn.Module):
        def __init__(self, net: MaskNet):
            super().__init__()
            self.net = net

        def forward(self, mag: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
            net, cfg = self.net, self.net.cfg
            feats = net.features(mag)  # [B, 1, F]
            n_rnn = net.rnn_state_count
            new_history: tuple[torch.Tensor, ...] = ()
            if cfg.lookahead:  # frames t-k..t side by side, oldest first (MaskNet._context)
                full = torch.cat([state[n_rnn], feats], dim=1)  # [B, k + 1, F]
                x, new_history = full.flatten(1), (full[:, 1:],)
            else:
                x = feats[:, 0]
            hs, cs = [], []
            for layer in range(cfg.layers):
                w_ih = getattr(net.rnn, f"weight_ih_l{layer}")
                w_hh = getattr(net.rnn, f"weight_hh_l{layer}")
                b_ih = getattr(net.rnn, f"bias_ih_l{layer}")
                b_hh = getattr(net.rnn, f"bias_hh_l{layer}")
                h = state[0][layer]
                if cfg.cell == "lstm":
                    gates = x @ w_ih.t() + h @ w_hh.t() + (b_ih + b_hh)
                    i, f, g, o = gates.split([cfg.hidden] * 4, dim=1)
                    c = torch.sigmoid(f) * state[1][layer] + torch.sigmoid(i) * torch.tanh(g)
                    x = torch.sigmoid(o) * torch.tanh(c)
                    cs.append(c)
                else:  # torch's GRU: gates r, z, n; r scales the recurrent part of n
                    gi_rz, gi_n = (x @ w_ih.t() + b_ih).split([2 * cfg.hidden, cfg.hidden], 1)
                    gh_rz, gh_n = (h @ w_hh.t() + b_hh).split([2 * cfg.hidden, cfg.hidden], 1)
                    r, z = torch.sigmoid(gi_rz + gh_rz).split([cfg.hidden] * 2, dim=1)
                    n = torch.tanh(gi_n + r * gh_n)
                    x = n + z * (h - n)
                hs.append(x)
            mask = net.rows(x)[:, None]  # the mask (and a deep filter's coefficients)
            rnn_state = (torch.stack(hs),) + ((torch.stack(cs),) if cs else ())
            return (mask, *rnn_state, *new_history)

    return FrameStep(net)


def state_names(cell: str, lookahead: int) -> list[str]:
    """Graph inputs that carry the state: the RNN's, then the look-ahead's feature history."""
    return (["h", "c"] if cell == "lstm" else ["h"]) + (["history"] if lookahead else [])


def _write_atomic(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder + ``os.replace``."""
    return write_atomic(path, lambda handle: handle.write(data))


# --------------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------------


class OnnxMaskModel:
    """An exported mask network run with onnxruntime (CPU).

    ``model(mag [B, T, F] float32, state=None) -> (mask [B, T, W] float32, state)``, where
    ``state`` is ``(h, c)`` (LSTM) or ``(h,)`` (GRU), each ``[layers, B, hidden]`` float32, then
    for a model with look-ahead k the feature history ``[B, k, F]``; mask row t is for frame
    t - k (:meth:`offline` aligns them). W = F, or for a model with a deep filter
    ``deep_filter.width``: the mask, then the filter's coefficients (deepfilter.py). Running
    frames in chunks while carrying the state gives the same masks as one call.
    """

    def __init__(self, path: str | os.PathLike, threads: int = 1):
        self.path = Path(path)
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        if not self.path.is_file():
            raise OnnxModelError(f"{self.path}: no such model file")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only; no warnings on stderr
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises several types for unreadable files
            raise OnnxModelError(
                f"{self.path}: not a readable ONNX model ({first_line(err, 120)}); "
                "re-export or re-download it"
            ) from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if META_FORMAT_VERSION not in meta:
            raise OnnxModelError(f"{self.path}: not a speechmask ONNX model (no speechmask "
                                 "metadata); export one with speechmask.onnx_backend.export_onnx")
        if meta[META_FORMAT_VERSION] != FORMAT_VERSION:
            raise OnnxModelError(
                f"{self.path}: speechmask ONNX format version {meta[META_FORMAT_VERSION]!r} is "
                f"not supported (expects {FORMAT_VERSION!r}); re-export it with this speechmask"
            )
        try:
            self.model_config: dict[str, Any] = json.loads(meta[META_MODEL_CONFIG])
            self.stft_cfg = StftGeometry(**json.loads(meta[META_STFT_CONFIG]))
            self.cell = str(self.model_config["cell"])
            self.layers = int(self.model_config["layers"])
            self.hidden = int(self.model_config["hidden"])
            self.n_freqs = int(self.model_config["n_freqs"])
            # Exports older than look-ahead have no such field: 0.
            self.lookahead = int(self.model_config.get("lookahead", 0))
            # Exports before 2026-12-08 have no deep filter: None.
            self.deep_filter = DeepFilter.of(self.model_config)
            self.output_size = self.n_freqs if self.deep_filter is None else \
                self.deep_filter.width
            # A one-frame graph (export_onnx_frame) runs longer inputs frame by frame.
            self.frame_graph = meta.get(META_GRAPH) == GRAPH_FRAME
            self.weights = meta.get(META_WEIGHTS, "float32")
            self.digest = meta.get(META_DIGEST)  # None in exports before 2026-12-07
        except (KeyError, TypeError, ValueError) as err:
            raise OnnxModelError(
                f"{self.path}: speechmask metadata is damaged ({first_line(err, 120)})"
            ) from None
        self._state_in = state_names(self.cell, self.lookahead)
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        # The graph's names for each part of the state: the stacked RNN state ``h`` as one
        # input, or (one-frame graphs since 2026-12-08, _state_per_layer) one per layer.
        per_layer = self.frame_graph and "h0" in inputs
        self._graph_state = [[f"{name}{layer}" for layer in range(self.layers)]
                             if per_layer and name in ("h", "c") else [name]
                             for name in self._state_in]
        # Which parts of the state the graph takes per layer (split along the first axis).
        self._split = [names != [name] for names, name in zip(self._graph_state,
                                                                self._state_in, strict=True)]
        graph_in = [name for names in self._graph_state for name in names]
        self._outputs = ["mask", *(f"{name}_out" for name in graph_in)]
        if inputs != ["mag", *graph_in] or outputs != self._outputs:
            raise OnnxModelError(
                f"{self.path}: graph inputs {inputs} / outputs {outputs} do not match a "
                f"speechmask {self.cell} model"
            )

    def __repr__(self) -> str:
        kind = (", frame graph" if self.frame_graph else "") + (
            f", {self.weights}" if self.frame_graph or self.weights != "float32" else "")
        return (f"OnnxMaskModel({str(self.path)!r}, cell={self.cell!r}, layers={self.layers}, "
                f"hidden={self.hidden}, n_freqs={self.n_freqs}, lookahead={self.lookahead}"
                f"{kind})")

    def _state_shapes(self, batch: int) -> list[tuple[int, ...]]:
        rnn = (self.layers, batch, self.hidden)
        return [(batch, self.lookahead, self.n_freqs) if name == "history" else rnn
                for name in self._state_in]

    def initial_state(self, batch: int = 1) -> tuple[np.ndarray, ...]:
        """All-zero state for ``batch`` streams: ``[layers, B, hidden]`` arrays for the RNN
        (and ``[B, k, F]`` of feature history for look-ahead k)."""
        return tuple(np.zeros(shape, np.float32) for shape in self._state_shapes(batch))

    def offline(self, mag: np.ndarray) -> np.ndarray:
        """Rows aligned with the frames: ``mag: [B, T, F] -> [B, T, W]`` (as
        ``MaskNet.offline``: the last ``lookahead`` frames see silence as their future)."""
        k = self.lookahead
        if k:
            mag = np.concatenate([mag, np.zeros((mag.shape[0], k, mag.shape[2]), mag.dtype)], 1)
        return self(mag)[0][:, k:]

    def __call__(
        self, mag: np.ndarray, state: tuple[np.ndarray, ...] | None = None
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """Masks for ``mag: [B, T, F]`` (T >= 1) magnitudes; returns ``(mask [B, T, W], state)``."""
        mag = np.ascontiguousarray(mag, dtype=np.float32)
        if mag.ndim != 3 or mag.shape[1] < 1 or mag.shape[2] != self.n_freqs:
            raise ValueError(
                f"mag must be [batch, frames >= 1, {self.n_freqs}], got {list(mag.shape)}"
            )
        if state is None:
            state = self.initial_state(mag.shape[0])
        expected = self._state_shapes(mag.shape[0])
        if [np.shape(s) for s in state] != expected:
            raise ValueError(
                f"state must be {len(expected)} array(s) of shapes {[list(e) for e in expected]},"
                f" got {[list(np.shape(s)) for s in state]}"
            )
        return self.run(mag, tuple(np.ascontiguousarray(s, dtype=np.float32) for s in state))

    def run(
        self, mag: np.ndarray, state: tuple[np.ndarray, ...]
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """:meth:`__call__` without its checks and conversions: ``mag`` and ``state`` must
        already be contiguous float32 of the right shapes (a stream's own arrays, where the
        checks and conversions of :meth:`__call__` cost 10-17 us a frame); a stream's hops run
        faster still through :class:`BoundFrames`."""
        if self.frame_graph and mag.shape[1] > 1:  # a one-frame graph: frame by frame
            return BoundFrames(self, mag.shape[0]).run(mag, state)
        feeds = {"mag": mag}
        for names, split, array in zip(self._graph_state, self._split, state, strict=True):
            feeds.update(zip(names, array if split else [array], strict=True))
        mask, *parts = self.session.run(self._outputs, feeds)
        new_state = []
        for names, split in zip(self._graph_state, self._split, strict=True):
            new_state.append(np.stack(parts[: len(names)]) if split else parts[0])
            parts = parts[len(names) :]
        return mask, tuple(new_state)

    def bind_state(self, binding: Any, state: tuple[np.ndarray, ...], output: bool) -> None:
        """Bind ``state`` (arrays of :meth:`initial_state`'s shapes, contiguous float32) as the
        graph's state inputs (or its state outputs with ``output``) of the IOBinding
        ``binding``: a per-layer graph's to each layer's row of the stacked arrays."""
        for names, split, array in zip(self._graph_state, self._split, state, strict=True):
            for name, part in zip(names, array if split else [array], strict=True):
                if output:
                    binding.bind_output(f"{name}_out", "cpu", 0, np.float32, part.shape,
                                        part.ctypes.data)
                else:
                    binding.bind_cpu_input(name, part)


class BoundFrames:
    """Frames one at a time through a one-frame graph, its inputs and outputs bound to arrays
    allocated once (onnxruntime IOBinding): nothing is converted, checked or allocated per
    frame, and the state alternates between two sets of arrays, the outputs of one frame being
    the inputs of the next. A stream's hop of a mask-only 2 x 384 GRU: 81 us instead of 97 through
    the session's plain ``run`` (2-core AMD EPYC, 2026-12-07, called alone).

    ``run(mag [B, T, F], state) -> (mask [B, T, F], state)`` for the ``batch`` B it was made
    for: the returned state's arrays are this object's and are overwritten by its next calls; a
    state from elsewhere (the first call, or a call to the model itself between) is copied in.
    """

    def __init__(self, model: OnnxMaskModel, batch: int = 1):
        if not model.frame_graph:
            raise ValueError(f"{model.path}: BoundFrames runs a one-frame graph")
        self.session = model.session
        self.mag = np.zeros((batch, 1, model.n_freqs), np.float32)
        self.mask = np.zeros((batch, 1, model.output_size), np.float32)
        self.sets = [model.initial_state(batch), model.initial_state(batch)]
        self.bindings = []
        for k in range(2):  # binding k reads state set k and writes set 1 - k
            binding = self.session.io_binding()
            binding.bind_cpu_input("mag", self.mag)
            model.bind_state(binding, self.sets[k], output=False)
            binding.bind_output("mask", "cpu", 0, np.float32, self.mask.shape,
                                self.mask.ctypes.data)
            model.bind_state(binding, self.sets[1 - k], output=True)
            self.bindings.append(binding)
        self.current = 0

    def run(self, mag: np.ndarray,
            state: tuple[np.ndarray, ...]) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        inputs = self.state
        if state is not inputs:
            for target, source in zip(inputs, state, strict=True):
                np.copyto(target, source)
        masks = np.empty((*mag.shape[:2], self.mask.shape[2]), np.float32)
        for t in range(mag.shape[1]):
            np.copyto(self.mag, mag[:, t : t + 1])
            self.session.run_with_iobinding(self.bindings[self.current])
            self.current ^= 1
            masks[:, t : t + 1] = self.mask
        return masks, self.state

    def step(self, mag: np.ndarray) -> np.ndarray:
        """One frame ``mag: [B, 1, F]`` from this object's own state (the state :meth:`run`
        returned last, or zeros) -> its rows ``[B, 1, W]``: the bound output array itself, which
        the next call overwrites (a stream's hop uses them first; no copy, ~1-3 us a hop)."""
        np.copyto(self.mag, mag)
        self.session.run_with_iobinding(self.bindings[self.current])
        self.current ^= 1
        return self.mask

    @property
    def state(self) -> tuple[np.ndarray, ...]:
        """The state after the last frame (this object's arrays)."""
        return self.sets[self.current]


# --------------------------------------------------------------------------------------------
# STFT in numpy (matches speechmask.features.stft / istft)
# --------------------------------------------------------------------------------------------


def window_np(geom: StftGeometry) -> np.ndarray:
    """sqrt of the periodic Hann window, ``[n_fft]`` float32 (as ``features.window``)."""
    return sqrt_hann(geom.n_fft)


def stft_np(x: np.ndarray, geom: StftConfig = StftConfig()) -> np.ndarray:
    """Complex STFT of ``x: [N]`` float -> ``[T, F]`` complex64, ``T = N // hop + 1``.

    Same as ``torch.stft(center=True, pad_mode="constant")`` with the sqrt-Hann window: frame
    ``t`` covers samples ``[t*hop - n_fft/2, t*hop + n_fft/2)`` of the zero-padded signal.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"x must be [samples], got shape {list(x.shape)}")
    half = geom.n_fft // 2
    padded = np.pad(x, (half, half))
    frames = np.lib.stride_tricks.sliding_window_view(padded, geom.n_fft)[:: geom.hop]
    return np.fft.rfft(frames * window_np(geom), axis=-1).astype(np.complex64)


def _overlap_add(frames: np.ndarray, hop: int) -> np.ndarray:
    """Overlap-add ``frames: [T, L]`` at ``hop`` spacing -> ``[L + hop * (T - 1)]``."""
    n_frames, size = frames.shape
    blocks = -(-size // hop)  # ceil(L / hop)
    padded = np.zeros((n_frames, blocks * hop), frames.dtype)
    padded[:, :size] = frames
    padded = padded.reshape(n_frames, blocks, hop)
    out = np.zeros((n_frames + blocks - 1) * hop, frames.dtype)
    for j in range(blocks):
        out[j * hop : (j + n_frames) * hop] += padded[:, j, :].reshape(-1)
    return out[: size + hop * (n_frames - 1)]


def istft_np(spec: np.ndarray, length: int, geom: StftConfig = StftConfig()) -> np.ndarray:
    """Inverse of :func:`stft_np`: ``spec: [T, F]`` complex -> ``[length]`` float32.

    As ``torch.istft(center=True, length=length)``: windowed inverse FFTs are overlap-added, the
    centre padding is cut, and the result is divided by the overlap-added squared window (which
    differs from its steady value near the signal edges). Positions past the last frame are 0.
    """
    spec = np.asarray(spec)
    if spec.ndim != 2 or spec.shape[1] != geom.n_freqs or spec.shape[0] < 1:
        raise ValueError(
            f"spec must be [frames >= 1, {geom.n_freqs}], got shape {list(spec.shape)}"
        )
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    win = window_np(geom)
    frames = np.fft.irfft(spec, n=geom.n_fft, axis=-1).astype(np.float32) * win
    signal = _overlap_add(frames, geom.hop)
    envelope = _overlap_add(np.broadcast_to(win * win, frames.shape), geom.hop)
    start = geom.n_fft // 2
    signal, envelope = signal[start : start + length], envelope[start : start + length]
    if envelope.size and np.abs(envelope).min() < _ENVELOPE_MIN:
        raise ValueError("istft_np: window overlap-add is ~0 somewhere; hop too large for n_fft")
    out = np.zeros(length, np.float32)
    out[: signal.size] = signal / envelope
    return out


# --------------------------------------------------------------------------------------------
# Enhancement
# --------------------------------------------------------------------------------------------


def default_onnx_path() -> Path:
    """The shipped pretrained model as ONNX (package data, next to the torch checkpoint)."""
    from importlib import resources

    return Path(str(resources.files("speechmask") / "pretrained" / "default" / "model.onnx"))


def frame_graph_path(path: str | os.PathLike) -> Path:
    """Where the one-frame int8 graph of the model at ``path`` lives: ``model.onnx`` ->
    ``model.stream.onnx`` (``speechmask export --onnx`` writes it)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.stream.onnx")


def int8_graph_path(path: str | os.PathLike) -> Path:
    """Where the whole graph with int8 recurrences of the model at ``path`` lives (what a file
    runs with at ``--precision int8``, :func:`export_onnx_int8`): ``model.onnx`` ->
    ``model.int8.onnx`` (``speechmask export --onnx`` writes it)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.int8.onnx")


def load_frame_graph(model: OnnxMaskModel, precision: str = "auto",
                     threads: int = 1) -> OnnxMaskModel | None:
    """The one-frame int8 graph a stream runs ``model``'s hops with, or None for ``model``
    itself (float32).

    ``precision``: ``"float32"`` -> None; ``"int8"`` -> the graph beside ``model``
    (:func:`frame_graph_path`), an :class:`OnnxModelError` if there is none or it belongs to
    other weights; ``"auto"`` -> that graph if it is there and matches, else None (logged).
    ``model`` may itself be a frame graph: it is then what runs, and None is returned.
    """
    return _graph_beside(model, frame_graph_path(model.path), True, precision, threads)


def load_int8_graph(model: OnnxMaskModel, precision: str = "auto",
                    threads: int = 1) -> OnnxMaskModel | None:
    """The whole graph with int8 recurrences a file runs ``model`` with (:func:`int8_graph_path`),
    or None for ``model`` itself; ``precision`` as :func:`load_frame_graph`."""
    return _graph_beside(model, int8_graph_path(model.path), False, precision, threads)


def _graph_beside(model: OnnxMaskModel, path: Path, frame: bool, precision: str,
                  threads: int) -> OnnxMaskModel | None:
    """The int8 graph at ``path`` (one-frame if ``frame``, else whole) of ``model``'s weights,
    or None for ``model`` itself: see :func:`load_frame_graph`."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    kind = "one-frame graph" if frame else "whole int8 graph"
    if model.frame_graph or model.weights != "float32":
        if precision == "float32" and model.weights != "float32":
            raise OnnxModelError(f"{model.path}: a {model.weights} graph; for float32 give "
                                 "the whole model (e.g. model.onnx)")
        return None
    if precision == "float32":
        return None
    fix = f"`speechmask export MODEL --onnx {model.path}`"
    if not path.is_file():
        if precision == "int8":
            raise OnnxModelError(f"{path}: no int8 graph beside {model.path}; write it with "
                                 f"{fix}")
        log.debug("%s: no int8 %s beside it; running float32", model.path, kind)
        return None
    graph = OnnxMaskModel(path, threads=threads)
    if graph.frame_graph != frame or graph.digest is None or graph.digest != model.digest:
        message = (f"{path}: not the {kind} of {model.path} (other weights); re-export them "
                   f"with {fix}")
        if precision == "int8":
            raise OnnxModelError(message)
        log.warning("%s; running float32", message)
        return None
    if precision == "int8" and graph.weights != "int8":
        raise OnnxModelError(f"{path}: {graph.weights} weights, not int8; re-export with {fix}")
    return graph


class OnnxStreamingEnhancer(FrameStream):
    """Causal chunk-wise enhancement of a mono stream with an ONNX model (no torch).

    Same interface and output as :class:`speechmask.streaming.StreamingEnhancer`: ``process``
    chunks of any size, ``flush`` at the end, fixed :attr:`latency` (32 ms, + 16 ms per frame
    of look-ahead), at the model rate or a ``rate`` from
    :func:`speechmask.pipeline.processing_rate`.
    """

    def __init__(self, model: OnnxMaskModel, strength: float = 1.0,
                 gain_band: tuple[int, int] | None = None, rate: int | None = None,
                 frame_model: OnnxMaskModel | None = None):
        """``frame_model``: the model's one-frame (int8) graph, which then runs every frame
        (one call per frame, so the output does not depend on how the chunks fall); None:
        ``model`` runs them, as many per call as a chunk brings."""
        self.model = model
        self.frame_model = frame_model
        self._bound = BoundFrames(frame_model) if frame_model is not None else None
        super().__init__(model.stft_cfg, strength, gain_band, model.lookahead, rate,
                         model.deep_filter)

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, strength: float = 1.0,
             threads: int = 1, precision: str = "auto") -> OnnxStreamingEnhancer:
        """Load an exported model (default: the shipped one); ``precision`` as
        :func:`load_frame_graph` (default: int8 where the model has that graph)."""
        model = OnnxMaskModel(path or default_onnx_path(), threads=threads)
        return cls(model, strength, frame_model=load_frame_graph(model, precision, threads))

    def _reset_state(self) -> None:
        self.state: tuple[np.ndarray, ...] | None = None
        if self._bound is not None:  # its hops start from its own arrays (BoundFrames.step)
            for array in self._bound.state:
                array.fill(0.0)

    # No _state_is_finite: FrameStream's check of the mask covers what it guards against, a
    # state poisoned for good. Every state output of a frame feeds that frame's mask (h the
    # next layer or the dense one, c its h, the feature history the first layer), a NaN in any
    # makes the mask NaN (0 x NaN is NaN), h and c are bounded (never inf), and an inf feature
    # leaves the history after the look-ahead's k frames. Sweeping the state each hop cost ~4
    # us of a ~175 us hop.

    def _network(self, mag: np.ndarray) -> np.ndarray:
        # FrameStream passes contiguous float32 [K, F] and the state is the session's own
        # output: OnnxMaskModel.run skips the checks of __call__; with the frame graph every
        # frame runs through this stream's bound arrays (BoundFrames), a hop's single frame
        # from the state they hold.
        if self._bound is not None and len(mag) == 1:
            rows = self._bound.step(mag[None])
            self.state = self._bound.state
            return rows[0]
        if self.state is None:
            self.state = self.model.initial_state(1)
        run = self.model.run if self._bound is None else self._bound.run
        mask, self.state = run(mag[None], self.state)
        return mask[0]


class OnnxEnhancer(ArrayEnhancer):
    """Torch-free :class:`speechmask.enhance.Enhancer` (the same output within 1e-4): any rate,
    mono, ``[samples, channels]`` or ``[channels, samples]``.

    >>> enh = OnnxEnhancer.load()      # the shipped model, or OnnxEnhancer.load("model.onnx")
    >>> clean = enh(noisy, 44100)      # noisy: [samples] or [channels, samples] float32
    """

    def __init__(self, model: OnnxMaskModel, strength: float = 1.0,
                 atten_lim_db: float | None = None, frame_model: OnnxMaskModel | None = None):
        """``atten_lim_db``: remove at most this many dB anywhere (None: no limit).
        ``frame_model``: the one-frame (int8) graph that runs every frame, of whole files and
        of pipelines (see :class:`OnnxStreamingEnhancer`); None: ``model`` runs everything."""
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        self.floor = mask_floor(atten_lim_db)
        self.model = model
        self.frame_model = frame_model
        self.stft_cfg = model.stft_cfg
        self.strength = strength

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, strength: float = 1.0,
             threads: int = 1, atten_lim_db: float | None = None,
             precision: str | None = None, stream: bool = False) -> OnnxEnhancer:
        """Load an ONNX model written by :func:`export_onnx` (default: the shipped one).
        ``precision``: None (default) runs the model as given, which for a whole graph is the
        output torch gives; ``"int8"`` (or ``"auto"`` where the model has that graph) runs
        whole files through its graph with int8 recurrences (:func:`load_int8_graph`): the
        float32 output within int8 rounding, at less CPU (docs/benchmark.md). With ``stream``
        (an enhancer for live streams, ``speechmask stream``) ``precision`` picks the graph
        that runs each 16 ms hop instead (:func:`load_frame_graph`)."""
        model = OnnxMaskModel(path or default_onnx_path(), threads=threads)
        if precision is None:
            return cls(model, strength, atten_lim_db)
        if stream:
            return cls(model, strength, atten_lim_db, load_frame_graph(model, precision, threads))
        return cls(load_int8_graph(model, precision, threads) or model, strength, atten_lim_db)

    def mask_16k(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Enhance mono 16 kHz ``audio: [N]`` in one call. Returns ``(enhanced [N], mask [T, F])``.

        The mask is ``1 - strength * (1 - mask)``: strength 0 is the input, 1 the full mask; a
        deep filter's output is added times ``strength``.
        """
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise ValueError(f"audio must be mono [samples], got shape {list(audio.shape)}")
        spec = stft_np(audio, self.stft_cfg)
        gains = level_gains_offline(audio, self.stft_cfg)
        network = self.model if self.frame_model is None else self.frame_model
        rows = network.offline((np.abs(spec) * gains[:, None])[None])[0]
        mask = (1.0 - self.strength * (1.0 - rows[:, : self.model.n_freqs])).astype(np.float32)
        if self.floor:
            mask = np.maximum(mask, np.float32(self.floor))
        est = spec * mask
        df = self.model.deep_filter
        if df is not None:
            est[:, : df.bins] += np.float32(self.strength) * df.offline(rows, spec)
        out = istft_np(est, len(audio), self.stft_cfg)
        return out, mask

    def pipeline(self, rate: int) -> ChannelPipeline:
        """A block-wise enhancer for one channel at ``rate`` (bounded memory, same output)."""
        return ChannelPipeline(
            lambda band, rate: with_floor(
                OnnxStreamingEnhancer(self.model, self.strength, band, rate, self.frame_model),
                self.floor),
            self.stft_cfg, rate)
