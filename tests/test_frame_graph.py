"""benchmarks.frame_graph: its variants of a one-frame graph are the graph (state per layer, to
the bit) and its products; the report runs end to end on tiny budgets."""

import onnx
import pytest
import torch

from benchmarks import frame_graph
from speechmask.features import StftConfig
from speechmask.model import MaskNet, ModelConfig
from speechmask.onnx_backend import export_onnx_frame

F = 257


@pytest.fixture(scope="module", params=[("gru", 1, 32), ("lstm", 0, 0), ("gru", 0, 0)])
def frame_graph_file(request, tmp_path_factory):
    cell, lookahead, df_bins = request.param
    torch.manual_seed(0)
    model = MaskNet(ModelConfig(cell=cell, hidden=24, layers=2, lookahead=lookahead,
                                df_bins=df_bins))
    model.set_normalization(torch.randn(F) - 8.0, torch.rand(F) * 3.0 + 1.0)
    folder = tmp_path_factory.mktemp("fg")
    return export_onnx_frame(model.eval(), StftConfig(), folder / "m.stream.onnx")


def test_state_per_layer_gives_the_graphs_outputs(frame_graph_file):
    graph = onnx.load(str(frame_graph_file))
    split = frame_graph.state_per_layer(graph)
    frame_graph.check_state_per_layer(graph, split)  # raises on any difference
    names = [i.name for i in split.graph.input]
    assert "h" not in names and "c" not in names
    layers = 2 * (2 if any(i.name == "c" for i in graph.graph.input) else 1)
    assert len(split.graph.input) == len(graph.graph.input) - (layers // 2) + layers
    assert len(split.graph.node) < len(graph.graph.node)


def test_products_only_keeps_the_int8_products(frame_graph_file):
    products = frame_graph.products_only(onnx.load(str(frame_graph_file)))
    kinds = {n.op_type for n in products.graph.node}
    assert kinds <= {*frame_graph.PRODUCTS, "DynamicQuantizeLinear"}
    assert sum(n.op_type in frame_graph.PRODUCTS for n in products.graph.node) >= 4


def test_report_prints_a_row_per_variant(frame_graph_file, capsys):
    frame_graph.main(["--model", str(frame_graph_file), "--rounds", "2", "--calls", "3"])
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [line.split(" | ")[0] for line in table[1:]] == [
        "| as exported", "| state per layer", "| products only"]
