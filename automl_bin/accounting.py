"""Model accounting: parameters, bits and multiply-adds, counted with forward hooks on one input.

`report` runs one ``(1, C, H, W)`` input through the model in eval mode and returns a
`ModelReport`: one `LayerCost` per module that owns parameters directly, and the totals the
binary-network literature reports. The conventions, in one place:

- **MACs.** Only convolutions and linear layers are counted (batch norm, activations, pooling
  and additions are cheap next to them and, by the usual convention, left out). A layer's MACs
  are ``output elements x (C_in / groups) x kh x kw`` for a conv and ``out x in`` for a linear
  layer, per image; biases are not MACs.
- **BOPs vs FLOPs.** A layer's MACs are *binary* (``bops``) only when its weights *and* its
  inputs are 1-bit (``weight_bits == 1 and input_bits == 1``, read from `QConv2d`): only then can
  the product be an XNOR and the sum a popcount. A conv with binary weights but real inputs
  still multiplies real numbers (by +-1, i.e. signed additions of floats), so its MACs count as
  real ``flops``. ``ops = flops + bops / 64`` (the Bi-Real/ReActNet convention: a 64-bit CPU word
  does 64 binary MACs per instruction).
- **Model bits (weights only).** ``model_bits`` follows the binary-network literature
  (XNOR-Net, Bi-Real Net, ReActNet, CP-NAS "memory saving"): it counts the *weights* of
  convolutions and linear layers and nothing else. A weight stored with ``weight_bits < 32``
  (a binarized conv, ``weight_bits == 1``, read from `QConv2d`) takes ``weight_bits`` bits; every
  other conv/linear weight is real and takes 32 bits (real convs, the linear classifier's weight;
  a linear layer's bias is counted with its weights, at 32 bits). Modules of a quantizer are not
  weight layers, even if they are convs or linear layers.
- **Parameter bits (everything stored).** ``param_bits = model_bits + 32 x`` every other stored
  value: batch-norm affine parameters, PReLU slopes, biases of other layers (convs included), and
  the per-output-channel scale of a binarized layer. That scale is charged even when it is
  computed from the weights (XNOR's mean ``|W|``: ``C_out x 32`` bits), because a deployed model
  must store it; when the layer's weight quantizer learns its own parameters (a learned scale)
  those parameters are the stored scale and are charged at 32 bits each instead, so nothing is
  counted twice. Batch-norm running statistics are buffers, not parameters, and are not counted:
  at deployment BN folds into a per-channel scale and bias (its two learned vectors, which are
  counted). A layer's ``bits`` (the "Bits" column of `format_summary`) are all its stored bits,
  so they add up to ``param_bits``; its ``model_bits`` are the part that counts in ``model_bits``.
- **Why two totals.** Weights only is what papers report, so ``memory_saving`` is comparable with
  theirs. The per-channel values it leaves out grow with the channels, the weights with their
  square: with ``C`` input and output channels a binarized 3x3 conv stores ``9 C^2`` weight bits,
  its BN and scale ``3 x 32 x C = 96 C`` bits: 2% of the weight bits at ``C = 512``, but *more*
  than the weights at ``C = 8`` (768 bits against 576). They are small in large networks but not
  in the tiny networks searched on a CPU, which is why ``deployed_bytes`` counts them.
- **Full-precision baseline.** The same architecture with every weight real: ``fp_bits = 32 x``
  the same conv/linear weight count that ``model_bits`` counts (so quantizer parameters, which a
  real network does not have, and BN/PReLU/scales are out of both), and
  ``memory_saving = fp_bits / model_bits``; ``fp_ops = flops + bops`` (every MAC real) and
  ``speedup_estimate = fp_ops / ops``.
- **Deployed size vs training footprint.** ``deployed_bytes = ceil(param_bits / 8)`` is the
  whole deployed model, packed: 1-bit weights eight to a byte plus every other value as float32.
  ``training_bytes = 4 x params`` is what training holds: the latent float32 weights behind every
  binarized weight, plus all other parameters, as float32.
- **What is not counted.** Architecture parameters (a supernet's ``arch_parameters()``) are search
  state, not network weights; modules that the eval-mode forward never calls (the DARTS auxiliary
  head, a training-only classifier) are not part of the deployed network. Both are reported as
  ``excluded_params``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import attrs
import torch
from torch import nn

__all__ = ["ModelCost", "count_cost", "LayerCost", "ModelReport", "report", "format_summary"]

#: bits of a real (full-precision) value
REAL_BITS = 32
#: binary MACs per instruction in ``ops = flops + bops / BOPS_PER_OP`` (64-bit words)
BOPS_PER_OP = 64


@attrs.frozen(kw_only=True)
class ModelCost:
    params: int
    flops: int
    bops: int

    @property
    def ops(self) -> float:
        return self.flops + self.bops / BOPS_PER_OP


@attrs.frozen(kw_only=True)
class LayerCost:
    """The cost of one module that owns parameters directly."""

    #: the module's qualified name in the model (``""`` for the model itself)
    name: str
    #: the module's class name
    kind: str
    #: ``"<weight bits>/<input bits>"``, e.g. ``"1/1"``, ``"1/32"``, ``"32/32"``
    precision: str
    #: parameters the module owns directly
    params: int
    #: bits all its stored values take at deployment (including a computed scale, see above);
    #: they add up to ``param_bits``
    bits: int
    #: real multiply-adds over all of its calls for one image
    flops: int
    #: binary multiply-adds over all of its calls for one image
    bops: int
    #: True when its parameters belong to a quantizer (absent from the full-precision baseline)
    quantizer: bool = False
    #: conv/linear weights it owns (a linear layer's bias included), counted in ``model_bits``
    weights: int = 0
    #: bits of those weights: ``weight_bits`` each when binarized, 32 each when real
    model_bits: int = 0


@attrs.frozen(kw_only=True)
class ModelReport:
    """Totals of a model's accounting; see the module docstring for every convention."""

    layers: tuple[LayerCost, ...]
    #: parameters counted (every parameter of every called module, architecture ones excluded)
    params: int
    #: parameters stored with fewer than 32 bits (the binarized weights)
    binary_params: int
    #: bits of the conv/linear weights (the literature's model size; see the module docstring)
    model_bits: int
    #: bits of every stored value: ``model_bits`` plus BN, PReLU, scales and other biases
    param_bits: int
    #: real multiply-adds per image
    flops: int
    #: binary (xnor-popcount) multiply-adds per image
    bops: int
    #: bits of the same conv/linear weights in full precision (32 each)
    fp_bits: int
    #: parameters left out: architecture parameters and modules the forward never called
    excluded_params: int = 0

    @property
    def ops(self) -> float:
        return self.flops + self.bops / BOPS_PER_OP

    @property
    def fp_ops(self) -> int:
        """Multiply-adds of the full-precision architecture: every MAC is real."""
        return self.flops + self.bops

    @property
    def memory_saving(self) -> float:
        """``fp_bits / model_bits``: weights only, as in the binary-network literature."""
        return self.fp_bits / self.model_bits if self.model_bits else 1.0

    @property
    def speedup_estimate(self) -> float:
        return self.fp_ops / self.ops if self.ops else 1.0

    @property
    def deployed_bytes(self) -> int:
        """The whole deployed model, ``param_bits`` packed (1-bit weights eight to a byte)."""
        return math.ceil(self.param_bits / 8)

    @property
    def training_bytes(self) -> int:
        """Size of the parameters during training: latent float32 weights and all others."""
        return 4 * self.params

    def metrics(self) -> dict[str, float]:
        """The totals as metrics (for MLflow and ``summary --json``)."""
        return {
            "params": float(self.params),
            "model_bits": float(self.model_bits),
            "param_bits": float(self.param_bits),
            "flops": float(self.flops),
            "bops": float(self.bops),
            "ops": float(self.ops),
            "memory_saving": float(self.memory_saving),
            "speedup_estimate": float(self.speedup_estimate),
            "deployed_bytes": float(self.deployed_bytes),
            "training_bytes": float(self.training_bytes),
        }


