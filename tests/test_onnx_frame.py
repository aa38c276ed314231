"""The one-frame ONNX graph (export_onnx_frame): float32 equals the whole graph, int8 stays
close at a quarter of the weight bytes, and streams pick it up only where it belongs."""

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper, numpy_helper

from speechmask.features import StftConfig
from speechmask.model import MaskNet, ModelConfig
from speechmask.onnx_backend import (
    COLUMN_INT8_MAX,
    META_DIGEST,
    BoundFrames,
    OnnxEnhancer,
    OnnxMaskModel,
    OnnxModelError,
    OnnxStreamingEnhancer,
    _int8_columns,
    default_onnx_path,
    export_onnx,
    export_onnx_frame,
    frame_graph_path,
    load_frame_graph,
)

F = 257


def _tiny(cell: str, lookahead: int, seed: int = 0, hidden: int = 24,
          df_bins: int = 0, layers: int = 2) -> MaskNet:
    torch.manual_seed(seed)
    model = MaskNet(ModelConfig(cell=cell, hidden=hidden, layers=layers, n_freqs=F,
                                lookahead=lookahead, df_bins=df_bins))
    model.set_normalization(torch.randn(F) - 8.0, torch.rand(F) * 3.0 + 1.0)
    if df_bins:  # random coefficients instead of a new filter's zeros
        torch.nn.init.normal_(model.df_head.weight, std=0.1)
    return model.eval()


@pytest.fixture(scope="module", params=[("lstm", 0), ("gru", 0), ("gru", 2), ("gru", 1, 0, 24, 32)])
def graphs(request, tmp_path_factory):
    """``(whole graph, float32 frame graph, int8 frame graph)`` of one tiny model; the int8
    one lies beside the whole graph, where streams look for it."""
    model = _tiny(*request.param)
    folder = tmp_path_factory.mktemp("frame")
    whole = export_onnx(model, StftConfig(), folder / "m.onnx")
    f32 = export_onnx_frame(model, StftConfig(), folder / "f32.onnx", int8=False)
    int8 = export_onnx_frame(model, StftConfig(), frame_graph_path(whole))
    return OnnxMaskModel(whole), OnnxMaskModel(f32), OnnxMaskModel(int8)


def _frames(batch: int, count: int, seed: int = 0) -> np.ndarray:
    """Magnitudes spread over 60 dB, as speech and noise are."""
    rng = np.random.default_rng(seed)
    level = 10 ** rng.uniform(-3, 0, (batch, count, 1))
    return (rng.random((batch, count, F)) * level).astype(np.float32)


def _frame_by_frame(model: OnnxMaskModel, mag: np.ndarray, state: tuple) -> tuple:
    masks = []
    for t in range(mag.shape[1]):
        mask, state = model(mag[:, t : t + 1], state)
        masks.append(mask)
    return np.concatenate(masks, 1), state


@pytest.mark.parametrize("batch", [1, 3])
def test_float32_frame_graph_equals_whole_graph(graphs, batch):
    whole, f32, _ = graphs
    assert f32.frame_graph and f32.weights == "float32" and not whole.frame_graph
    rng = np.random.default_rng(batch)
    state = tuple((rng.standard_normal(s.shape) * 0.5).astype(np.float32)
                  for s in whole.initial_state(batch))
    mag = _frames(batch, 20, seed=batch)
    want, want_state = whole(mag, state)
    got, got_state = _frame_by_frame(f32, mag, state)
    assert np.abs(got - want).max() < 1e-5
    for g, w in zip(got_state, want_state, strict=True):
        assert np.abs(g - w).max() < 1e-5
    # More frames than one in a call: the frame graph loops over them, the same result.
    looped, looped_state = f32(mag, state)
    assert np.abs(looped - got).max() == 0.0
    assert all(np.array_equal(a, b) for a, b in zip(looped_state, got_state, strict=True))


