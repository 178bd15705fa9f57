"""The packed format and the xnor-popcount engine: exactness against PyTorch, file checks, CLI.

Exactness means the engine's outputs equal the simulated-binary PyTorch model's within float
rounding (1e-4 of the largest logit), for every op of the binary op set at strides 1 and 2, for
binary convolutions with padding, stride 2 and dilation 2, and for whole derived networks.
Batch norms get random statistics and PReLUs random slopes, so that folding them is tested
with values that are not the identity.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from automl_bin.cli import cli
from automl_bin.deploy import PackedFileError, export_packed, load
from automl_bin.deploy.bits import pack_bits, pack_rows, unpack_bits
from automl_bin.deploy.convert import UnsupportedError, convert
from automl_bin.deploy.engine import PackedNetwork
from automl_bin.deploy.format import decode, encode
from automl_bin.deploy import layers
from automl_bin.deploy.layers import XnorConv, build_layer
from automl_bin.errors import UsageError
from automl_bin.interfaces import Genotype
from automl_bin.nn.qconv import ConvFactory, QConv2d
from automl_bin_plugins.binarizers.recon import ReconBinarizer
from automl_bin_plugins.binarizers.xnor import XnorBinarizer, XnorConfig
from automl_bin_plugins.darts_space.opsets import get_op_set
from automl_bin_plugins.darts_space.space import OP_SETS, DartsConfig, DartsSpace

BINARY_OPS = OP_SETS["binary"]


def _randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BN statistics/affines and PReLU slopes (negative ones too), then eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.5)
                m.running_var.copy_(torch.rand(c, generator=gen) * 1.5 + 0.5)
                if m.affine:
                    m.weight.copy_(torch.randn(c, generator=gen))
                    m.bias.copy_(torch.randn(c, generator=gen) * 0.3)
            elif isinstance(m, nn.PReLU):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) - 0.5)
    return model.eval()


def _engine(model: nn.Module, shape: tuple[int, ...], tmp_path: Path,
            genotype: Genotype | None = None) -> PackedNetwork:
    path = tmp_path / "model.abin"
    export_packed(model, shape, path, genotype=genotype)
    return load(path)


def _assert_close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    err = float(np.abs(got - want).max())
    assert err <= 1e-4 * float(np.abs(want).max()), f"max |diff| {err}"


def _check(model: nn.Module, shape: tuple[int, ...], tmp_path: Path, batch: int = 3,
           seed: int = 1, genotype: Genotype | None = None) -> PackedNetwork:
    engine = _engine(model, shape, tmp_path, genotype)
    x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        want = model(x).numpy()
    _assert_close(engine(x), want)
    return engine


# ---------------------------------------------------------------------------------------------
# bits and the compiled binary convolution
# ---------------------------------------------------------------------------------------------

def test_bit_packing_round_trips_and_rows_are_independent():
    rng = np.random.default_rng(0)
    bits = rng.random(130) > 0.5
    words = pack_bits(bits)
    assert words.dtype == np.uint64 and words.shape == (3,)
    assert (unpack_bits(words, 130) == bits).all()
    assert int(words[0]) & 1 == int(bits[0]) and (int(words[2]) >> 2) == 0  # unused bits are 0
    rows = pack_rows(bits[:120].reshape(2, 60))
    assert rows.shape == (2, 1)
    assert (unpack_bits(rows[1], 60) == bits[60:120]).all()


@pytest.mark.parametrize("kernel,stride,padding,dilation", [
    (3, 1, 1, 1), (3, 2, 1, 1), (3, 1, 2, 2), (5, 2, 4, 2), (1, 2, 0, 1)])
@pytest.mark.parametrize("act_scale,parallel", [(False, False), (False, True), (True, True)])
def test_binary_conv_matches_torch_at_borders(tmp_path, monkeypatch, kernel, stride, padding,
                                              dilation, act_scale, parallel):
    """Zero padding of a binarized input is a third value (0); the border pixels check it."""
    # every kernel has a serial and a parallel form, chosen by the amount of work
    monkeypatch.setattr(layers, "PARALLEL_MIN_WORK", 0 if parallel else 1 << 62)
    torch.manual_seed(0)
    binarizer = XnorBinarizer(XnorConfig(act_scale=act_scale))
    # 70 channels: two words per pixel, the second one partly unused
    conv = QConv2d(70, 12, kernel, binarizer=binarizer, stride=stride, padding=padding,
                   dilation=dilation, binarize_input=True)
    model = nn.Sequential(conv, nn.Flatten()).eval()
    engine = _check(model, (70, 9, 9), tmp_path)
    assert isinstance(engine._layers[0][2], XnorConv)  # the compiled path, not float


def test_binary_conv_without_padding_is_not_corrected(tmp_path):
    """Treating padding as -1 (bit 0) instead of 0 would change every border output."""
    conv = QConv2d(64, 8, 3, binarizer=XnorBinarizer(), padding=1, binarize_input=True)
    model = nn.Sequential(conv, nn.Flatten()).eval()
    graph, tensors = convert(model, (64, 5, 5))
    layer = build_layer(graph.nodes[0], tensors)
    x = np.random.default_rng(1).standard_normal((1, 64, 5, 5)).astype(np.float32)
    with torch.no_grad():
        want = conv(torch.from_numpy(x)).numpy()
    _assert_close(layer(x), want)
    layer.popw[:] = 0  # drop the padding correction: the borders must now be wrong
    assert np.abs(layer(x) - want)[:, :, 0, :].max() > 1.0


# ---------------------------------------------------------------------------------------------
# every op of the binary op set, and whole networks
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("op", BINARY_OPS)
def test_each_binary_op_matches_torch(tmp_path, op, stride):
    torch.manual_seed(1)
    opset = get_op_set("binary")
    module = opset.ops[op](8, stride, True, ConvFactory(XnorBinarizer(), opset.binarize_inputs))
    _check(_randomize(nn.Sequential(module, nn.Flatten())), (8, 7, 7), tmp_path)


@pytest.mark.parametrize("binarizer,depthwise", [
    (ReconBinarizer(), False), (XnorBinarizer(XnorConfig(act_scale=True)), True)])
def test_binary_ops_with_other_quantizers(tmp_path, binarizer, depthwise):
    """A learned scale (recon), scaled activations, and binarized depthwise inputs."""
    torch.manual_seed(2)
    opset = get_op_set("binary", bin_act_on_depthwise=depthwise)
    conv = ConvFactory(binarizer, opset.binarize_inputs)
    module = nn.Sequential(opset.ops["sep_conv_3x3"](8, 2, True, conv),
                           opset.ops["dil_conv_5x5"](8, 1, True, conv), nn.Flatten())
    _check(_randomize(module), (8, 9, 9), tmp_path)


_ALL_OPS_CELL = {"edges": [[op, src, tgt] for (op, src, tgt) in [
    ("sep_conv_3x3", 0, 2), ("skip_connect", 1, 2), ("max_pool_3x3", 0, 3),
    ("dil_conv_3x3", 2, 3), ("avg_pool_3x3", 1, 4), ("sep_conv_5x5", 3, 4),
    ("dil_conv_5x5", 0, 5), ("skip_connect", 4, 5)]], "concat": [2, 3, 4, 5]}
GENOTYPE = Genotype(space="darts", cells={"normal": _ALL_OPS_CELL, "reduce": _ALL_OPS_CELL})


def _network(style: str, binarizer) -> nn.Module:
    space = DartsSpace(DartsConfig(ops="binary" if style == "binary" else "real",
                                   op_style=style))
    net = space.build_network(GENOTYPE, (1, 12, 12), 5, binarizer,
                              {"layers": 3, "init_channels": 8, "stem_multiplier": 2})
    return _randomize(net, seed=3)


def test_whole_binary_network_matches_torch(tmp_path):
    torch.manual_seed(3)
    net = _network("binary", XnorBinarizer())
    engine = _check(net, (1, 12, 12), tmp_path, batch=4, genotype=GENOTYPE)
    assert engine.genotype == GENOTYPE
    layers = engine.header["layers"]
    assert {row["precision"] for row in layers} == {"32/32", "1/32", "1/1"}
    assert any(str(row.get("scale", "")).startswith("merged into") for row in layers)
    # batch norms after convolutions are folded into them at load
    file_nodes = engine.header["graph"]["nodes"]
    assert len(engine.graph.nodes) < len(file_nodes)
    assert sum(n.op == "batchnorm" for n in engine.graph.nodes) < sum(
        n["op"] == "batchnorm" for n in file_nodes)


def test_whole_real_style_network_matches_torch(tmp_path):
    """The DARTS ReLU-conv-BN style: ReLU, plain factorized reduce, binary weights on reals."""
    torch.manual_seed(4)
    _check(_network("real", XnorBinarizer()), (1, 12, 12), tmp_path)


def test_unsupported_layer_is_named(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sigmoid(), nn.Flatten()).eval()
    with pytest.raises(UnsupportedError, match=r"does not support 1 \(Sigmoid\)"):
        export_packed(model, (1, 5, 5), tmp_path / "x.abin")


# ---------------------------------------------------------------------------------------------
# damaged files are refused
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def packed_bytes(tmp_path) -> bytes:
    torch.manual_seed(5)
    model = _randomize(nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8),
        QConv2d(8, 8, 3, binarizer=XnorBinarizer(), padding=1, binarize_input=True),
        nn.BatchNorm2d(8), nn.PReLU(8), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)))
    path = tmp_path / "ok.abin"
    export_packed(model, (1, 6, 6), path)
    return path.read_bytes()


def test_intact_file_loads(packed_bytes):
    net = PackedNetwork(decode(packed_bytes))
    assert net(np.zeros((2, 1, 6, 6), np.float32)).shape == (2, 3)


@pytest.mark.parametrize("cut", [0, 10, 40, 0.5, -33, -1])
def test_truncated_file_is_refused(packed_bytes, cut):
    end = int(len(packed_bytes) * cut) if isinstance(cut, float) else cut
    with pytest.raises(PackedFileError, match="truncated|too short|header"):
        decode(packed_bytes[:end])


def test_flipped_bit_and_extra_bytes_are_refused(packed_bytes):
    for where in (len(packed_bytes) // 2, len(packed_bytes) - 40, 30):
        damaged = bytearray(packed_bytes)
        damaged[where] ^= 0x10
        with pytest.raises(PackedFileError, match="checksum|header"):
            decode(bytes(damaged))
    with pytest.raises(PackedFileError, match="unexpected bytes"):
        decode(packed_bytes + b"\0")


def test_other_files_and_versions_are_refused(packed_bytes, tmp_path):
    with pytest.raises(PackedFileError, match="not an automl-bin packed network"):
        decode(b"PK\x03\x04" + packed_bytes[4:])
    newer = bytearray(packed_bytes)
    struct.pack_into("<I", newer, 8, 99)
    with pytest.raises(PackedFileError, match="version 99"):
        decode(bytes(newer))
    with pytest.raises(UsageError, match="does not exist"):
        load(tmp_path / "missing.abin")


def _reencoded(data: bytes, edit) -> bytes:
    """The file with its header edited and a valid checksum, as a crafted file would be."""
    packed = decode(data)
    header = json.loads(json.dumps(packed.header))
    del header["tensors"], header["payload_bytes"]
    edit(header, packed.tensors)
    return encode(header, packed.tensors)


def test_inconsistent_graph_with_valid_checksum_is_refused(packed_bytes):
    def wrong_channels(header, tensors):
        conv = next(n for n in header["graph"]["nodes"] if n["attrs"].get("weight") == "binary")
        conv["attrs"]["in_channels"] = 9

    def dangling_input(header, tensors):
        header["graph"]["nodes"][1]["inputs"] = ["n99"]

    def short_bits(header, tensors):
        name = next(k for k in tensors if k.endswith(".bits"))
        tensors[name] = tensors[name][:0]

    def unknown_op(header, tensors):
        header["graph"]["nodes"][0]["op"] = "softmax"

    for edit in (wrong_channels, dangling_input, short_bits, unknown_op):
        with pytest.raises(PackedFileError, match="inconsistent network graph"):
            PackedNetwork(decode(_reencoded(packed_bytes, edit)))


def test_wrong_input_shape_is_a_usage_error(packed_bytes):
    net = PackedNetwork(decode(packed_bytes))
    with pytest.raises(UsageError, match=r"inputs of shape \(N, 1, 6, 6\)"):
        net(np.zeros((1, 6, 6), np.float32))


# ---------------------------------------------------------------------------------------------
# automl-bin export
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def run_folder(tmp_path, make_export_run) -> tuple[Path, nn.Module]:
    """A finished run's folder: recipe.toml, genotype.json and a model.pt."""
    from automl_bin.cli.export import load_run_network

    folder = make_export_run(tmp_path / "run", transform=lambda net: _randomize(net, seed=6))
    return folder, load_run_network(folder)[0]