def _bits(module: nn.Module, name: str) -> int:
    value = getattr(module, name, REAL_BITS)
    return int(value) if isinstance(value, int) else REAL_BITS


def _is_quantizer(name: str) -> bool:
    # QConv2d's weight_quantizer/input_quantizer (and anything a binarizer nests in them)
    return any(part.endswith("quantizer") for part in name.split("."))


def _macs(module: nn.Module, out: torch.Tensor) -> int:
    """Multiply-adds of one call for one image (the input batch has one image)."""
    per_image = out.numel() // max(out.shape[0], 1) if out.dim() > 0 else out.numel()
    if isinstance(module, nn.modules.conv._ConvNd):
        return per_image * (module.in_channels // module.groups) * math.prod(module.kernel_size)
    if isinstance(module, nn.Linear):
        return per_image * module.in_features
    return 0


def _out_channels(module: nn.Module) -> int:
    if isinstance(module, nn.modules.conv._ConvNd):
        return module.out_channels
    if isinstance(module, nn.Linear):
        return module.out_features
    weight = getattr(module, "weight", None)
    return int(weight.shape[0]) if isinstance(weight, torch.Tensor) and weight.dim() > 0 else 0


def _first_tensor(value: object) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for item in value:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


def _trace_macs(model: nn.Module, modules: Mapping[str, nn.Module],
                input_shape: tuple[int, ...]) -> tuple[dict[str, int], set[str]]:
    """One eval-mode forward of a zero input: each module's multiply-adds and the names of the
    modules it called (each module's train/eval flag is restored afterwards)."""
    macs: dict[str, int] = {name: 0 for name in modules}
    called: set[str] = set()

    def make_hook(name: str) -> Callable[[nn.Module, tuple[object, ...], object], None]:
        def hook(module: nn.Module, _inp: tuple[object, ...], out: object) -> None:
            called.add(name)
            tensor = _first_tensor(out)
            if tensor is not None:
                macs[name] += _macs(module, tensor)

        return hook

    handles = [m.register_forward_hook(make_hook(n)) for n, m in modules.items()]
    modes = {n: m.training for n, m in modules.items()}
    try:
        model.eval()
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
        dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
        model(torch.zeros(1, *input_shape, device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
        for n, m in modules.items():
            m.training = modes[n]
    return macs, called


def _layer_cost(name: str, module: nn.Module, own: Sequence[nn.Parameter], macs: int,
                learned_scale: bool) -> tuple[LayerCost, int]:
    """The cost of one module from its own (non-architecture) parameters ``own`` and its
    multiply-adds; with the number of its binary weights."""
    count = sum(p.numel() for p in own)
    w_bits, in_bits = _bits(module, "weight_bits"), _bits(module, "input_bits")
    weight = getattr(module, "weight", None)
    owns_weight = any(weight is p for p in own)
    weight_bits = w_bits if w_bits < REAL_BITS and owns_weight else REAL_BITS
    bits = count * REAL_BITS
    binary_params = 0
    if weight_bits < REAL_BITS:
        binary_params = weight.numel()
        bits -= binary_params * (REAL_BITS - weight_bits)
        if not learned_scale:  # a scale computed from the weights is still stored
            bits += _out_channels(module) * REAL_BITS
    # the literature's model bits: conv/linear weights (and a linear layer's bias) only
    n_weights = layer_model_bits = 0
    if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)) and not _is_quantizer(name):
        if owns_weight:
            n_weights += weight.numel()
            layer_model_bits += weight.numel() * weight_bits
        bias = getattr(module, "bias", None)
        if isinstance(module, nn.Linear) and any(bias is p for p in own):
            n_weights += bias.numel()
            layer_model_bits += bias.numel() * REAL_BITS
    binary = w_bits == 1 and in_bits == 1
    return LayerCost(
        name=name, kind=type(module).__name__, precision=f"{w_bits}/{in_bits}",
        params=count, bits=bits, flops=0 if binary else macs, bops=macs if binary else 0,
        quantizer=_is_quantizer(name), weights=n_weights, model_bits=layer_model_bits,
    ), binary_params


@torch.no_grad()
def report(model: nn.Module, input_shape: tuple[int, ...]) -> ModelReport:
    """Account ``model`` for one input of shape ``input_shape`` (``(C, H, W)``, no batch).

    The forward runs once in eval mode (each module's train/eval flag is restored afterwards);
    a forward that returns a tuple (auxiliary logits) is fine, the output is not used.
    """
    modules = dict(model.named_modules())
    macs, called = _trace_macs(model, modules, input_shape)

    arch = getattr(model, "arch_parameters", None)
    arch_ids = {id(p) for p in arch()} if callable(arch) else set()
    excluded = sum(p.numel() for p in model.parameters() if id(p) in arch_ids)

    # weight quantizers that own parameters: their parameters are the stored scale (see above)
    learned_scale = {n for n, m in modules.items()
                     if isinstance(getattr(m, "weight_quantizer", None), nn.Module)
                     and any(True for _ in m.weight_quantizer.parameters())}

    layers: list[LayerCost] = []
    binary_params = 0
    for name, module in modules.items():
        own = [p for p in module.parameters(recurse=False) if id(p) not in arch_ids]
        if not own:
            continue
        if name not in called:
            excluded += sum(p.numel() for p in own)
            continue
        layer, binary = _layer_cost(name, module, own, macs[name], name in learned_scale)
        layers.append(layer)
        binary_params += binary
    return ModelReport(
        layers=tuple(layers),
        params=sum(layer.params for layer in layers),
        binary_params=binary_params,
        model_bits=sum(layer.model_bits for layer in layers),
        param_bits=sum(layer.bits for layer in layers),
        flops=sum(layer.flops for layer in layers),
        bops=sum(layer.bops for layer in layers),
        fp_bits=REAL_BITS * sum(layer.weights for layer in layers),
        excluded_params=excluded,
    )


def count_cost(model: nn.Module, input_shape: tuple[int, int, int]) -> ModelCost:
    """Parameters and per-image multiply-adds of ``model`` for one ``(C, H, W)`` input.

    A thin view of `report`, kept for callers that need only these three numbers.
    """
    rep = report(model, input_shape)
    return ModelCost(params=rep.params, flops=rep.flops, bops=rep.bops)


def _size(n_bytes: int) -> str:
    value = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{n_bytes:,} B" if unit == "B" else f"{value:,.2f} {unit} ({n_bytes:,} B)"
        value /= 1024
    raise AssertionError("unreachable")


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]], footer: tuple[str, ...],
           right: set[int]) -> list[str]:
    """Fixed-width columns (text left, numbers right) with rules around the body."""
    widths = [max(len(r[i]) for r in (header, *rows, footer)) for i in range(len(header))]

    def line(row: tuple[str, ...]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return [line(header), rule, *(line(r) for r in rows), rule, line(footer)]


def format_summary(rep: ModelReport) -> str:
    """The per-layer table and the totals of ``rep`` as plain, fixed-width text."""
    header = ("Layer", "Type", "Precision", "Params", "Bits", "FLOPs", "BOPs")
    rows = [(layer.name or "(model)", layer.kind, layer.precision, f"{layer.params:,}",
             f"{layer.bits:,}", f"{layer.flops:,}", f"{layer.bops:,}") for layer in rep.layers]
    total = ("Total", "", "", f"{rep.params:,}", f"{rep.param_bits:,}", f"{rep.flops:,}",
             f"{rep.bops:,}")
    lines = _table(header, rows, total, right={3, 4, 5, 6})
    real = rep.params - rep.binary_params
    facts = [
        ("Parameters", f"{rep.params:,} ({rep.binary_params:,} binarized, {real:,} real)"),
        ("Model bits (conv/linear weights: 1 bit binarized, 32 real)",
         f"{rep.model_bits:,} ({rep.fp_bits // REAL_BITS:,} weights)"),
        ("Parameter bits (all stored values incl. BN, PReLU, scales)", f"{rep.param_bits:,}"),
        ("Deployed size (packed, all parameters)", _size(rep.deployed_bytes)),
        ("Training footprint (latent float32 weights)", _size(rep.training_bytes)),
        ("FLOPs (real multiply-adds)", f"{rep.flops:,}"),
        ("BOPs (binary multiply-adds)", f"{rep.bops:,}"),
        ("OPs = FLOPs + BOPs/64", f"{rep.ops:,.1f}"),
        ("Full precision: model bits / OPs", f"{rep.fp_bits:,} / {rep.fp_ops:,}"),
        ("Memory saving vs full precision (weights)", f"{rep.memory_saving:.2f}x"),
        ("Speedup estimate vs full precision", f"{rep.speedup_estimate:.2f}x"),
    ]
    if rep.excluded_params:
        facts.append(("Not counted", f"{rep.excluded_params:,} parameters (architecture "
                                      "parameters, modules unused at inference)"))
    key_width = max(len(k) for k, _ in facts)
    lines.append("")
    lines.extend(f"{k + ':':<{key_width + 1}}  {v}" for k, v in facts)
    return "\n".join(lines)
