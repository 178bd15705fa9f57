"""The network graph a packed file describes, and its validation by shape inference.

A `Graph` is a list of `Node` in execution order; each node reads the values of earlier nodes
(``"input"`` is the network input) and produces the value named by its ``id``. Parameters live
in a separate tensor table (role -> tensor name per node), so the graph is plain JSON.

`infer_shapes` checks every node before anything runs: known op, well-typed attributes, inputs
defined earlier, tensors present with the exact shapes the attributes imply, and a positive
output size. A graph that passes cannot make the engine index out of bounds, which is what
keeps a crafted or damaged file (with a valid checksum) from crashing the compiled kernels.
It also cannot ask for absurd memory: no value may hold more than `MAX_VALUE_ELEMENTS` numbers
per sample, and the values alive at once no more than `MAX_LIVE_ELEMENTS` (tensor-free ops such
as ``cat`` and ``pad`` could otherwise declare terabytes from a few bytes of JSON).

Shapes exclude the batch dimension: ``(C, H, W)`` for feature maps, ``(F,)`` for vectors.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from attrs import field, frozen

from automl_bin.deploy.bits import words_for

__all__ = ["Node", "Graph", "GraphError", "INPUT", "infer_shapes", "infer_node",
           "conv_output_size", "peak_live_elements", "MAX_VALUE_ELEMENTS", "MAX_LIVE_ELEMENTS"]

#: the value name of the network input
INPUT = "input"

Shape = tuple[int, ...]

#: the most numbers one value may hold per sample: 2**26 (256 MiB of float32). A DARTS network
#: on 32x32 images needs about 150k, one on 224x224 images without a reducing stem about 10M.
MAX_VALUE_ELEMENTS = 2**26
#: the most numbers alive at once per sample while the engine runs: 2**28 (1 GiB of float32)
MAX_LIVE_ELEMENTS = 2**28


class GraphError(ValueError):
    """A graph or tensor table that is not self-consistent."""


@frozen
class Node:
    """One operation: ``op`` with JSON ``attrs`` on the values ``inputs``; its output is ``id``."""

    id: str
    op: str
    inputs: tuple[str, ...] = field(converter=tuple)
    attrs: Mapping[str, Any] = field(factory=dict)
    #: role (e.g. "bits", "scale", "weight") -> name in the tensor table
    tensors: Mapping[str, str] = field(factory=dict)
    #: the module path (or function) it was converted from, for messages and the layer table
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "op": self.op, "inputs": list(self.inputs),
                "attrs": dict(self.attrs), "tensors": dict(self.tensors), "source": self.source}

    @classmethod
    def from_dict(cls, data: Any) -> Node:
        if not isinstance(data, Mapping):
            raise GraphError(f"a node is {type(data).__name__}, not an object")
        try:
            node = cls(id=data["id"], op=data["op"], inputs=data["inputs"],
                       attrs=data.get("attrs", {}), tensors=data.get("tensors", {}),
                       source=data.get("source", ""))
        except (KeyError, TypeError) as exc:
            raise GraphError(f"a node lacks {exc} or has a wrong type") from exc
        if not (isinstance(node.id, str) and isinstance(node.op, str)
                and all(isinstance(i, str) for i in node.inputs)
                and isinstance(node.attrs, Mapping) and isinstance(node.tensors, Mapping)
                and all(isinstance(v, str) for v in node.tensors.values())
                and isinstance(node.source, str)):
            raise GraphError(f"node {data.get('id')!r} has fields of the wrong type")
        return node


@frozen
class Graph:
    """The whole network: input shape ``(C, H, W)``, nodes in execution order, output value."""

    input_shape: tuple[int, ...] = field(converter=lambda v: tuple(int(d) for d in v))
    nodes: tuple[Node, ...] = field(converter=tuple)
    output: str

    def to_dict(self) -> dict[str, Any]:
        return {"input_shape": list(self.input_shape), "output": self.output,
                "nodes": [n.to_dict() for n in self.nodes]}

    @classmethod
    def from_dict(cls, data: Any) -> Graph:
        if not isinstance(data, Mapping):
            raise GraphError("the graph is not an object")
        shape, nodes, output = data.get("input_shape"), data.get("nodes"), data.get("output")
        if (not isinstance(shape, list) or len(shape) != 3
                or not all(type(d) is int and d >= 1 for d in shape)):
            raise GraphError(f"input_shape {shape!r} is not [C, H, W] of positive integers")
        if not isinstance(nodes, list) or not isinstance(output, str):
            raise GraphError("the graph needs a list of nodes and an output name")
        return cls(input_shape=shape, nodes=[Node.from_dict(n) for n in nodes], output=output)

    def consumers(self) -> dict[str, list[Node]]:
        """For each value, the nodes that read it (the graph output counts as no node)."""
        users: dict[str, list[Node]] = {}
        for node in self.nodes:
            for name in node.inputs:
                users.setdefault(name, []).append(node)
        return users


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """torch's output length of a convolution or pooling window (floor mode)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