def _export(*args: str):
    return CliRunner().invoke(cli, ["export", *args], catch_exceptions=False)


def test_export_packed_and_torchscript(run_folder, tmp_path):
    folder, net = run_folder
    x = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        want = net(x).numpy()
    result = _export(str(folder), "--format", "packed")
    assert result.exit_code == 0, result.output
    assert "16/16 top-1 classes agree" in result.output and "smaller" in result.output
    engine = load(folder / "model.abin")
    _assert_close(engine(x), want)
    assert engine.header["source"]["binarizer"] == "xnor"

    out = tmp_path / "net.pt"
    result = _export(str(folder), "--format", "torchscript", "--out", str(out))
    assert result.exit_code == 0, result.output
    scripted = torch.jit.load(str(out))
    with torch.no_grad():
        np.testing.assert_allclose(scripted(x).numpy(), want, rtol=1e-5, atol=1e-5)


def test_export_refuses_unfinished_run_and_missing_onnx(run_folder, monkeypatch):
    folder, net = run_folder
    (folder / "model.pt").unlink()
    result = CliRunner().invoke(cli, ["export", str(folder)])
    assert result.exit_code == 2 and "model.pt" in result.output
    assert "Traceback" not in result.output
    from automl_bin.deploy import export as exporter

    monkeypatch.setattr(exporter, "_importable", lambda name: False)
    with pytest.raises(UsageError, match=r"automl-bin\[export\]"):
        exporter.export_onnx(net, (1, 8, 8), folder / "x.onnx")


@pytest.mark.slow
def test_export_onnx(run_folder, tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    folder, _ = run_folder
    out = tmp_path / "net.onnx"
    result = _export(str(folder), "--format", "onnx", "--out", str(out))
    assert result.exit_code == 0, result.output
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["input"]
