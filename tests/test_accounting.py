"""Model accounting pinned on a small hand-computed network, and ``automl-bin summary``."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import click
import pytest
import torch
from click.testing import CliRunner, Result
from torch import nn

from automl_bin.accounting import count_cost, format_summary, report
from automl_bin.cli.summary import data_shape, summary_command
from automl_bin.errors import UsageError
from automl_bin.interfaces import Binarizer, Genotype
from automl_bin.nn.qconv import QConv2d
from automl_bin_plugins.binarizers.none import NoBinarizer


# ---------------------------------------------------------------------------------------------
# a 1-bit binarizer for tests (the real xnor/recon binarizers live in their own plugins)
# ---------------------------------------------------------------------------------------------


class _SignWeight(nn.Module):
    """sign(W) times a per-output-channel scale: mean|W| (XNOR), or a learned vector."""

    def __init__(self, out_channels: int, learned: bool) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(out_channels)) if learned else None

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        scale = self.scale if self.scale is not None else w.abs().mean(dim=(1, 2, 3))
        return torch.sign(w) * scale.view(-1, 1, 1, 1)


class _Sign(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sign(x)


class SignBinarizer(Binarizer):
    weight_bits = 1
    activation_bits = 1

    def __init__(self, learned_scale: bool = False) -> None:
        super().__init__()
        self.learned_scale = learned_scale

    def weight_quantizer(self, out_channels: int) -> nn.Module:
        return _SignWeight(out_channels, self.learned_scale)

    def activation_quantizer(self) -> nn.Module:
        return _Sign()


class TinyNet(nn.Module):
    """1x8x8 -> real stem conv 1->4 + BN -> conv 4->8 (binarizer's) -> global pool -> fc 8->3.

    With ``aux`` a training-only head (Linear 8->3) makes forward return ``(logits, aux)``.
    """

    def __init__(self, binarizer: Binarizer, binarize_input: bool = True, aux: bool = False) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.conv = QConv2d(4, 8, 3, padding=1, binarizer=binarizer, binarize_input=binarize_input)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 3)
        self.aux_head = nn.Linear(8, 3) if aux else None

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        features = self.pool(self.conv(self.bn(self.stem(x)))).flatten(1)
        logits = self.fc(features)
        if self.aux_head is not None and self.training:
            return logits, self.aux_head(features)
        return logits


INPUT = (1, 8, 8)


# ---------------------------------------------------------------------------------------------
# hand-computed numbers
# ---------------------------------------------------------------------------------------------


def test_binary_network_numbers_by_hand():
    rep = report(TinyNet(SignBinarizer()), INPUT)
    # stem  Conv2d(1,4,3):  params 4*1*3*3 = 36;  MACs 4*8*8 outputs * 1*3*3 = 2304 (real)
    # bn    BatchNorm2d(4): params 4 + 4 = 8 (running mean/var are buffers: not counted)
    # conv  QConv2d(4,8,3), 1-bit weights and inputs: params 8*4*3*3 = 288;
    #       MACs 8*8*8 outputs * 4*3*3 = 512 * 36 = 18432 (binary)
    # fc    Linear(8,3):    params 8*3 + 3 = 27;  MACs 8*3 = 24 (real)
    params = 36 + 8 + 288 + 27
    assert params == 359
    # model bits (literature convention): conv/linear weights only, 1 bit per binarized weight,
    # 32 per real weight (the linear bias counts as weight); BN and the scale are not in it
    #   stem 36 real weights * 32 = 1152;  conv 288 binary weights * 1 = 288;
    #   fc (24 weights + 3 bias) * 32 = 864
    model_bits = 32 * 36 + 1 * 288 + 32 * (24 + 3)
    assert model_bits == 1152 + 288 + 864 == 2304
    weights = 36 + 288 + 27  # 351 conv/linear weights
    fp_bits = 32 * weights  # the same weights in float32
    assert fp_bits == 11232
    # parameter bits: model bits + 32 per other stored value: BN's 4 + 4 affine values, and the
    # conv's mean|W| scale, 8 output channels (computed from the weights, yet deployment stores it)
    param_bits = model_bits + 32 * (8 + 8)
    assert param_bits == 2304 + 512 == 2816
    flops = 2304 + 24
    bops = 18432
    ops = flops + bops / 64  # 2328 + 288
    assert ops == 2616
    fp_ops = flops + bops  # 20760: every MAC real
    assert (rep.params, rep.binary_params, rep.model_bits, rep.flops, rep.bops) == (
        params, 288, model_bits, flops, bops)
    assert rep.param_bits == param_bits
    assert rep.ops == ops
    assert rep.fp_bits == fp_bits
    assert rep.fp_ops == fp_ops == 20760
    assert rep.memory_saving == 11232 / 2304 == 4.875
    assert rep.speedup_estimate == 20760 / 2616
    assert rep.deployed_bytes == 352  # ceil(param_bits 2816 / 8)
    assert rep.training_bytes == 4 * 359 == 1436
    assert rep.excluded_params == 0
    assert rep.metrics() == {
        "params": 359.0, "model_bits": 2304.0, "param_bits": 2816.0, "flops": 2328.0,
        "bops": 18432.0, "ops": 2616.0, "memory_saving": 4.875,
        "speedup_estimate": 20760 / 2616, "deployed_bytes": 352.0, "training_bytes": 1436.0,
    }
    rows = {layer.name: layer for layer in rep.layers}
    assert list(rows) == ["stem", "bn", "conv", "fc"]
    # bits: all stored bits of the layer (they add up to param_bits); model_bits: its weights'
    assert [(r.kind, r.precision, r.params, r.bits, r.weights, r.model_bits, r.flops, r.bops)
            for r in rows.values()] == [
        ("Conv2d", "32/32", 36, 36 * 32, 36, 36 * 32, 2304, 0),
        ("BatchNorm2d", "32/32", 8, 8 * 32, 0, 0, 0, 0),
        ("QConv2d", "1/1", 288, 288 + 8 * 32, 288, 288, 0, 18432),
        ("Linear", "32/32", 27, 27 * 32, 27, 27 * 32, 24, 0),
    ]
    cost = count_cost(TinyNet(SignBinarizer()), INPUT)
    assert (cost.params, cost.flops, cost.bops, cost.ops) == (359, 2328, 18432, 2616)


def test_learned_scale_is_the_stored_scale_not_counted_twice():
    rep = report(TinyNet(SignBinarizer(learned_scale=True)), INPUT)
    # the quantizer's 8 learned scales replace the computed one: same param bits
    # (2304 + 32 * (8 BN + 8 scales) = 2816), 8 more params; they are not weights, so model bits
    # and the full-precision baseline (no quantizers) are unchanged
    assert rep.params == 359 + 8
    assert rep.model_bits == 2304
    assert rep.param_bits == 2816
    assert rep.fp_bits == 32 * 351
    assert rep.memory_saving == 11232 / 2304
    assert rep.deployed_bytes == 352
    assert rep.training_bytes == 4 * 367
    scale = {layer.name: layer for layer in rep.layers}["conv.weight_quantizer"]
    assert (scale.params, scale.bits, scale.quantizer) == (8, 8 * 32, True)
    assert (scale.weights, scale.model_bits) == (0, 0)


def test_real_binarizer_saves_nothing():
    rep = report(TinyNet(NoBinarizer()), INPUT)
    # every MAC real: 2304 + 18432 + 24; every parameter 32 bits, and no scale is stored
    assert (rep.params, rep.flops, rep.bops) == (359, 20760, 0)
    assert rep.model_bits == rep.fp_bits == 32 * 351 == 11232  # the 351 conv/linear weights
    assert rep.param_bits == 11232 + 32 * 8 == 32 * 359  # + BN's 8 values
    assert rep.memory_saving == 1.0
    assert rep.speedup_estimate == 1.0
    assert rep.deployed_bytes == rep.training_bytes == 1436
    assert {layer.name: layer.precision for layer in rep.layers}["conv"] == "32/32"


def test_binary_weights_with_real_inputs_are_flops():
    # no xnor-popcount without 1-bit inputs: the +-1 weights still multiply real activations
    rep = report(TinyNet(SignBinarizer(), binarize_input=False), INPUT)
    assert {layer.name: layer.precision for layer in rep.layers}["conv"] == "1/32"
    assert (rep.flops, rep.bops) == (2304 + 18432 + 24, 0)
    assert rep.model_bits == 2304  # storage is still 1 bit per weight
    assert rep.param_bits == 2816
    assert rep.speedup_estimate == 1.0
    assert rep.memory_saving == 11232 / 2304


def test_tuple_output_aux_head_excluded_and_modes_restored():
    net = TinyNet(SignBinarizer(), aux=True)
    net.train()
    net.bn.eval()  # a mixed state must come back as it was
    rep = report(net, INPUT)
    assert rep.params == 359
    assert rep.excluded_params == 27  # the aux head: never called at inference
    assert "aux_head" not in {layer.name for layer in rep.layers}
    assert net.training and net.conv.training and not net.bn.training
    out = net(torch.zeros(2, *INPUT))
    assert isinstance(out, tuple)  # still in training mode


def test_darts_network_matches_the_old_convention():
    from automl_bin_plugins.darts_space.space import DartsSpace

    genotype = Genotype.from_json(GENOTYPE_JSON)
    net = DartsSpace().build_network(genotype, (1, 8, 8), 3, SignBinarizer(),
                                     {"layers": 3, "init_channels": 4, "stem_multiplier": 1,
                                      "auxiliary": True})
    net.train()
    rep = report(net, (1, 8, 8))
    aux = sum(p.numel() for n, p in net.named_parameters() if n.startswith("auxiliary_head"))
    assert rep.params == sum(p.numel() for p in net.parameters()) - aux
    assert rep.excluded_params == aux
    # (whether cell convs get 1-bit inputs depends on the op style, so only storage is pinned)
    assert rep.binary_params > 0 and rep.memory_saving > 1
    assert net.training
    # the bit totals, recounted from the modules: model/fp bits over conv weights and linear
    # weights + biases; param bits add 32 per other value and each binarized conv's C_out scales
    deployed = {n: m for n, m in net.named_modules() if not n.startswith("auxiliary_head")}
    convs = [m for m in deployed.values() if isinstance(m, nn.Conv2d)]
    linears = [m for m in deployed.values() if isinstance(m, nn.Linear)]
    binary = [m for m in convs if getattr(m, "weight_bits", 32) == 1]
    weights = sum(m.weight.numel() for m in convs) + sum(
        m.weight.numel() + (m.bias.numel() if m.bias is not None else 0) for m in linears)
    n_binary = sum(m.weight.numel() for m in binary)
    assert rep.binary_params == n_binary
    assert rep.fp_bits == 32 * weights
    assert rep.model_bits == 32 * (weights - n_binary) + 1 * n_binary
    scales = sum(m.out_channels for m in binary)
    assert rep.param_bits == rep.model_bits + 32 * (rep.params - weights + scales)
    assert rep.param_bits > rep.model_bits and rep.deployed_bytes == -(-rep.param_bits // 8)


def test_supernet_architecture_parameters_not_counted():
    from automl_bin_plugins.darts_space.space import DartsConfig, DartsSpace

    space = DartsSpace(DartsConfig(layers=2, init_channels=4, nodes=2, stem_multiplier=1))
    net = space.build_supernet((1, 8, 8), 3, NoBinarizer())
    rep = report(net, (1, 8, 8))
    arch = sum(p.numel() for p in net.arch_parameters())
    assert rep.params == sum(p.numel() for p in net.parameters()) - arch
    assert rep.excluded_params == arch


def test_summary_table_lists_each_layer():
    rep = report(TinyNet(SignBinarizer(learned_scale=True)), INPUT)
    text = format_summary(rep)
    lines = text.splitlines()
    assert lines[0].split() == ["Layer", "Type", "Precision", "Params", "Bits", "FLOPs", "BOPs"]
    for name in ("stem", "bn", "conv", "conv.weight_quantizer", "fc"):
        assert any(line.split()[0] == name for line in lines[2:]), name
    conv = next(line for line in lines if line.split()[0] == "conv").split()
    assert conv == ["conv", "QConv2d", "1/1", "288", "288", "0", "18,432"]
    total = next(line for line in lines if line.startswith("Total")).split()
    assert total == ["Total", "367", "2,816", "2,328", "18,432"]  # the Bits column: param bits
    facts = dict(line.split(":  ", 1) for line in lines if ":  " in line)
    facts = {k.strip(): v.strip() for k, v in facts.items()}
    assert facts["Model bits (conv/linear weights: 1 bit binarized, 32 real)"] == (
        "2,304 (351 weights)")
    assert facts["Parameter bits (all stored values incl. BN, PReLU, scales)"] == "2,816"
    assert facts["Deployed size (packed, all parameters)"] == "352 B"
    assert facts["Training footprint (latent float32 weights)"] == "1.43 KiB (1,468 B)"
    assert facts["Full precision: model bits / OPs"] == "11,232 / 20,760"
    assert facts["Memory saving vs full precision (weights)"] == "4.88x"  # 4.875
    lower = text.lower()
    assert "speedup estimate vs full precision:" in lower and "7.94x" in lower


# ---------------------------------------------------------------------------------------------
# automl-bin summary
# ---------------------------------------------------------------------------------------------

RECIPE = """
[data]
name = "synthetic"
channels = 1
image_size = 8
num_classes = 3

[search_space]
name = "darts"
layers = 2
init_channels = 4
nodes = 2
stem_multiplier = 1

[strategy]
name = "darts"

[retrain]
network = { layers = 2, init_channels = 4, stem_multiplier = 1 }
"""

_CELL = {"edges": [["sep_conv_3x3", 0, 2], ["skip_connect", 1, 2],
                   ["max_pool_3x3", 0, 3], ["dil_conv_3x3", 2, 3]],
         "concat": [2, 3]}
GENOTYPE_JSON = Genotype(space="darts", cells={"normal": _CELL, "reduce": _CELL}).to_json()


def _files(tmp_path: Path) -> tuple[Path, Path]:
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(RECIPE)
    genotype = tmp_path / "genotype.json"
    genotype.write_text(GENOTYPE_JSON)
    return recipe, genotype


def _summary(*args: str) -> Result:
    result = CliRunner().invoke(summary_command, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def _expected(genotype: bool) -> dict[str, float]:
    from automl_bin_plugins.darts_space.space import DartsConfig, DartsSpace

    space = DartsSpace(DartsConfig(layers=2, init_channels=4, nodes=2, stem_multiplier=1))
    if genotype:
        net = space.build_network(Genotype.from_json(GENOTYPE_JSON), (1, 8, 8), 3, NoBinarizer(),
                                  {"layers": 2, "init_channels": 4, "stem_multiplier": 1})
    else:
        net = space.build_supernet((1, 8, 8), 3, NoBinarizer())
    return report(net, (1, 8, 8)).metrics()


def test_summary_of_recipe_is_the_supernet(tmp_path):
    recipe, _ = _files(tmp_path)
    text = _summary(str(recipe)).output
    assert "search supernet" in text and "Layer" in text and "stem.0" in text
    assert "Deployed size (packed, all parameters)" in text
    data = json.loads(_summary(str(recipe), "--json").stdout)
    assert data["network"] == "supernet" and data["input_shape"] == [1, 8, 8]
    assert data["num_classes"] == 3 and data["binarizer"] == "none"
    assert data["metrics"] == _expected(genotype=False)
    assert data["metrics"]["memory_saving"] == 1.0 and data["metrics"]["speedup_estimate"] == 1.0
    assert data["excluded_params"] > 0  # the alphas
    assert {"name", "kind", "precision", "params", "bits", "flops", "bops"} <= set(data["layers"][0])


def test_summary_of_recipe_with_genotype(tmp_path):
    recipe, genotype = _files(tmp_path)
    text = _summary(str(recipe), "--genotype", str(genotype)).output
    assert "network of genotype" in text and "layers=2" in text
    data = json.loads(_summary(str(recipe), "--genotype", str(genotype), "--json").stdout)
    assert data["network"] == "genotype"
    assert data["metrics"] == _expected(genotype=True)
    assert data["metrics"]["params"] < _expected(genotype=False)["params"]
    # --set reaches the recipe, and --input-shape / --num-classes override the data set's
    wider = json.loads(_summary(str(recipe), "--genotype", str(genotype), "--json",
                                "--set", "retrain.network.init_channels=8",
                                "--input-shape", "1,16,16", "--num-classes", "5").stdout)
    assert wider["input_shape"] == [1, 16, 16] and wider["num_classes"] == 5
    assert wider["metrics"]["params"] > data["metrics"]["params"]


def test_summary_of_run_folder(tmp_path):
    run_dir = tmp_path / "runs" / "tiny" / "20250101-000000-abcdef"
    run_dir.mkdir(parents=True)
    _files(run_dir)
    data = json.loads(_summary(str(run_dir), "--json").stdout)
    assert data["network"] == "genotype"
    assert data["genotype"] == str(run_dir / "genotype.json")
    assert data["metrics"] == _expected(genotype=True)


def test_summary_of_mlflow_run_id(tmp_path):
    from mlflow.tracking import MlflowClient

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    _files(run_dir)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("tiny", artifact_location=str(tmp_path / "artifacts"))
    parent = client.create_run(exp, tags={"automl_bin.run_dir": str(run_dir)}).info.run_id
    child = client.create_run(exp, tags={"mlflow.parentRunId": parent}).info.run_id
    for run_id in (parent, child):
        data = json.loads(_summary(run_id, "--uri", uri, "--json").stdout)
        assert data["metrics"] == _expected(genotype=True)
    with pytest.raises(UsageError, match="not a run in the MLflow store"):
        CliRunner().invoke(summary_command, ["0" * 32, "--uri", uri], catch_exceptions=False)


def _group() -> click.Group:
    """A group with the CLI's error boundary, so errors show as the installed command shows them."""
    from automl_bin.cli.main import AutomlBinGroup

    group = AutomlBinGroup("automl-bin")
    group.add_command(summary_command)
    return group


def test_summary_errors_exit_2_in_one_paragraph(tmp_path):
    recipe, _ = _files(tmp_path)
    empty = tmp_path / "empty_run"
    empty.mkdir()
    missing_store = f"sqlite:///{tmp_path / 'nothing' / 'mlflow.db'}"
    cases = [
        ([str(empty)], "has no recipe.toml"),
        ([str(tmp_path / "nope.toml")], "does not exist"),
        (["abc123", "--uri", missing_store], "no MLflow store"),
        ([str(recipe), "--genotype", str(tmp_path / "missing.json")], "does not exist"),
        ([str(recipe), "--input-shape", "3,32"], "C,H,W"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(_group(), ["summary", *args])
        assert result.exit_code == 2, (args, result.output)
        assert message in " ".join(result.output.split()), (args, result.output)
        assert "Traceback" not in result.output
    assert not (tmp_path / "nothing").exists()  # no store is created by a failed lookup


def test_data_shape_needs_options_for_data_sets_that_do_not_declare_it():
    from automl_bin.interfaces import Dataset, DataShape
    from automl_bin_plugins.datasets import Cifar10, FashionMnist, Synthetic

    class Undeclared(Dataset):  # the interface's default: only loading tells
        def load(self):
            raise AssertionError("summary must not load data")

    def resolved(name, dataset):
        return SimpleNamespace(recipe=SimpleNamespace(data=SimpleNamespace(name=name)),
                               dataset=dataset)

    imagenet = resolved("imagenet", Undeclared())
    with pytest.raises(UsageError, match="--input-shape C,H,W and --num-classes N"):
        data_shape(imagenet, None, None)
    with pytest.raises(UsageError, match="--num-classes N"):
        data_shape(imagenet, (3, 224, 224), None)
    assert data_shape(imagenet, (3, 224, 224), 1000) == ((3, 224, 224), 1000)
    assert data_shape(resolved("cifar10", Cifar10()), None, None) == ((3, 32, 32), 10)
    assert data_shape(resolved("fashion_mnist", FashionMnist()), None, 7) == ((1, 28, 28), 7)
    small = Synthetic(Synthetic.Config(channels=1, image_size=8, num_classes=5))
    assert data_shape(resolved("synthetic", small), None, None) == ((1, 8, 8), 5)

    class Declared(Undeclared):  # a third-party data set the core has never heard of
        def shape(self):
            return DataShape(input_shape=(3, 64, 64), num_classes=200)

    assert data_shape(resolved("tiny_imagenet", Declared()), None, None) == ((3, 64, 64), 200)


def test_summary_help_has_examples():
    result = CliRunner().invoke(summary_command, ["--help"])
    assert result.exit_code == 0 and "Examples:" in result.output