# ---------------------------------------------------------------------------------------------
# attribute and tensor checks
# ---------------------------------------------------------------------------------------------

class _Ctx:
    """Typed access to one node's attributes and tensors; failures name the node."""

    def __init__(self, node: Node, tensors: Mapping[str, np.ndarray]) -> None:
        self.node = node
        self.tensors = tensors

    def fail(self, message: str) -> GraphError:
        src = f", from {self.node.source}" if self.node.source else ""
        return GraphError(f"node {self.node.id!r} ({self.node.op}{src}): {message}")

    def int(self, key: str, minimum: int = 0) -> int:
        value = self.node.attrs.get(key)
        if type(value) is not int or value < minimum:
            raise self.fail(f"attribute {key!r} must be an integer >= {minimum}, got {value!r}")
        return value

    def pair(self, key: str, minimum: int = 0) -> tuple[int, int]:
        value = self.node.attrs.get(key)
        if (not isinstance(value, list) or len(value) != 2
                or not all(type(v) is int and v >= minimum for v in value)):
            raise self.fail(f"attribute {key!r} must be two integers >= {minimum}, got {value!r}")
        return value[0], value[1]

    def choice(self, key: str, options: Sequence[str]) -> str:
        value = self.node.attrs.get(key)
        if value not in options:
            raise self.fail(f"attribute {key!r} must be one of {list(options)}, got {value!r}")
        return value

    def number(self, key: str) -> float:
        value = self.node.attrs.get(key)
        if type(value) not in (int, float):
            raise self.fail(f"attribute {key!r} must be a number, got {value!r}")
        return float(value)

    def flag(self, key: str) -> bool:
        value = self.node.attrs.get(key)
        if type(value) is not bool:
            raise self.fail(f"attribute {key!r} must be true or false, got {value!r}")
        return value

    def roles(self, required: Sequence[str], optional: Sequence[str] = ()) -> None:
        have = set(self.node.tensors)
        missing = [r for r in required if r not in have]
        extra = sorted(have - set(required) - set(optional))
        if missing or extra:
            raise self.fail(f"tensors {sorted(have)} do not match the op (needs {list(required)}"
                            f", may have {list(optional)})")

    def tensor(self, role: str, shape: Shape, dtype: str = "float32") -> None:
        if role not in self.node.tensors:
            return
        name = self.node.tensors[role]
        array = self.tensors.get(name)
        if array is None:
            raise self.fail(f"tensor {name!r} ({role}) is not in the tensor table")
        if array.dtype.name != dtype or tuple(array.shape) != tuple(shape):
            raise self.fail(f"tensor {name!r} ({role}) is {array.dtype.name} {list(array.shape)}, "
                            f"expected {dtype} {list(shape)}")

    def arity(self, ins: Sequence[Shape], count: int | None = None, rank: int | None = None) -> None:
        if count is not None and len(ins) != count:
            raise self.fail(f"takes {count} input(s), got {len(ins)}")
        if not ins:
            raise self.fail("takes at least one input")
        if rank is not None and any(len(s) != rank for s in ins):
            raise self.fail(f"needs rank-{rank} inputs (C, H, W), got {[list(s) for s in ins]}")


def _window(c: _Ctx, shape: Shape, kernel: tuple[int, int], stride: tuple[int, int],
            padding: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int]:
    out = tuple(conv_output_size(shape[1 + a], kernel[a], stride[a], padding[a], dilation[a])
                for a in range(2))
    if min(out) < 1:
        raise c.fail(f"a {list(kernel)} window does not fit the {list(shape[1:])} input")
    return out  # type: ignore[return-value]


