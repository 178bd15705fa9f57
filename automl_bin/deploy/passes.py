"""Graph rewrites that fold per-channel affine maps into the convolution before them.

Both rely on one fact: batch norm in eval mode is ``y = x·s + t`` per channel, and a convolution's
output channel ``c`` may be multiplied by ``s_c`` and shifted by ``t_c`` after the sum without
changing anything else. They apply only where the convolution's output feeds that batch norm and
nothing else (a value read twice must stay as it is).

- `merge_binary_scales` (at export): a binary convolution's per-channel weight scale ``α`` moves
  into the batch norm that follows, so the file stores the layer as bits alone.
- `fold_batchnorm` (at load): the engine runs a conv + batch norm pair as one conv whose
  epilogue applies ``s`` and ``t``; the batch-norm node disappears.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from automl_bin.deploy.graph import Graph, Node

__all__ = ["merge_binary_scales", "fold_batchnorm"]


def _sole_batchnorm(graph: Graph, node: Node, users: Mapping[str, list[Node]]) -> Node | None:
    readers = users.get(node.id, [])
    if node.op != "conv" or graph.output == node.id or len(readers) != 1:
        return None
    return readers[0] if readers[0].op == "batchnorm" else None


def merge_binary_scales(graph: Graph, tensors: dict[str, np.ndarray]) -> Graph:
    """Move each binary conv's ``scale`` into the batch norm that alone reads it (in place)."""
    users = graph.consumers()
    nodes = []
    for node in graph.nodes:
        bn = _sole_batchnorm(graph, node, users)
        if (bn is not None and node.attrs.get("weight") == "binary" and "scale" in node.tensors
                and "bias" not in node.tensors):
            alpha = tensors.pop(node.tensors["scale"]).astype(np.float64)
            name = bn.tensors["scale"]
            tensors[name] = (tensors[name].astype(np.float64) * alpha).astype(np.float32)
            roles = {k: v for k, v in node.tensors.items() if k != "scale"}
            node = Node(node.id, node.op, node.inputs, {**node.attrs, "scale_merged_into": bn.id},
                        roles, node.source)
        nodes.append(node)
    return Graph(input_shape=graph.input_shape, nodes=nodes, output=graph.output)


def fold_batchnorm(graph: Graph) -> Graph:
    """Fold every batch norm that alone reads a conv into it.

    The folded conv takes the batch norm's id (its readers are unchanged) and gains the
    engine-only tensor roles ``bn_scale`` and ``bn_shift`` (names of the batch norm's tensors).
    """
    users = graph.consumers()
    nodes = []
    absorbed = set()
    for node in graph.nodes:
        if node.id in absorbed:
            continue
        bn = _sole_batchnorm(graph, node, users)
        if bn is not None:
            roles = {**node.tensors, "bn_scale": bn.tensors["scale"],
                     "bn_shift": bn.tensors["shift"]}
            node = Node(bn.id, node.op, node.inputs, node.attrs, roles, node.source)
            absorbed.add(bn.id)
        nodes.append(node)
    return Graph(input_shape=graph.input_shape, nodes=nodes, output=graph.output)