def test_int8_frame_graph_is_close_and_quantizes_the_first_layer_per_column(graphs):
    whole, f32, int8 = graphs
    assert int8.weights == "int8" and int8.digest == whole.digest == f32.digest
    mag = _frames(1, 200, seed=7)
    want, _ = whole(mag)
    got, _ = int8(mag)
    # An untrained model's masks hover near 0.5, where int8 products move them most (a
    # trained one: see the shipped model's test); a deep filter's random coefficients span
    # [-1, 1], twice the range.
    error = np.abs(got - want)
    assert error[..., :F].mean() < 0.04 and error[..., :F].max() < 0.25
    assert error[..., F:].size == 0 or (error[..., F:].mean() < 0.08
                                        and error[..., F:].max() < 0.5)
    graph = onnx.load(str(int8.path)).graph
    dims = {t.name: list(t.dims) for t in graph.initializer}
    arrays = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    assert not [n for n in graph.node if n.op_type in ("MatMul", "Gemm")]  # no float product
    # The first layer's input product (it reads the features): one scale per output column,
    # 7-bit weights (no int16 saturation on AVX2), and the matrix's columns come back. The
    # product runs with one scale (1) and a Mul by the columns' scales after it, a GRU's input
    # bias folded into the product (an LSTM adds the recurrent product first;
    # _column_scales_after).
    feature_width = F * (int8.lookahead + 1)
    (first,) = [n for n in graph.node if n.op_type == "DynamicQuantizeMatMul"
                and dims.get(n.input[1], [0])[0] == feature_width]
    (columns,) = [n for n in graph.node if first.output[0] in n.input]
    assert columns.op_type == "Mul" and arrays[first.input[2]] == 1.0
    assert (len(first.input) == 5) == (int8.cell == "gru")
    levels, scale = arrays[first.input[1]], arrays[columns.input[1]]
    gates, hidden = (4 if int8.cell == "lstm" else 3), int8.hidden
    assert levels.shape == (feature_width, gates * hidden) and scale.shape == (gates * hidden,)
    assert np.abs(levels).max() == COLUMN_INT8_MAX
    assert (np.abs(levels).max(axis=0) == COLUMN_INT8_MAX).all()  # every column's range used
    # Every other product (recurrent, second layer, dense, the deep filter's) has one scale
    # per matrix.
    int8_products = [n for n in graph.node if n.op_type == "MatMulInteger"]
    assert len(int8_products) == 2 * int8.layers + (int8.deep_filter is not None)
    int8_matrices = [t for t in graph.initializer
                     if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 2]
    assert sum(np.prod(t.dims) for t in int8_matrices) == (
        feature_width * gates * hidden
        + (2 * int8.layers - 1) * gates * hidden * hidden + hidden * int8.output_size)


def test_per_column_int8_recovers_the_matrix():
    # A product with columns of very different size: each keeps its relative precision.
    rng = np.random.default_rng(0)
    matrix = (rng.standard_normal((40, 6)) * np.array([1e-3, 1e-2, 0.1, 1, 10, 0])).astype(
        np.float32)
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 40])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 6])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="first")], "g", [x], [y],
        [numpy_helper.from_array(matrix, "w")])
    proto = _int8_columns(helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)]), {"first"})
    assert [n.op_type for n in proto.graph.node] == ["DynamicQuantizeMatMul"]
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    inputs = rng.random((1, 40)).astype(np.float32)
    got, want = session.run(None, {"x": inputs})[0], inputs @ matrix
    error = np.abs(got - want) / np.maximum(np.abs(want), 1e-12)
    assert (error[0, :5] < 0.05).all() and got[0, 5] == 0.0


def test_bound_frames_equal_the_model_and_hand_out_copies(graphs):
    _, _, int8 = graphs
    bound = BoundFrames(int8)
    mag = _frames(1, 12, seed=5)
    rng = np.random.default_rng(1)
    start = tuple((rng.standard_normal(s.shape) * 0.5).astype(np.float32)
                  for s in int8.initial_state(1))
    want, state = [], start
    for t in range(12):
        mask, state = int8.run(np.ascontiguousarray(mag[:, t : t + 1]), state)
        want.append(mask[0, 0])
    # Frames 0-4 bound, 5-7 through the model (its state is copied in again), 8-11 bound.
    got, state = [], start
    for t in range(12):
        frame = np.ascontiguousarray(mag[:, t : t + 1])
        if 5 <= t < 8:
            mask, state = int8.run(frame, state)
            got.append(mask[0, 0])
        else:
            mask, state = bound.run(frame, state)
            got.append(mask[0, 0])
    assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    assert got[0] is not got[1] and not np.shares_memory(got[-1], bound.mask)
    with pytest.raises(ValueError, match="one-frame graph"):
        BoundFrames(graphs[0])