def _conv(c: _Ctx, ins: Sequence[Shape]) -> Shape:
    c.arity(ins, 1, 3)
    cin, cout, groups = c.int("in_channels", 1), c.int("out_channels", 1), c.int("groups", 1)
    kernel, stride = c.pair("kernel", 1), c.pair("stride", 1)
    padding, dilation = c.pair("padding", 0), c.pair("dilation", 1)
    weight = c.choice("weight", ("binary", "float"))
    c.choice("input", ("real", "sign", "sign_scaled"))
    if cin % groups or cout % groups:
        raise c.fail(f"{groups} groups do not divide {cin} input and {cout} output channels")
    if ins[0][0] != cin:
        raise c.fail(f"expects {cin} input channels, its input has {ins[0][0]}")
    per_group = cin // groups
    if weight == "binary":
        c.roles(["bits"], ["scale", "bias"])
        c.tensor("bits", (words_for(cout * kernel[0] * kernel[1] * per_group),), "uint64")
        c.tensor("scale", (cout,))
    else:
        c.roles(["weight"], ["bias"])
        c.tensor("weight", (cout, per_group, *kernel))
    c.tensor("bias", (cout,))
    return (cout, *_window(c, ins[0], kernel, stride, padding, dilation))


def _batchnorm(c: _Ctx, ins: Sequence[Shape]) -> Shape:
    c.arity(ins, 1, 3)
    channels = c.int("channels", 1)
    if ins[0][0] != channels:
        raise c.fail(f"normalises {channels} channels, its input has {ins[0][0]}")
    c.roles(["scale", "shift"])
    c.tensor("scale", (channels,))
    c.tensor("shift", (channels,))
    return ins[0]


def _prelu(c: _Ctx, ins: Sequence[Shape]) -> Shape:
    c.arity(ins, 1)
    c.roles(["slope"])
    slopes = c.int("num_parameters", 1)
    if slopes not in (1, ins[0][0]):
        raise c.fail(f"has {slopes} slopes for {ins[0][0]} channels")
    c.tensor("slope", (slopes,))
    return ins[0]


def _elementwise(c: _Ctx, ins: Sequence[Shape]) -> Shape:
    c.arity(ins, 1)
    c.roles([])
    if c.node.op == "mul_const":
        c.number("value")
    return ins[0]


def _pool(c: _Ctx, ins: Sequence[Shape]) -> Shape:
    c.arity(ins, 1, 3)
    c.roles([])
    kernel, stride, padding = c.pair("kernel", 1), c.pair("stride", 1), c.pair("padding", 0)
    if padding[0] * 2 > kernel[0] or padding[1] * 2 > kernel[1]:
        raise c.fail(f"padding {list(padding)} is more than half the kernel {list(kernel)}")
    if c.node.op == "avgpool":
        c.flag("count_include_pad")
    return (ins[0][0], *_window(c, ins[0], kernel, stride, padding, (1, 1)))


def _global_avgpool(c: _Ctx, ins: Sequence[Shape]) -> Shape:
    c.arity(ins, 1, 3)
    c.roles([])
    return (ins[0][0], 1, 1)


def _flatten(c: _Ctx, ins: Sequence[Shape]) -> Shape:
    c.arity(ins, 1)
    c.roles([])
    return (int(np.prod(ins[0])),)


def _linear(c: _Ctx, ins: Sequence[Shape]) -> Shape:
    c.arity(ins, 1, 1)
    fin, fout = c.int("in_features", 1), c.int("out_features", 1)
    if ins[0][0] != fin:
        raise c.fail(f"expects {fin} features, its input has {ins[0][0]}")
    c.roles(["weight"], ["bias"])
    c.tensor("weight", (fout, fin))
    c.tensor("bias", (fout,))
    return (fout,)


def _add(c: _Ctx, ins: Sequence[Shape]) -> Shape:
    c.arity(ins, 2)
    c.roles([])
    if ins[0] != ins[1]:
        raise c.fail(f"adds values of different shapes {list(ins[0])} and {list(ins[1])}")
    return ins[0]


def _cat(c: _Ctx, ins: Sequence[Shape]) -> Shape:
    c.arity(ins)
    c.roles([])
    if len({s[1:] for s in ins}) != 1 or len({len(s) for s in ins}) != 1:
        raise c.fail(f"concatenates channels of values of other sizes {[list(s) for s in ins]}")
    return (sum(s[0] for s in ins), *ins[0][1:])


def _slice(c: _Ctx, ins: Sequence[Shape]) -> Shape:
    c.arity(ins, 1)
    c.roles([])
    spec = c.node.attrs.get("slices")
    if not isinstance(spec, list) or len(spec) > len(ins[0]):
        raise c.fail(f"attribute 'slices' must list at most {len(ins[0])} [start, stop, step]")
    out = list(ins[0])
    for axis, item in enumerate(spec):
        ok = (isinstance(item, list) and len(item) == 3
              and all(v is None or type(v) is int for v in item) and type(item[2]) is int
              and item[2] >= 1)
        if not ok:
            raise c.fail(f"slice {item!r} is not [start, stop, step] with a step >= 1")
        out[axis] = len(range(*slice(*item).indices(out[axis])))
    if min(out) < 1:
        raise c.fail(f"slices {spec} leave an empty value from {list(ins[0])}")
    return tuple(out)


