"""The whole graph with int8 recurrences (export_onnx_int8, ``enhance --precision int8``): the
float32 graph's masks within int8 rounding, chunk-independent, and loaded only where it
belongs."""

import logging
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from speechmask.features import StftConfig
from speechmask.model import MaskNet, ModelConfig
from speechmask.onnx_backend import (
    COLUMN_INT8_MAX,
    META_DIGEST,
    OnnxEnhancer,
    OnnxMaskModel,
    OnnxModelError,
    OnnxStreamingEnhancer,
    default_onnx_path,
    export_onnx,
    export_onnx_frame,
    export_onnx_int8,
    frame_graph_path,
    int8_graph_path,
    load_frame_graph,
    load_int8_graph,
)

F = 257


def _tiny(cell: str, lookahead: int = 0, df_bins: int = 0, seed: int = 0) -> MaskNet:
    torch.manual_seed(seed)
    model = MaskNet(ModelConfig(cell=cell, hidden=32, layers=2, n_freqs=F, lookahead=lookahead,
                                df_bins=df_bins, df_order=max(3, lookahead + 1)))
    model.set_normalization(torch.randn(F) - 8.0, torch.rand(F) * 3.0 + 1.0)
    if df_bins:  # random coefficients instead of a new filter's zeros
        torch.nn.init.normal_(model.df_head.weight, std=0.1)
    return model.eval()