def test_bound_stream_recovers_when_the_network_overflows(graphs, white_noise, caplog):
    # 1e30 samples overflow the squared magnitude (float32): the features and the network's
    # output turn NaN, those frames pass through, and the state restarts from zero.
    whole, _, _ = graphs
    stream = OnnxStreamingEnhancer.load(whole.path)
    assert stream._bound is not None
    speech = 0.1 * white_noise(3200, seed=2)
    pieces = [stream.process(speech), stream.process(np.full(800, 1e30, np.float32))]
    with caplog.at_level(logging.WARNING):
        pieces += [stream.process(speech[i : i + 160]) for i in range(0, 3200, 160)]
    assert "network produced NaN" in caplog.text
    assert all(np.isfinite(x).all() for x in (*stream.state, *pieces))
    assert np.abs(pieces[-1]).max() > 0


def test_stream_runs_single_frame_hops_with_int8(graphs, white_noise):
    whole, _, int8 = graphs
    audio = 0.1 * white_noise(8000, seed=3)
    exact = OnnxStreamingEnhancer.load(whole.path, precision="float32")
    fast = OnnxStreamingEnhancer.load(whole.path)  # auto: the int8 graph beside it
    assert exact.frame_model is None and fast.frame_model.path == int8.path
    a, b = exact.enhance(audio, chunk=160), fast.enhance(audio, chunk=160)
    assert 10 * np.log10(np.sum(a**2) / np.sum((a - b) ** 2)) > 25
    # With the int8 graph every frame runs it, so the output does not depend on the chunks.
    fast.reset()
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.choice(np.arange(1, len(audio)), size=9, replace=False))
    pieces = [fast.process(c) for c in np.split(audio, cuts)] + [fast.flush()]
    assert np.abs(np.concatenate(pieces)[fast.latency :] - b).max() < 1e-6
    # The frame graph given as the model runs as given, frame by frame (enhance --model it).
    given = OnnxEnhancer.load(int8.path)
    assert given.model.frame_graph and given.frame_model is None
    assert np.abs(given(audio, 16000) - b).max() < 1e-6
    # A file enhancer loads no frame graph: the output torch gives (its own int8 graph is
    # another file, tests/test_onnx_int8.py).
    offline = OnnxEnhancer.load(whole.path, precision="auto")
    assert offline.frame_model is None and offline.model.path == whole.path
    assert np.array_equal(offline(audio, 16000), OnnxEnhancer(whole)(audio, 16000))
    # A file enhancer given the frame graph: frame by frame through it, the stream's output.
    assert np.abs(OnnxEnhancer(whole, frame_model=int8)(audio, 16000) - b).max() < 1e-5


def test_precision_choices(tmp_path):
    # Missing and stale graphs: tests/test_onnx_int8.py::test_missing_or_stale_graph_beside.
    model = _tiny("gru", 1)
    whole = OnnxMaskModel(export_onnx(model, StftConfig(), tmp_path / "m.onnx"))
    # Its own graph in float32: auto takes it, int8 does not.
    export_onnx_frame(model, StftConfig(), frame_graph_path(whole.path), int8=False)
    assert load_frame_graph(whole, "auto").weights == "float32"
    with pytest.raises(OnnxModelError, match="float32 weights, not int8"):
        load_frame_graph(whole, "int8")
    # Its own graph: taken by auto and int8, never by float32.
    export_onnx_frame(model, StftConfig(), frame_graph_path(whole.path))
    assert load_frame_graph(whole, "auto").weights == "int8"
    assert load_frame_graph(whole, "int8").digest == whole.digest
    assert load_frame_graph(whole, "float32") is None
    # The frame graph given as the model: it runs everything itself; float32 cannot be had.
    frame = OnnxMaskModel(frame_graph_path(whole.path))
    assert load_frame_graph(frame, "auto") is None
    with pytest.raises(OnnxModelError, match="int8 graph; for float32 give the whole model"):
        load_frame_graph(frame, "float32")