def _pad(c: _Ctx, ins: Sequence[Shape]) -> Shape:
    c.arity(ins, 1)
    c.roles([])
    c.number("value")
    pads = c.node.attrs.get("pad")
    if (not isinstance(pads, list) or len(pads) % 2 or len(pads) > 2 * len(ins[0])
            or not all(type(p) is int and p >= 0 for p in pads)):
        raise c.fail(f"attribute 'pad' must be pairs of non-negative integers, got {pads!r}")
    out = list(ins[0])
    for i in range(len(pads) // 2):  # torch order: the last axis first
        out[-1 - i] += pads[2 * i] + pads[2 * i + 1]
    return tuple(out)


_OPS: dict[str, Callable[[_Ctx, Sequence[Shape]], Shape]] = {
    "conv": _conv, "batchnorm": _batchnorm, "prelu": _prelu, "relu": _elementwise,
    "mul_const": _elementwise, "maxpool": _pool, "avgpool": _pool,
    "global_avgpool": _global_avgpool, "flatten": _flatten, "linear": _linear, "add": _add,
    "cat": _cat, "slice": _slice, "pad": _pad,
}


def infer_node(node: Node, inputs: Sequence[Shape], tensors: Mapping[str, np.ndarray]) -> Shape:
    """The output shape of ``node`` on inputs of shapes ``inputs`` (raises `GraphError`)."""
    rule = _OPS.get(node.op)
    if rule is None:
        raise GraphError(f"node {node.id!r} has unknown op {node.op!r}; known: {sorted(_OPS)}")
    return rule(_Ctx(node, tensors), inputs)


def infer_shapes(graph: Graph, tensors: Mapping[str, np.ndarray]) -> dict[str, Shape]:
    """The shape of every value, checking each node on the way (raises `GraphError`)."""
    shapes: dict[str, Shape] = {INPUT: graph.input_shape}
    _check_size(INPUT, graph.input_shape)
    for node in graph.nodes:
        if node.id in shapes:
            raise GraphError(f"node id {node.id!r} is used twice")
        missing = [name for name in node.inputs if name not in shapes]
        if missing:
            raise GraphError(f"node {node.id!r} reads {missing} before they are computed")
        shapes[node.id] = infer_node(node, [shapes[n] for n in node.inputs], tensors)
        _check_size(node.id, shapes[node.id])
    if graph.output not in shapes:
        raise GraphError(f"the graph output {graph.output!r} is not a computed value")
    peak = peak_live_elements(graph, shapes)
    if peak > MAX_LIVE_ELEMENTS:
        raise GraphError(
            f"running it keeps {peak:,} numbers per sample alive at once, more than the engine's "
            f"limit of {MAX_LIVE_ELEMENTS:,} (1 GiB of float32); no exported network is that "
            "large, so the file is crafted or damaged")
    return shapes


def _check_size(name: str, shape: Shape) -> None:
    count = math.prod(shape)
    if count > MAX_VALUE_ELEMENTS:
        what = "the input" if name == INPUT else f"node {name!r}"
        raise GraphError(
            f"{what} declares a value of shape {list(shape)} ({count:,} numbers per sample), "
            f"more than the engine's limit of {MAX_VALUE_ELEMENTS:,} (256 MiB of float32) for "
            "one value; no exported network is that large, so the file is crafted or damaged")


def peak_live_elements(graph: Graph, shapes: Mapping[str, Shape]) -> int:
    """The most numbers per sample alive at once when the engine runs ``graph`` in order,
    dropping each value after its last reader (as `PackedNetwork` does)."""
    last: dict[str, int] = {}
    for i, node in enumerate(graph.nodes):
        for name in node.inputs:
            last[name] = i
    dies: dict[int, list[str]] = {}
    for name, i in last.items():
        if name != graph.output:
            dies.setdefault(i, []).append(name)
    live = peak = math.prod(shapes[INPUT])
    for i, node in enumerate(graph.nodes):
        live += math.prod(shapes[node.id])
        peak = max(peak, live)
        live -= sum(math.prod(shapes[name]) for name in dies.get(i, ()))
    return peak