def _mag(batch: int, frames: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    level = np.exp(rng.standard_normal((batch, frames, 1)))  # loud and quiet frames
    return (np.abs(rng.standard_normal((batch, frames, F))) * level).astype(np.float32)


@pytest.fixture(scope="module", params=[("gru", 0, 0), ("lstm", 0, 0), ("gru", 1, 16),
                                        ("lstm", 2, 16)])
def graphs(request, tmp_path_factory):
    """``(float32 whole graph, its int8 graph)`` of one tiny model, side by side."""
    folder = tmp_path_factory.mktemp("int8")
    whole = export_onnx(_tiny(*request.param), StftConfig(), folder / "m.onnx")
    int8 = export_onnx_int8(whole)
    assert int8 == int8_graph_path(whole) == folder / "m.int8.onnx"
    return OnnxMaskModel(whole), OnnxMaskModel(int8)


def test_only_the_recurrent_products_are_int8(graphs):
    whole, int8 = graphs
    graph = onnx.load(str(int8.path)).graph
    nodes = [n.op_type for n in graph.node]
    assert "GRU" not in nodes and "LSTM" not in nodes and nodes.count("Scan") == whole.layers
    # Each layer's step multiplies its state by the layer's recurrent matrix, stored int8.
    gates = 4 if whole.cell == "lstm" else 3
    stored = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert [list(t.dims) for t in stored] == [[whole.hidden, gates * whole.hidden]] * whole.layers
    # 7 bits, each matrix's range used: no int16 saturation on AVX2 (COLUMN_INT8_MAX).
    assert all(np.abs(onnx.numpy_helper.to_array(t)).max() == COLUMN_INT8_MAX for t in stored)
    for scan in (n for n in graph.node if n.op_type == "Scan"):
        body = [n.op_type for n in onnx.helper.get_attribute_value(scan.attribute[0]).node]
        assert body.count("DynamicQuantizeMatMul") == 1 and "MatMul" not in body
    # The same interface, metadata and digest: the int8 graph says what it is.
    assert (int8.cell, int8.layers, int8.hidden, int8.lookahead, int8.output_size) == (
        whole.cell, whole.layers, whole.hidden, whole.lookahead, whole.output_size)
    assert int8.digest == whole.digest and int8.weights == "int8" and not int8.frame_graph
    assert "int8" in repr(int8)


@pytest.mark.parametrize("seed", [0, 1])
def test_masks_within_int8_rounding_of_float32(graphs, seed):
    whole, int8 = graphs
    mag = _mag(2, 60, seed)
    (want, want_state), (got, got_state) = whole(mag), int8(mag)
    # A tiny model's masks move by at most ~3e-4 (measured); an int8 step off by one level
    # of a 32-wide state moves them ~1e-3.
    assert 0 < np.abs(got - want).max() < 5e-3
    for a, b in zip(want_state, got_state, strict=True):  # an LSTM's c grows past 30 here
        assert a.shape == b.shape
        np.testing.assert_allclose(b, a, rtol=5e-3, atol=2e-2)
    np.testing.assert_allclose(int8.offline(mag), whole.offline(mag), atol=5e-3)


def test_chunks_carrying_state_equal_one_call(graphs):
    _, int8 = graphs
    mag = _mag(1, 50, seed=3)
    once, state = int8(mag)
    rng = np.random.default_rng(4)
    cuts = np.sort(rng.choice(np.arange(1, 50), size=5, replace=False))
    pieces, carried = [], None
    for part in np.split(mag, cuts, axis=1):
        mask, carried = int8(part, carried)
        pieces.append(mask)
    # The float32 input products over fewer frames may round in the last bit; nothing more.
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), once, atol=1e-5)
    for a, b in zip(state, carried, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_converts_only_a_whole_float32_graph(graphs, tmp_path):
    whole, int8 = graphs
    with pytest.raises(OnnxModelError, match=r"m\.int8\.onnx: not a whole float32"):
        export_onnx_int8(int8.path, tmp_path / "again.onnx")
    frame = export_onnx_frame(_tiny("gru"), StftConfig(), tmp_path / "f.stream.onnx")
    with pytest.raises(OnnxModelError, match="not a whole float32"):
        export_onnx_int8(frame, tmp_path / "f.int8.onnx")
    assert not (tmp_path / "again.onnx").exists() and not (tmp_path / "f.int8.onnx").exists()


def _write_frame_graph(model: MaskNet, whole: Path) -> None:
    export_onnx_frame(model, StftConfig(), frame_graph_path(whole))


def _write_int8_graph(model: MaskNet, whole: Path) -> None:
    export_onnx_int8(export_onnx(model, StftConfig(), whole.with_name("other.onnx")),
                     int8_graph_path(whole))


@pytest.mark.parametrize("load, suffix, write", [
    (load_frame_graph, "stream", _write_frame_graph), (load_int8_graph, "int8", _write_int8_graph)])
def test_missing_or_stale_graph_beside(tmp_path, caplog, load, suffix, write):
    whole = OnnxMaskModel(export_onnx(_tiny("gru", 1), StftConfig(), tmp_path / "m.onnx"))
    # Nothing beside it: auto runs float32, int8 is an error naming the file and the fix.
    assert load(whole, "auto") is None
    with pytest.raises(OnnxModelError, match=rf"m\.{suffix}\.onnx: no int8 graph.*speechmask "
                                             r"export MODEL --onnx"):
        load(whole, "int8")
    with pytest.raises(ValueError, match="precision must be one of"):
        load(whole, "fp16")
    # Beside it, the graph of other weights (a stale export): auto warns, int8 refuses.
    write(_tiny("gru", 1, seed=1), whole.path)
    with caplog.at_level(logging.WARNING):
        assert load(whole, "auto") is None
    assert "other weights" in caplog.text
    with pytest.raises(OnnxModelError, match="other weights"):
        load(whole, "int8")


def test_load_int8_graph_choices(tmp_path):
    model = _tiny("gru", 1)
    whole = OnnxMaskModel(export_onnx(model, StftConfig(), tmp_path / "m.onnx"))
    # A one-frame graph where the whole one belongs: not taken either.
    export_onnx_frame(model, StftConfig(), int8_graph_path(whole.path))
    with pytest.raises(OnnxModelError, match="not the whole int8 graph"):
        load_int8_graph(whole, "int8")
    # Its own: taken by auto and int8, never by float32.
    export_onnx_int8(whole.path)
    assert load_int8_graph(whole, "auto").weights == "int8"
    assert load_int8_graph(whole, "int8").digest == whole.digest
    assert load_int8_graph(whole, "float32") is None
    # The int8 graph given as the model: it runs as given; float32 cannot be had.
    int8 = OnnxMaskModel(int8_graph_path(whole.path))
    assert load_int8_graph(int8, "auto") is None and load_int8_graph(int8, "int8") is None
    with pytest.raises(OnnxModelError, match="int8 graph; for float32 give the whole model"):
        load_int8_graph(int8, "float32")


def test_enhancers_run_the_int8_graph(tmp_path, white_noise):
    model = _tiny("gru", 1, df_bins=16)
    whole = export_onnx(model, StftConfig(), tmp_path / "m.onnx")
    export_onnx_int8(whole)
    audio = 0.1 * white_noise(16000, seed=5)
    exact, fast = OnnxEnhancer.load(whole), OnnxEnhancer.load(whole, precision="int8")
    assert fast.model.weights == "int8" and fast.frame_model is None
    assert OnnxEnhancer.load(whole, precision="auto").model.weights == "int8"
    assert OnnxEnhancer.load(whole, precision="float32").model.weights == "float32"
    for rate in (16000, 44100):  # the whole signal, and the block pipeline above 16 kHz
        a, b = exact(audio, rate), fast(audio, rate)
        assert a.shape == b.shape and 0 < np.abs(a - b).max()
        assert 10 * np.log10(np.sum(a**2) / np.sum((a - b) ** 2)) > 30
    # A stream given the int8 graph as its model runs it (no frame graph beside that one).
    stream = OnnxStreamingEnhancer.load(int8_graph_path(whole))
    assert stream.frame_model is None and stream.model.weights == "int8"
    np.testing.assert_allclose(stream.enhance(audio), fast(audio, 16000), atol=1e-4)


def test_shipped_int8_graph_belongs_to_the_shipped_model():
    from speechmask.audio import read_audio
    from speechmask.metrics import si_sdr_db

    whole = OnnxMaskModel(default_onnx_path())
    int8 = load_int8_graph(whole, "int8")
    assert int8.path == int8_graph_path(default_onnx_path()) and int8.digest == whole.digest
    assert {p.key: p.value for p in onnx.load(str(int8.path)).metadata_props}[META_DIGEST] == \
        whole.digest
    samples = Path(__file__).parents[1] / "data/samples"
    noisy = read_audio(samples / "cafe_noisy.flac")[0][0]
    clean = read_audio(samples / "cafe_clean.flac")[0][0]
    exact = OnnxEnhancer.load()(noisy, 16000)
    fast = OnnxEnhancer.load(precision="int8")(noisy, 16000)
    # Measured 2026-12-08: the difference lies 48 dB below the output; SI-SDR -0.0003 dB.
    assert 10 * np.log10(np.sum(exact**2) / np.sum((fast - exact) ** 2)) > 40
    assert abs(si_sdr_db(clean, fast) - si_sdr_db(clean, exact)) < 0.02
    assert frame_graph_path(default_onnx_path()).is_file()  # the stream's, a different file
