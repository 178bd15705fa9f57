"""The engine's executable layers: one class per graph op, built once from a node and its tensors.

Binary convolutions with binary inputs and one group run the compiled xnor-popcount kernels
(`automl_bin.deploy.kernels`); everything real-valued runs in float32 numpy: convolutions whose
inputs are real (binary weights are expanded to ``±scale`` once, at load), grouped/depthwise
convolutions, batch norm, PReLU, pooling, additions, the stem and the classifier.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from automl_bin.deploy import kernels
from automl_bin.deploy.bits import pack_rows, unpack_bits, words_for
from automl_bin.deploy.graph import Node, conv_output_size

__all__ = ["build_layer", "Layer", "conv2d_float"]

Layer = Callable[..., np.ndarray]

#: below this many word operations a kernel runs on the calling thread: waking a second thread
#: costs microseconds, more than such a layer's whole work (a derived network's 1x1 conv on a 7x7
#: map is ~1,000 words), and on a busy machine a parallel region can wait a whole time slice
PARALLEL_MIN_WORK = 1 << 16


def _pairs(node: Node, *keys: str) -> list[tuple[int, int]]:
    return [tuple(node.attrs[k]) for k in keys]  # type: ignore[misc]


def _channel(v: np.ndarray, rank: int) -> np.ndarray:
    """A per-channel vector shaped to broadcast over ``(N, C, ...)`` of the given rank."""
    return v.reshape((1, -1) + (1,) * (rank - 2))


def _epilogue(node: Node, tensors: Mapping[str, np.ndarray], cout: int,
              with_scale: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``(multiplier, offset)`` after the sum: weight scale, bias, folded batch norm.

    In float64, so that merging them rounds once, not at each step."""
    get = node.tensors.get
    mult = np.ones(cout)
    if with_scale and get("scale"):
        mult = tensors[get("scale")].astype(np.float64)
    offset = tensors[get("bias")].astype(np.float64) if get("bias") else np.zeros(cout)
    if get("bn_scale"):
        s = tensors[get("bn_scale")].astype(np.float64)
        mult, offset = mult * s, offset * s + tensors[get("bn_shift")].astype(np.float64)
    return mult, offset


def _binarize(x: np.ndarray, kind: str) -> np.ndarray:
    """The input quantizer in float: ``where(x >= 0, 1, -1)``, times mean_c |x| when scaled."""
    if kind == "real":
        return x
    signs = np.where(x >= 0, np.float32(1), np.float32(-1))
    if kind == "sign_scaled":
        signs *= np.abs(x).mean(axis=1, keepdims=True, dtype=np.float32)
    return signs


class XnorConv:
    """Binary weights on binary inputs (one group): packed on the fly, xnor + popcount."""

    def __init__(self, node: Node, tensors: Mapping[str, np.ndarray]) -> None:
        a = node.attrs
        cout, cin = a["out_channels"], a["in_channels"]
        (kh, kw), self.stride, self.padding, self.dilation = _pairs(
            node, "kernel", "stride", "padding", "dilation")
        self.kernel = (kh, kw)
        self.channels = cin
        self.words = words_for(cin)
        self.scaled = a["input"] == "sign_scaled"
        bits = unpack_bits(tensors[node.tensors["bits"]], cout * kh * kw * cin)
        bits = bits.reshape(cout * kh * kw, cin)
        self.weights = pack_rows(bits).reshape(cout, kh * kw * self.words)
        # per offset: how many weight bits are 1, subtracted where that offset is padding
        self.popw = bits.reshape(cout, kh * kw, cin).sum(axis=2).astype(np.int64)
        mult, offset = _epilogue(node, tensors, cout, with_scale=True)
        self.mult, self.offset = mult.astype(np.float32), offset.astype(np.float32)
        self.geometry = np.array([kh, kw, *self.stride, *self.padding, *self.dilation],
                                 dtype=np.int64)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        n, _, h, w = x.shape
        oh, ow = (conv_output_size(s, k, st, p, d) for s, k, st, p, d in zip(
            (h, w), self.kernel, self.stride, self.padding, self.dilation))
        packed = np.empty((n, h, w, self.words), dtype=np.uint64)
        big = x.size >= PARALLEL_MIN_WORK
        (kernels.pack_signs if big else kernels.pack_signs_serial)(x, packed)
        cout, width = self.weights.shape
        out = np.empty((n, cout, oh, ow), dtype=np.float32)
        big = n * oh * ow * cout * width >= PARALLEL_MIN_WORK
        if self.scaled:
            kmap = np.ascontiguousarray(np.abs(x).mean(axis=1, dtype=np.float32))
            run = kernels.xnor_conv_scaled if big else kernels.xnor_conv_scaled_serial
            run(packed, kmap, self.weights, self.channels, self.geometry, self.mult,
                self.offset, out)
        else:
            run = kernels.xnor_conv if big else kernels.xnor_conv_serial
            run(packed, self.weights, self.popw, self.channels, self.geometry, self.mult,
                self.offset, out)
        return out


