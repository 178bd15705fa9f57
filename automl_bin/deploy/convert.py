"""From a PyTorch network to a deploy `Graph`: trace it with torch.fx, convert node by node.

The eval-mode forward is traced symbolically (`QConv2d` kept whole, like torch's own layers), so
the graph's wiring (cells, shortcuts, concatenations) comes from the code that runs in PyTorch,
not from a second description of it. Each traced call is converted by a rule for a known layer
or function; anything else is refused with the module path and type, never approximated.

A `QConv2d` is read through its own quantizers rather than by binarizer name: its weight
quantizer must give ``±scale_c`` per output channel (XNOR's mean |W|, a learned |M|, ...), and its
input quantizer is probed on a tensor with zeros and must equal ``where(x >= 0, 1, -1)``,
optionally times the channel mean of ``|x|`` (XNOR-Net's K).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from automl_bin.deploy.bits import pack_bits
from automl_bin.deploy.graph import INPUT, Graph, GraphError, Node, Shape, infer_node
from automl_bin.errors import UsageError
from automl_bin.nn.qconv import QConv2d

__all__ = ["convert", "UnsupportedError"]


class UnsupportedError(UsageError):
    """A layer or operation the packed engine cannot run."""


def _unsupported(where: str, what: str, detail: str = "") -> UnsupportedError:
    extra = f" ({detail})" if detail else ""
    return UnsupportedError(
        f"The packed format does not support {where} ({what}){extra}. It converts convolutions "
        "(QConv2d, Conv2d), BatchNorm2d, PReLU, ReLU, max/avg pooling, global average pooling, "
        "Linear, additions, channel concatenation, slicing, zero padding and scaling by a "
        "constant; export this network with --format torchscript or onnx instead.")


class _Tracer(fx.Tracer):
    """Keeps `QConv2d` as one call (its quantizers are read by the converter, not traced)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, QConv2d) or super().is_leaf_module(m, module_qualified_name)


def _pair(value: Any) -> list[int]:
    return [int(v) for v in value] if isinstance(value, (tuple, list)) else [int(value)] * 2


def _f32(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).cpu().numpy().copy()


