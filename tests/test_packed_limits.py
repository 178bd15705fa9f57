"""Packed files with a valid checksum but a hostile graph are refused at load, before anything
is allocated: tensor-free ops (cat, pad) cannot declare terabytes (issue 19 item 9)."""

from __future__ import annotations

import pytest

from automl_bin.deploy import PackedFileError, load
from automl_bin.deploy.format import write_packed
from automl_bin.deploy.graph import MAX_LIVE_ELEMENTS, MAX_VALUE_ELEMENTS


def _node(i: int, op: str, inputs: list[str], **attrs) -> dict:
    return {"id": f"n{i}", "op": op, "inputs": inputs, "attrs": attrs, "tensors": {}}


def _write(tmp_path, nodes: list[dict], input_shape=(1, 6, 6)):
    path = tmp_path / "hostile.abin"
    graph = {"input_shape": list(input_shape), "nodes": nodes, "output": nodes[-1]["id"]}
    write_packed(path, {"graph": graph}, {})  # the project's own writer: a valid SHA-256
    return path


def _cat_doublings(count: int) -> list[dict]:
    nodes, prev = [], "input"
    for i in range(count):
        nodes.append(_node(i, "cat", [prev, prev]))
        prev = f"n{i}"
    return nodes


def test_small_graph_of_the_same_ops_loads(tmp_path):
    net = load(_write(tmp_path, _cat_doublings(3) + [_node(9, "pad", ["n2"], pad=[1, 1], value=0)]))
    assert net.num_outputs == 8


@pytest.mark.parametrize("nodes,where", [
    (_cat_doublings(40), "node 'n"),                                        # 2**40 channels
    ([_node(0, "pad", ["input"], pad=[10**6] * 4, value=0.0)], "node 'n0'"),  # 43.7 TiB a batch
    ([_node(0, "relu", ["input"])], "the input"),                           # declared input
])
def test_oversized_values_are_refused_at_load(tmp_path, nodes, where):
    shape = (1, 6, 6) if where != "the input" else (3, 100_000, 100_000)
    with pytest.raises(PackedFileError) as err:
        load(_write(tmp_path, nodes, shape))
    msg = str(err.value)
    assert "inconsistent network graph" in msg and where in msg
    assert f"{MAX_VALUE_ELEMENTS:,}" in msg and "crafted or damaged" in msg
    assert "Export the run again" in msg and "\n" not in msg


def test_too_many_live_values_are_refused_at_load(tmp_path):
    # 12 values of 25M numbers, none ever read (so never dropped): each fits, all together not
    nodes = [_node(i, "pad", ["input"], pad=[2497, 2497, 2497, 2497], value=0.0)
             for i in range(12)]
    with pytest.raises(PackedFileError, match=f"alive at once, more than the engine's limit of "
                                              f"{MAX_LIVE_ELEMENTS:,}"):
        load(_write(tmp_path, nodes))