class FloatConv:
    """A convolution in float32: real weights, or binary weights on real (or grouped) inputs."""

    def __init__(self, node: Node, tensors: Mapping[str, np.ndarray]) -> None:
        a = node.attrs
        cout, cin, groups = a["out_channels"], a["in_channels"], a["groups"]
        (kh, kw), self.stride, self.padding, self.dilation = _pairs(
            node, "kernel", "stride", "padding", "dilation")
        self.groups = groups
        self.input = a["input"]
        if a["weight"] == "binary":
            bits = unpack_bits(tensors[node.tensors["bits"]], cout * kh * kw * (cin // groups))
            signs = np.where(bits.reshape(cout, kh, kw, cin // groups), 1.0, -1.0)
            weight = signs.transpose(0, 3, 1, 2)
        else:
            weight = tensors[node.tensors["weight"]].astype(np.float64)
        mult, offset = _epilogue(node, tensors, cout, with_scale=a["weight"] == "binary")
        # the multiplier goes into the weights: w·(α·s) once at load, not per output
        self.weight = (weight * mult[:, None, None, None]).astype(np.float32)
        self.offset = offset.astype(np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = _binarize(x.astype(np.float32, copy=False), self.input)
        out = conv2d_float(x, self.weight, self.stride, self.padding, self.dilation, self.groups)
        out += _channel(self.offset, 4)
        return out


def _windows(xp: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
             dilation: tuple[int, int], out_hw: tuple[int, int]):  # type: ignore[no-untyped-def]
    """Yield ``(ky, kx, view)``: the strided input view under each kernel offset."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out_hw
    for ky in range(kh):
        for kx in range(kw):
            y0, x0 = ky * dh, kx * dw
            yield ky, kx, xp[:, :, y0:y0 + sh * (oh - 1) + 1:sh, x0:x0 + sw * (ow - 1) + 1:sw]


def conv2d_float(x: np.ndarray, weight: np.ndarray, stride: tuple[int, int],
                 padding: tuple[int, int], dilation: tuple[int, int], groups: int) -> np.ndarray:
    """``torch.nn.functional.conv2d`` (zero padding, no bias) in float32 numpy."""
    n, c, h, w = x.shape
    cout, cg, kh, kw = weight.shape
    oh, ow = (conv_output_size(s, k, st, p, d) for s, k, st, p, d in zip(
        (h, w), (kh, kw), stride, padding, dilation))
    ph, pw = padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else x
    if groups == c == cout and cg == 1:  # depthwise: one multiply-add per kernel offset
        out = np.zeros((n, c, oh, ow), dtype=np.float32)
        for ky, kx, view in _windows(xp, (kh, kw), stride, dilation, (oh, ow)):
            out += view * _channel(weight[:, 0, ky, kx], 4)
        return out
    cout_g = cout // groups
    outs = []
    for g in range(groups):
        part = xp[:, g * cg:(g + 1) * cg]
        cols = np.stack([v for _, _, v in _windows(part, (kh, kw), stride, dilation, (oh, ow))],
                        axis=2)  # (n, cg, kh·kw, oh, ow), the weight's (cg, kh, kw) order
        cols = cols.reshape(n, cg * kh * kw, oh * ow).transpose(1, 0, 2).reshape(cg * kh * kw, -1)
        wmat = weight[g * cout_g:(g + 1) * cout_g].reshape(cout_g, -1)
        outs.append((wmat @ cols).reshape(cout_g, n, oh, ow))
    return np.ascontiguousarray(np.concatenate(outs, axis=0).transpose(1, 0, 2, 3))


class Pool:
    """Max or average pooling (floor mode), torch's padding semantics."""

    def __init__(self, node: Node, tensors: Mapping[str, np.ndarray]) -> None:
        self.kernel, self.stride, self.padding = _pairs(node, "kernel", "stride", "padding")
        self.max = node.op == "maxpool"
        self.count_pad = bool(node.attrs.get("count_include_pad", True))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        n, c, h, w = x.shape
        (ph, pw) = self.padding
        oh, ow = (conv_output_size(s, k, st, p, 1) for s, k, st, p in zip(
            (h, w), self.kernel, self.stride, self.padding))
        pads = ((0, 0), (0, 0), (ph, ph), (pw, pw))
        if self.max:  # padding never wins a max
            xp = np.pad(x, pads, constant_values=-np.inf)
            views = _windows(xp, self.kernel, self.stride, (1, 1), (oh, ow))
            out = next(views)[2].copy()
            for _, _, v in views:
                np.maximum(out, v, out=out)
            return out
        xp = np.pad(x, pads)
        out = np.zeros((n, c, oh, ow), dtype=np.float32)
        for _, _, v in _windows(xp, self.kernel, self.stride, (1, 1), (oh, ow)):
            out += v
        if self.count_pad:
            return out / np.float32(self.kernel[0] * self.kernel[1])
        ones = np.pad(np.ones((1, 1, h, w), dtype=np.float32), pads)
        count = sum(v for _, _, v in _windows(ones, self.kernel, self.stride, (1, 1), (oh, ow)))
        return out / count


class PReLU:
    def __init__(self, node: Node, tensors: Mapping[str, np.ndarray]) -> None:
        self.slope = tensors[node.tensors["slope"]]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        slope = self.slope if self.slope.size == 1 else _channel(self.slope, x.ndim)
        return np.where(x >= 0, x, x * slope)


class Affine:
    """A batch norm that was not folded into a convolution: ``x·scale + shift`` per channel."""

    def __init__(self, node: Node, tensors: Mapping[str, np.ndarray]) -> None:
        self.scale = tensors[node.tensors["scale"]]
        self.shift = tensors[node.tensors["shift"]]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x * _channel(self.scale, x.ndim) + _channel(self.shift, x.ndim)


class Linear:
    def __init__(self, node: Node, tensors: Mapping[str, np.ndarray]) -> None:
        self.weight_t = np.ascontiguousarray(tensors[node.tensors["weight"]].T)
        bias = node.tensors.get("bias")
        self.bias = tensors[bias] if bias else None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = x @ self.weight_t
        return out + self.bias if self.bias is not None else out


def _simple(node: Node) -> Layer:
    a = node.attrs
    if node.op == "relu":
        return lambda x: np.maximum(x, np.float32(0))
    if node.op == "mul_const":
        value = np.float32(a["value"])
        return lambda x: x * value
    if node.op == "add":
        return lambda x, y: x + y
    if node.op == "cat":
        return lambda *xs: np.concatenate(xs, axis=1)
    if node.op == "global_avgpool":
        return lambda x: x.mean(axis=(2, 3), keepdims=True, dtype=np.float32)
    if node.op == "flatten":
        return lambda x: x.reshape(x.shape[0], -1)
    if node.op == "slice":
        index = (slice(None),) + tuple(slice(*s) for s in a["slices"])
        return lambda x: x[index]
    if node.op == "pad":
        pads = a["pad"]
        value = np.float32(a["value"])

        def pad(x: np.ndarray) -> np.ndarray:
            widths = [(0, 0)] * x.ndim
            for i in range(len(pads) // 2):  # torch order: last axis first
                widths[x.ndim - 1 - i] = (pads[2 * i], pads[2 * i + 1])
            return np.pad(x, widths, constant_values=value)

        return pad
    raise ValueError(f"no layer for op {node.op!r}")  # graph validation rules this out


def build_layer(node: Node, tensors: Mapping[str, np.ndarray]) -> Layer:
    """The executable layer of a validated node."""
    if node.op == "conv":
        a = node.attrs
        packed = a["weight"] == "binary" and a["input"] != "real" and a["groups"] == 1
        return XnorConv(node, tensors) if packed else FloatConv(node, tensors)
    classes = {"maxpool": Pool, "avgpool": Pool, "prelu": PReLU, "batchnorm": Affine,
               "linear": Linear}
    if node.op in classes:
        return classes[node.op](node, tensors)
    return _simple(node)