class _Converter:
    def __init__(self, model: nn.Module, input_shape: Sequence[int]) -> None:
        self.modules = dict(model.named_modules())
        self.nodes: list[Node] = []
        self.tensors: dict[str, np.ndarray] = {}
        self.shapes: dict[str, Shape] = {INPUT: tuple(int(d) for d in input_shape)}
        self.values: dict[fx.Node, str] = {}

    # -- emitting -------------------------------------------------------------------------------
    def emit(self, op: str, inputs: Sequence[str], source: str, attrs: dict[str, Any] | None = None,
             tensors: dict[str, np.ndarray] | None = None) -> str:
        node_id = f"n{len(self.nodes)}"
        names = {}
        for role, array in (tensors or {}).items():
            names[role] = f"{node_id}.{role}"
            self.tensors[names[role]] = array
        node = Node(node_id, op, tuple(inputs), attrs or {}, names, source)
        try:
            self.shapes[node_id] = infer_node(node, [self.shapes[i] for i in inputs], self.tensors)
        except GraphError as exc:
            raise _unsupported(source, op, str(exc)) from exc
        self.nodes.append(node)
        return node_id

    def arg(self, value: Any, where: str) -> str:
        if not isinstance(value, fx.Node):
            raise _unsupported(where, "a constant where a tensor is expected")
        return self.values[value]

    # -- walking --------------------------------------------------------------------------------
    def run(self, graph: fx.Graph) -> str:
        output: str | None = None
        for node in graph.nodes:
            if node.op == "placeholder":
                if INPUT in self.values.values():
                    raise _unsupported(node.target, "a second network input")
                self.values[node] = INPUT
            elif node.op == "call_module":
                module = self.modules[node.target]
                self.values[node] = self.module(node, module)
            elif node.op in ("call_function", "call_method"):
                self.values[node] = self.function(node)
            elif node.op == "output":
                result = node.args[0]
                if not isinstance(result, fx.Node):
                    raise _unsupported("the network output", type(result).__name__,
                                       "it must return one tensor of logits")
                output = self.values[result]
            else:
                raise _unsupported(str(node.target), node.op)
        assert output is not None  # fx graphs always end in an output node
        return output

    def module(self, node: fx.Node, module: nn.Module) -> str:
        where = f"{node.target} ({type(module).__name__})"
        if len(node.args) != 1 or node.kwargs:
            raise _unsupported(node.target, type(module).__name__, "called with extra arguments")
        x = self.arg(node.args[0], where)
        for kind, rule in _MODULE_RULES:
            if isinstance(module, kind):
                return rule(self, module, x, str(node.target))
        raise _unsupported(str(node.target), type(module).__name__)

    def function(self, node: fx.Node) -> str:
        target = node.target
        name = target if isinstance(target, str) else getattr(target, "__name__", str(target))
        where = f"{name} in {node.name}"
        rule = (_METHOD_RULES.get(target) if node.op == "call_method"
                else _FUNCTION_RULES.get(target))  # type: ignore[arg-type]
        if rule is None:
            raise _unsupported(f"the call {name}() at {node.name}", node.op)
        return rule(self, node, where)

    # -- layers -----------------------------------------------------------------------------------
    def conv(self, m: nn.Conv2d, x: str, name: str) -> str:
        if m.padding_mode != "zeros" or isinstance(m.padding, str):
            raise _unsupported(name, type(m).__name__, f"padding {m.padding!r}, mode "
                                                       f"{m.padding_mode!r}; only numeric zero "
                                                       "padding is supported")
        attrs: dict[str, Any] = {
            "in_channels": m.in_channels, "out_channels": m.out_channels,
            "kernel": _pair(m.kernel_size), "stride": _pair(m.stride),
            "padding": _pair(m.padding), "dilation": _pair(m.dilation), "groups": m.groups,
            "input": "real", "weight": "float"}
        tensors: dict[str, np.ndarray] = {}
        with torch.no_grad():
            weight = m.weight
            binary = False
            if isinstance(m, QConv2d):
                attrs["input"] = _input_kind(m, name)
                if m.binarize_weight:
                    weight = m.weight_quantizer(m.weight)
                    binary = m.weight_bits == 1
        if binary:
            alpha = weight.abs().amax(dim=(1, 2, 3))
            spread = alpha.view(-1, 1, 1, 1).expand_as(weight)
            if not torch.allclose(weight.abs(), spread, rtol=1e-6, atol=0.0):
                raise _unsupported(name, type(m).__name__, "its weight quantizer does not give "
                                   "plus or minus one scale per output channel")
            attrs["weight"] = "binary"
            # canonical bit order (C_out, kh, kw, C_in/groups): one kernel offset's input
            # channels are adjacent, the order the xnor kernel packs activations in
            tensors["bits"] = pack_bits((weight > 0).permute(0, 2, 3, 1).cpu().numpy())
            tensors["scale"] = _f32(alpha)
        else:
            tensors["weight"] = _f32(weight)
        if m.bias is not None:
            tensors["bias"] = _f32(m.bias)
        return self.emit("conv", [x], name, attrs, tensors)

    def batchnorm(self, m: nn.BatchNorm2d, x: str, name: str) -> str:
        if m.training or m.running_mean is None or m.running_var is None:
            raise _unsupported(name, type(m).__name__, "it must be in eval mode with running "
                                                       "statistics")
        # in float64, then rounded once: y = x·scale + shift with the eval-mode statistics
        mean, var = m.running_mean.double(), m.running_var.double()
        scale = 1.0 / torch.sqrt(var + m.eps)
        shift = -mean * scale
        if m.affine:
            scale = scale * m.weight.double()
            shift = shift * m.weight.double() + m.bias.double()
        return self.emit("batchnorm", [x], name, {"channels": m.num_features},
                         {"scale": _f32(scale), "shift": _f32(shift)})

    def prelu(self, m: nn.PReLU, x: str, name: str) -> str:
        return self.emit("prelu", [x], name, {"num_parameters": m.num_parameters},
                         {"slope": _f32(m.weight.reshape(-1))})

    def pool(self, m: nn.MaxPool2d | nn.AvgPool2d, x: str, name: str) -> str:
        kernel = _pair(m.kernel_size)
        stride = _pair(m.stride) if m.stride is not None else kernel
        attrs: dict[str, Any] = {"kernel": kernel, "stride": stride, "padding": _pair(m.padding)}
        if m.ceil_mode:
            raise _unsupported(name, type(m).__name__, "ceil_mode=True")
        if isinstance(m, nn.MaxPool2d):
            if _pair(m.dilation) != [1, 1] or m.return_indices:
                raise _unsupported(name, type(m).__name__, "dilation or return_indices")
            return self.emit("maxpool", [x], name, attrs)
        if m.divisor_override is not None:
            raise _unsupported(name, type(m).__name__, "divisor_override")
        attrs["count_include_pad"] = bool(m.count_include_pad)
        return self.emit("avgpool", [x], name, attrs)

    def adaptive_pool(self, m: nn.AdaptiveAvgPool2d, x: str, name: str) -> str:
        if _pair(m.output_size) != [1, 1]:
            raise _unsupported(name, type(m).__name__, "only output size 1 (global pooling)")
        return self.emit("global_avgpool", [x], name)

    def linear(self, m: nn.Linear, x: str, name: str) -> str:
        tensors = {"weight": _f32(m.weight)}
        if m.bias is not None:
            tensors["bias"] = _f32(m.bias)
        return self.emit("linear", [x], name,
                         {"in_features": m.in_features, "out_features": m.out_features}, tensors)

    def flatten_module(self, m: nn.Flatten, x: str, name: str) -> str:
        if (m.start_dim, m.end_dim) != (1, -1):
            raise _unsupported(name, type(m).__name__, "only flattening all but the batch axis")
        return self.emit("flatten", [x], name)