def test_digest_tells_weights_apart(tmp_path):
    a = export_onnx(_tiny("gru", 0, seed=0), StftConfig(), tmp_path / "a.onnx")
    b = export_onnx(_tiny("gru", 0, seed=1), StftConfig(), tmp_path / "b.onnx")
    again = export_onnx(_tiny("gru", 0, seed=0), StftConfig(), tmp_path / "c.onnx")

    def digest(path: Path) -> str:
        return {p.key: p.value for p in onnx.load(str(path)).metadata_props}[META_DIGEST]

    assert digest(a) == digest(again) != digest(b)
    assert len(digest(a)) == 16


def test_export_leaves_train_mode_and_logging_alone(tmp_path, caplog):
    model = _tiny("gru", 0).train()
    with caplog.at_level(logging.DEBUG):
        export_onnx_frame(model, StftConfig(), tmp_path / "f.onnx")
    assert model.training
    assert not caplog.records  # the quantizer's advice and notes stay out of the user's log
    assert logging.root.manager.disable == logging.NOTSET


def test_shipped_frame_graph_belongs_to_the_shipped_model():
    from speechmask.audio import read_audio
    from speechmask.metrics import si_sdr_db

    whole = OnnxMaskModel(default_onnx_path())
    frame = load_frame_graph(whole, "int8")
    assert frame.weights == "int8" and frame.digest == whole.digest
    samples = Path(__file__).parents[1] / "data/samples"
    noisy = read_audio(samples / "cafe_noisy.flac")[0][0]
    clean = read_audio(samples / "cafe_clean.flac")[0][0]
    exact = OnnxStreamingEnhancer.load(precision="float32").enhance(noisy)
    fast = OnnxStreamingEnhancer.load().enhance(noisy)
    # Measured 2026-12-07: the difference lies 44 dB below the output; SI-SDR -0.01 dB.
    assert 10 * np.log10(np.sum(exact**2) / np.sum((fast - exact) ** 2)) > 30
    assert abs(si_sdr_db(clean, fast) - si_sdr_db(clean, exact)) < 0.1


def _stream_cli(*args: str, pcm: bytes) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "speechmask", "stream", "--rate", "16000",
                           *args], input=pcm, capture_output=True, timeout=120)


def test_stream_cli_precision(tmp_path):
    pcm = (np.random.default_rng(4).standard_normal(8000) * 3000).astype("<i2")
    # The shipped model streams with its int8 graph by default, and says so.
    result = _stream_cli(pcm=pcm.tobytes())
    assert result.returncode == 0 and "int8 hops" in result.stderr.decode()
    want = OnnxStreamingEnhancer.load().enhance(pcm / 32768.0)
    got = np.frombuffer(result.stdout, "<i2") / 32768.0
    assert np.abs(got - np.clip(want, -1, 1)).max() <= 1.5 / 32768
    result = _stream_cli("--precision", "float32", pcm=pcm.tobytes())
    assert result.returncode == 0 and "float32 hops" in result.stderr.decode()
    # Insisting on int8 for a model without that graph: one line naming the file and the fix.
    export_onnx(_tiny("gru", 1), StftConfig(), tmp_path / "own.onnx")
    result = _stream_cli("--model", str(tmp_path / "own.onnx"), "--precision", "int8",
                         pcm=pcm.tobytes())
    err = result.stderr.decode().strip().splitlines()
    assert result.returncode != 0 and not result.stdout and len(err) == 1
    assert "own.stream.onnx" in err[0] and "speechmask export" in err[0]
    result = _stream_cli("--model", str(tmp_path / "own.onnx"), pcm=pcm.tobytes())
    assert result.returncode == 0 and "float32 hops" in result.stderr.decode()
    # A torch checkpoint has no int8 graph: saying so beats silently streaming in float32.
    from speechmask import checkpoint as ckpt

    own_pt = ckpt.save(tmp_path / "own.pt", ckpt.model_payload(_tiny("gru", 1), StftConfig()))
    result = _stream_cli("--model", str(own_pt), "--precision", "int8", pcm=pcm.tobytes())
    err = result.stderr.decode().strip().splitlines()
    assert result.returncode != 0 and len(err) == 1 and "--precision int8" in err[0]


