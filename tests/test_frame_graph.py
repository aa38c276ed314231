"""benchmarks.frame_graph: its variants of a one-frame graph are the graph (an older layout
relaid as exported now, within float32 rounding) and its products; the report runs end to end
on tiny budgets."""

import onnx
import pytest
import torch

from benchmarks import frame_graph
from speechmask.features import StftConfig
from speechmask.model import MaskNet, ModelConfig
from speechmask.onnx_backend import (
    _frame_step,
    _metadata,
    _quantized,
    _traced,
    _write_with_metadata,
    export_onnx_frame,
)

F = 257


@pytest.fixture(scope="module", params=[("gru", 1, 32), ("lstm", 0, 0), ("gru", 0, 0)])
def graphs(request, tmp_path_factory):
    """``(graph as exported, the same laid out as exports before 2026-12-08)`` files."""
    cell, lookahead, df_bins = request.param
    torch.manual_seed(0)
    model = MaskNet(ModelConfig(cell=cell, hidden=24, layers=2, lookahead=lookahead,
                                df_bins=df_bins)).eval()
    model.set_normalization(torch.randn(F) - 8.0, torch.rand(F) * 3.0 + 1.0)
    folder = tmp_path_factory.mktemp("fg")
    # The older layout: the stacked state, the per-column product's scales inside it.
    old = _quantized(_traced(_frame_step(model), model, StftConfig(), frames=1),
                     first_rows=F * (lookahead + 1))
    meta = {**_metadata(model, StftConfig()), "speechmask_graph": "frame",
            "speechmask_weights": "int8"}
    return (export_onnx_frame(model, StftConfig(), folder / "m.stream.onnx"),
            _write_with_metadata(old, meta, folder / "old.stream.onnx"))


def test_relaid_is_the_export_of_now(graphs):
    new, old = (onnx.load(str(path)) for path in graphs)
    relaid = frame_graph.relaid(old)
    frame_graph.check_close(old, relaid)  # raises on a difference beyond float32 rounding
    names = [i.name for i in relaid.graph.input]
    assert "h" not in names and "c" not in names and "h1" in names
    assert names == [i.name for i in new.graph.input]
    assert len(relaid.graph.node) < len(old.graph.node)
    assert frame_graph.relaid(new) is None  # nothing to relay out


def test_products_only_keeps_the_int8_products(graphs):
    products = frame_graph.products_only(onnx.load(str(graphs[0])))
    kinds = {n.op_type for n in products.graph.node}
    assert kinds <= {*frame_graph.PRODUCTS, "DynamicQuantizeLinear"}
    assert sum(n.op_type in frame_graph.PRODUCTS for n in products.graph.node) >= 4


@pytest.mark.parametrize("which, variants", [
    (0, ["as given", "products only"]),
    (1, ["as given", "relaid as exported now", "products only"])])
def test_report_prints_a_row_per_variant(graphs, which, variants, capsys):
    frame_graph.main(["--model", str(graphs[which]), "--rounds", "2", "--calls", "3"])
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [line.split(" | ")[0][2:] for line in table[1:]] == variants