def _input_kind(m: QConv2d, name: str) -> str:
    """``real``, ``sign`` or ``sign_scaled``: what the input quantizer does, found by probing."""
    quantizer = m.input_quantizer
    if isinstance(quantizer, nn.Identity):
        return "real"
    gen = torch.Generator().manual_seed(0)
    probe = torch.randn(2, m.in_channels, 3, 3, generator=gen) * 3
    probe[0, :, 0, 0] = 0.0  # sign must map 0 to +1, as the packed bit does
    probe[1, :, 0, 0] = -0.0
    with torch.no_grad():
        out = quantizer(probe)
    sign = torch.where(probe >= 0, 1.0, -1.0)
    if out.shape == probe.shape and torch.equal(out, sign):
        return "sign"
    scaled = sign * probe.abs().mean(dim=1, keepdim=True)
    if out.shape == probe.shape and torch.allclose(out, scaled, rtol=1e-5, atol=1e-6):
        return "sign_scaled"
    raise _unsupported(name, type(m).__name__, f"its input quantizer "
                       f"{type(quantizer).__name__} is not sign(x), nor sign(x) times the "
                       "channel mean of |x|")


_MODULE_RULES: list[tuple[type | tuple[type, ...], Callable[..., str]]] = [
    (nn.Conv2d, _Converter.conv),  # QConv2d included
    (nn.BatchNorm2d, _Converter.batchnorm),
    (nn.PReLU, _Converter.prelu),
    (nn.ReLU, lambda self, m, x, name: self.emit("relu", [x], name)),
    ((nn.MaxPool2d, nn.AvgPool2d), _Converter.pool),
    (nn.AdaptiveAvgPool2d, _Converter.adaptive_pool),
    (nn.Linear, _Converter.linear),
    (nn.Flatten, _Converter.flatten_module),
    # eval-mode no-ops: the value passes through unchanged
    ((nn.Identity, nn.Dropout, nn.Dropout2d), lambda self, m, x, name: x),
]


# ---------------------------------------------------------------------------------------------
# functions and methods
# ---------------------------------------------------------------------------------------------

def _binary_arith(conv: _Converter, node: fx.Node, where: str) -> str:
    """``a + b`` of two tensors, or ``x * c`` / ``c * x`` for a constant number ``c``."""
    a, b = node.args[0], node.args[1] if len(node.args) > 1 else node.kwargs.get("other")
    op = node.target if isinstance(node.target, str) else node.target.__name__
    extra = {k: v for k, v in node.kwargs.items() if k != "other"}
    if extra or len(node.args) > 2:
        raise _unsupported(where, node.op, f"arguments {sorted(extra)}")
    if op in ("add", "iadd"):
        return conv.emit("add", [conv.arg(a, where), conv.arg(b, where)], node.name)
    tensor, number = (a, b) if isinstance(a, fx.Node) else (b, a)
    if not isinstance(number, (int, float)) or isinstance(number, bool):
        raise _unsupported(where, node.op, "only multiplication by a constant number")
    return conv.emit("mul_const", [conv.arg(tensor, where)], node.name, {"value": float(number)})