def _enhance_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "speechmask", "enhance", "-q", *args],
                          capture_output=True, timeout=120)


def test_enhance_cli_precision(tmp_path, white_noise):
    import soundfile as sf

    from speechmask.audio import read_audio

    audio = 0.1 * white_noise(16000, seed=6)
    sf.write(tmp_path / "in.wav", audio, 16000, subtype="FLOAT")
    # Default (auto): the shipped model.int8.onnx, as int8 gives; float32: the whole float32
    # graph, as the Python API gives by default.
    for precision, enhancer in ((None, OnnxEnhancer.load(precision="int8")),
                                ("int8", OnnxEnhancer.load(precision="int8")),
                                ("float32", OnnxEnhancer.load())):
        out = tmp_path / f"{precision}.wav"
        extra = ("--precision", precision) if precision else ()
        result = _enhance_cli(str(tmp_path / "in.wav"), "-o", str(out), "--subtype", "FLOAT",
                              *extra)
        assert result.returncode == 0, result.stderr.decode()
        assert np.abs(read_audio(out)[0][0] - enhancer(audio, 16000)).max() < 1e-6
    assert not np.array_equal(read_audio(tmp_path / "None.wav")[0],
                              read_audio(tmp_path / "float32.wav")[0])
    # int8 with torch: one line naming the flag, and no output written.
    result = _enhance_cli(str(tmp_path / "in.wav"), "-o", str(tmp_path / "t.wav"),
                          "--backend", "torch", "--precision", "int8")
    err = result.stderr.decode().strip().splitlines()
    assert result.returncode != 0 and len(err) == 1 and "--precision int8" in err[0]
    assert not (tmp_path / "t.wav").exists()


@pytest.mark.parametrize("cell, layers", [("lstm", 2), ("gru", 1)])
def test_frame_graphs_of_either_state_layout_run_alike(tmp_path, white_noise, cell, layers):
    # Exports before 2026-12-08 stack the RNN state ([layers, B, H]); since, each layer's is an
    # input and output of its own. Both run, through run() and a stream's bound hops, alike.
    from speechmask.onnx_backend import _frame_step, _metadata, _traced, _write_with_metadata

    model = _tiny(cell, 1, hidden=16, layers=layers)
    whole = OnnxMaskModel(export_onnx(model, StftConfig(), tmp_path / "m.onnx"))
    new = OnnxMaskModel(export_onnx_frame(model, StftConfig(), tmp_path / "new.onnx",
                                          int8=False))
    meta = {**_metadata(model, StftConfig()), "speechmask_graph": "frame",
            "speechmask_weights": "float32"}
    old = OnnxMaskModel(_write_with_metadata(
        _traced(_frame_step(model), model, StftConfig(), frames=1), meta, tmp_path / "old.onnx"))
    rnn = ["h", "c"] if cell == "lstm" else ["h"]
    assert [i.name for i in old.session.get_inputs()] == ["mag", *rnn, "history"]
    assert [i.name for i in new.session.get_inputs()] == [
        "mag", *(f"{name}{layer}" for name in rnn for layer in range(layers)), "history"]
    mag = _frames(2, 12, seed=5)
    (a, a_state), (b, b_state) = old(mag), new(mag)
    assert np.array_equal(a, b) and all(np.array_equal(x, y) for x, y in
                                        zip(a_state, b_state, strict=True))
    assert [s.shape for s in b_state] == [s.shape for s in whole.initial_state(2)]
    audio = 0.1 * white_noise(4000, seed=8)
    outputs = [OnnxStreamingEnhancer(whole, frame_model=graph).enhance(audio, chunk=160)
               for graph in (old, new)]
    assert np.array_equal(*outputs)