def _cat(conv: _Converter, node: fx.Node, where: str) -> str:
    tensors = node.args[0]
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    if not isinstance(tensors, (list, tuple)):
        raise _unsupported(where, node.op, "a list of tensors is expected")
    inputs = [conv.arg(t, where) for t in tensors]
    rank = len(conv.shapes[inputs[0]]) + 1  # with the batch axis
    if not isinstance(dim, int) or dim % rank != 1:
        raise _unsupported(where, node.op, f"concatenation along dim {dim}; only channels (1)")
    return conv.emit("cat", inputs, node.name)


def _pad(conv: _Converter, node: fx.Node, where: str) -> str:
    args = list(node.args) + [None] * 4
    pads = node.kwargs.get("pad", args[1])
    mode = node.kwargs.get("mode", args[2] if args[2] is not None else "constant")
    value = node.kwargs.get("value", args[3])
    if mode != "constant" or not isinstance(pads, (list, tuple)):
        raise _unsupported(where, node.op, f"padding mode {mode!r}; only constant padding")
    if not all(isinstance(p, int) and p >= 0 for p in pads):
        raise _unsupported(where, node.op, f"pads {pads}; only non-negative integers")
    return conv.emit("pad", [conv.arg(args[0], where)], node.name,
                     {"pad": [int(p) for p in pads], "value": float(value or 0.0)})


def _getitem(conv: _Converter, node: fx.Node, where: str) -> str:
    x, index = node.args
    items = index if isinstance(index, tuple) else (index,)
    if not items or not all(isinstance(s, slice) for s in items) or items[0] != slice(None):
        raise _unsupported(where, node.op, f"indexing with {index!r}; only slices that keep "
                                           "the batch axis whole")
    spec = []
    for s in items[1:]:
        parts = (s.start, s.stop, 1 if s.step is None else s.step)
        if not all(p is None or (isinstance(p, int) and not isinstance(p, bool)) for p in parts):
            raise _unsupported(where, node.op, f"slice {s!r} with non-integer bounds")
        spec.append(list(parts))
    return conv.emit("slice", [conv.arg(x, where)], node.name, {"slices": spec})


def _flatten(conv: _Converter, node: fx.Node, where: str) -> str:
    args = list(node.args) + [None, None]
    start = node.kwargs.get("start_dim", args[1] if args[1] is not None else 0)
    end = node.kwargs.get("end_dim", args[2] if args[2] is not None else -1)
    if (start, end) != (1, -1):
        raise _unsupported(where, node.op, "only flatten(1): all but the batch axis")
    return conv.emit("flatten", [conv.arg(args[0], where)], node.name)


def _relu(conv: _Converter, node: fx.Node, where: str) -> str:
    return conv.emit("relu", [conv.arg(node.args[0], where)], node.name)


_FUNCTION_RULES: dict[Any, Callable[[_Converter, fx.Node, str], str]] = {
    operator.add: _binary_arith, operator.iadd: _binary_arith, torch.add: _binary_arith,
    operator.mul: _binary_arith, torch.mul: _binary_arith,
    torch.cat: _cat, torch.concat: _cat, F.pad: _pad, operator.getitem: _getitem,
    torch.flatten: _flatten, F.relu: _relu, torch.relu: _relu,
}
_METHOD_RULES: dict[str, Callable[[_Converter, fx.Node, str], str]] = {
    "add": _binary_arith, "mul": _binary_arith, "flatten": _flatten, "relu": _relu,
}


def convert(model: nn.Module, input_shape: Sequence[int]) -> tuple[Graph, dict[str, np.ndarray]]:
    """The deploy graph and tensors of ``model`` (in eval mode) for ``(C, H, W)`` inputs.

    Raises `UnsupportedError` naming the first layer or call the engine cannot run.
    """
    if model.training:
        raise UsageError("Put the model in eval mode (model.eval()) before converting it: "
                         "training-mode batch norm and drop-path do not deploy.")
    try:
        traced = _Tracer().trace(model)
    except Exception as exc:  # fx raises many types for untraceable Python
        raise UnsupportedError(
            f"The network's forward cannot be traced by torch.fx ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())[:300]}); export it with --format torchscript or onnx "
            "instead.") from exc
    conv = _Converter(model, input_shape)
    output = conv.run(traced)
    if len(conv.shapes[output]) != 1:
        raise _unsupported("the network output", f"shape {list(conv.shapes[output])}",
                           "it must be a vector of logits per sample")
    return Graph(input_shape=input_shape, nodes=conv.nodes, output=output), conv.tensors
