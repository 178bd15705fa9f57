"""The random-genotype reference of a fair comparison: the ``random_genotype`` strategy, the
``[reference]`` table of a suite, and compare's seed-paired ``Δ vs random`` with its bootstrap
interval and percentile."""

from __future__ import annotations

import json
import random

import pytest
from click.testing import CliRunner

from automl_bin.cli.main import cli
from automl_bin.compare import (
    REFERENCE_ROW,
    RunRecord,
    build_rows,
    format_table,
    paired_delta,
    percentile_among,
)
from automl_bin.errors import UsageError
from automl_bin.progress import Progress
from automl_bin.suite import parse_plan
from automl_bin.suite_runner import resolve_plan, run_suite
from automl_bin.testing import make_plugins, tiny_recipe_text, tiny_search_env
from automl_bin_plugins.strategies.random_genotype import RandomGenotype, draw_genotype

SEEDS = ("2", "3", "4")
#: three random genotypes per seed, spread ±1 point around a per-seed level
REF_OFFSETS = (-0.01, 0.0, 0.01)


def _run(label: str, seed: str, acc: float, **tags: str) -> RunRecord:
    return RunRecord(name=f"{label} s{seed}", status="FINISHED",
                     tags={"suite.label": label, "strategy": label, "suite.seed": seed,
                           "binarizer": "recon", **tags},
                     metrics={"test_acc": acc})


def _references() -> list[RunRecord]:
    return [_run(f"random genotype {i + 1}", seed, 0.60 + 0.01 * int(seed) + off,
                 reference="random_genotypes", strategy="random_genotype")
            for seed in SEEDS for i, off in enumerate(REF_OFFSETS)]


def _level(seed: str) -> float:
    """The mean reference accuracy on ``seed``."""
    return 0.60 + 0.01 * int(seed)


def _row(rows, label):
    return next(r for r in rows if r.label == label)


# --------------------------------------------------------------------------------------------
# the bootstrap interval and the percentile, on hand-made runs with a known answer
# --------------------------------------------------------------------------------------------


def test_a_row_always_five_points_up_beats_random_with_pct_100():
    rows = build_rows([*_references(), *(_run("up", s, _level(s) + 0.05) for s in SEEDS)])
    up = _row(rows, "up")
    assert up.delta == pytest.approx(0.05) and up.delta_seeds == 3
    assert 0 < up.delta_low < up.delta < up.delta_high  # the interval excludes 0
    assert up.percentile == 100.0
    line = next(line for line in format_table(rows).splitlines() if line.startswith("| up |"))
    assert "| +5.00 [+" in line and "| 100 |" in line


def test_a_row_equal_to_the_references_has_an_interval_around_zero():
    rows = build_rows([*_references(), *(_run("same", s, _level(s)) for s in SEEDS)])
    same = _row(rows, "same")
    assert same.delta == pytest.approx(0.0, abs=1e-12)
    assert same.delta_low < 0 < same.delta_high
    assert 40 <= same.percentile <= 60
    assert "| +0.00 [-" in format_table(rows)  # float noise never prints as -0.00


def test_the_reference_is_one_row_and_other_rows_are_measured_against_it():
    rows = build_rows([*(_run("up", s, _level(s) + 0.05) for s in SEEDS), *_references()])
    assert [r.label for r in rows] == ["up", REFERENCE_ROW]
    ref = _row(rows, REFERENCE_ROW)
    assert ref.runs == 9 and ref.reference == "random_genotypes" and ref.delta is None
    assert ref.acc_mean == pytest.approx(0.63)
    table = format_table(rows)
    assert table.splitlines()[0].startswith(
        "| strategy | T.P. | GGN | D.O. | binarizer | test acc % (mean ± std) | best of N | N | "
        "Δ vs random (95% CI) | pct | weight images | search s |")
    ref_line = next(line for line in table.splitlines() if line.startswith(f"| {REFERENCE_ROW}"))
    assert "| 9 | – | – |" in ref_line  # the reference has no difference to itself
    assert json.loads(format_table(rows, "json"))[0]["delta_high"] > 0
    header, first = format_table(rows, "csv").splitlines()[:2]
    columns = dict(zip(header.split(","), first.split(",")))
    assert float(columns["delta_vs_random"]) == pytest.approx(0.05)
    assert columns["percentile_vs_random"] == "100.0"


def test_rows_and_seeds_without_a_paired_reference_show_a_dash():
    records = [*_references(), _run("lonely", "9", 0.7),  # seed 9 has no reference
               _run("part", "2", _level("2") + 0.02), _run("part", "9", 0.9)]
    rows = build_rows(records)
    lonely, part = _row(rows, "lonely"), _row(rows, "part")
    assert lonely.delta is None and lonely.percentile == 100.0
    assert part.delta == pytest.approx(0.02) and part.delta_seeds == 1  # seed 9 is left out
    lonely_line = next(line for line in format_table(rows).splitlines()
                       if line.startswith("| lonely |"))
    assert "| 1 | – | 100 |" in lonely_line


def test_no_reference_no_reference_columns():
    table = format_table(build_rows([_run("a", "2", 0.5), _run("a", "3", 0.7)]))
    assert "Δ vs random" not in table and "| weight images | search s |" in table


def test_the_interval_repeats_and_one_run_prints_no_spread():
    records = [*_references(), *(_run("up", s, _level(s) + 0.02 * int(s)) for s in SEEDS)]
    assert format_table(build_rows(records)) == format_table(build_rows(records))
    one = build_rows([_run("single", "2", 0.5)])[0]
    assert one.acc_std is None
    assert "| 50.00 | 50.00 | 1 |" in format_table([one])  # not "50.00 ± 0.00"


def test_paired_delta_and_percentile_directly():
    assert paired_delta({"1": 0.7}, {"2": [0.6]}) is None  # nothing paired
    alone = paired_delta({"1": 0.7}, {"1": [0.6]})
    assert alone.delta == pytest.approx(0.1) and alone.low is None and alone.high is None
    spread = paired_delta({"1": 0.7}, {"1": [0.5, 0.7]})
    # one seed: only the references are resampled; their mean lies in [0.5, 0.7]
    assert spread.delta == pytest.approx(0.1) and 0.0 <= spread.low < spread.high <= 0.2
    assert percentile_among(0.5, [0.1, 0.2, 0.9, 1.0]) == 50.0
    assert percentile_among(0.2, [0.1, 0.2, 0.9, 1.0]) == 37.5  # ties count half
    assert percentile_among(2.0, [0.1]) == 100.0


# --------------------------------------------------------------------------------------------
# the random_genotype strategy
# --------------------------------------------------------------------------------------------


def _drawn(seed: int, index: int, draw_seed: int = -1):
    env = tiny_search_env()
    env.seed = seed
    strategy = RandomGenotype(RandomGenotype.Config(index=index, draw_seed=draw_seed))
    strategy.setup(env)
    metrics = strategy.run_epoch(0)
    assert metrics == {"weight_images": 0.0} and strategy.num_epochs() == 1
    genotype = strategy.derive()
    env.space.validate_genotype(genotype)
    return genotype, env.space


def test_random_genotype_draws_valid_genotypes_that_differ_by_index_and_repeat_by_seed():
    first, space = _drawn(2, 1)
    assert _drawn(2, 1)[0] == first  # same seed and index: the same genotype
    assert len({str(_drawn(2, i)[0]) for i in (1, 2, 3, 4)}) == 4
    assert _drawn(3, 1)[0] != first
    ops = {e.op for kind in ("normal", "reduce") for e in first.cell(kind).edges}
    assert "none" not in ops and ops <= set(space.op_names)
    assert draw_genotype(space, 2, 1) == first


def test_a_fixed_draw_seed_keeps_one_genotype_across_run_seeds():
    """draw_seed retrains ONE genotype under several run seeds (the retraining's own spread)."""
    fixed = {str(_drawn(seed, 1, draw_seed=2)[0]) for seed in (2, 3, 4)}
    assert fixed == {str(_drawn(2, 1)[0])}
    assert str(_drawn(3, 1)[0]) not in fixed  # the default still draws by the run seed


def test_random_genotype_draws_uniformly():
    """Every op of the space (but none) and every input pair of a node turns up."""
    space = tiny_search_env().space
    seen_ops, seen_inputs = set(), set()
    for index in range(200):
        cell = space.sample_genotype(random.Random(index)).cell("normal")
        seen_ops |= {e.op for e in cell.edges}
        seen_inputs.add(tuple(sorted(e.source for e in cell.edges if e.target == 3)))
    assert seen_ops == set(space.op_names) - {"none"}
    assert seen_inputs == {(0, 1), (0, 2), (1, 2)}
    assert draw_genotype(space, 5, 1) == space.sample_genotype(random.Random("random_genotype:5:1"))


# --------------------------------------------------------------------------------------------
# [reference] in a suite recipe
# --------------------------------------------------------------------------------------------

BASE = """
[experiment]
name = "r"
seed = 5
seeds = 2
[data]
name = "synthetic"
[retrain]
epochs = 1
lr = 0.05
[strategy]
name = "darts"
epochs = 1
lr = 0.02
[[suite]]
label = "darts"
[[suite]]
label = "rs"
[suite.strategy]
name = "random"
[reference]
random_genotypes = 3
"""


def test_reference_expands_into_n_runs_per_seed_after_the_members():
    plan = parse_plan(BASE, ["retrain.lr=0.1"])
    assert [m.name for m in plan.members] == [
        "darts s5", "rs s5", "random genotype 1 s5", "random genotype 2 s5",
        "random genotype 3 s5", "darts s6", "rs s6", "random genotype 1 s6",
        "random genotype 2 s6", "random genotype 3 s6"]
    refs = [m for m in plan.members if m.reference]
    assert len(refs) == 3 * 2 and {m.reference for m in refs} == {"random_genotypes"}
    assert [m.recipe.strategy.params["index"] for m in refs] == [1, 2, 3, 1, 2, 3]
    for m in refs:
        # its own strategy, no base [strategy] keys; the same [retrain] as every member
        assert m.recipe.strategy.name == "random_genotype"
        assert dict(m.recipe.strategy.params) == {"index": m.recipe.strategy.params["index"]}
        assert m.recipe.raw["retrain"] == plan.members[0].recipe.raw["retrain"]
        assert m.recipe.raw["retrain"]["lr"] == 0.1  # --set reaches the reference too
        assert "reference" not in m.recipe.raw  # each run's recipe stays a plain recipe


def test_reference_runs_resolve_and_ignore_strategy_overrides():
    plan = parse_plan(BASE, ["strategy.epochs=2", "experiment.seeds=1"])
    resolved = resolve_plan(plan, make_plugins())
    assert plan.members[0].recipe.strategy.params["epochs"] == 2
    ref = resolved[-1]
    assert ref.recipe.strategy.name == "random_genotype"
    assert ref.strategy.tags() == {"reference": "random_genotypes", "reference.index": "3"}


def test_reference_alone_makes_a_suite_and_zero_turns_it_off():
    plain = BASE.split("[[suite]]")[0].replace("seeds = 2\n", "")
    plan = parse_plan(plain + "[reference]\nrandom_genotypes = 2\n")
    assert plan.is_suite and [m.label for m in plan.members] == [
        "darts", "random genotype 1", "random genotype 2"]
    assert len(parse_plan(BASE, ["reference.random_genotypes=0"]).members) == 4


@pytest.mark.parametrize("extra, overrides, message", [
    ("", ["reference.random_genotypes=-1"], "from 0 (no reference) to 50"),
    ("", ["reference.random_genotypes=true"], "whole number"),
    ("", ["reference.random_genotype=2"], "Did you mean 'random_genotypes'"),
    ('[sweep]\n"retrain.lr" = [0.1, 0.2]\n', [], "sweep only strategy.* keys"),
    ('[[suite]]\nlabel = "random genotype 2"\n', [], "share the label(s) ['random genotype 2']"),
])
def test_bad_reference_fails_with_the_fix(extra, overrides, message):
    with pytest.raises(UsageError) as info:
        parse_plan(BASE + extra, overrides)
    assert message in str(info.value)


def test_strategy_sweeps_leave_the_reference_unswept():
    plan = parse_plan(BASE + '[sweep]\n"strategy.lr" = [0.1, 0.2]\n', ["experiment.seeds=1"])
    assert [m.name for m in plan.members] == [
        "darts lr=0.1 s5", "darts lr=0.2 s5", "rs lr=0.1 s5", "rs lr=0.2 s5",
        "random genotype 1 s5", "random genotype 2 s5", "random genotype 3 s5"]


# --------------------------------------------------------------------------------------------
# end to end: a tiny suite with a reference, its table and `automl-bin compare`
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_tiny_suite_with_a_reference_compares_against_it(tmp_path):
    uri = f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}"
    text = tiny_recipe_text("darts", name="refsuite") + "[reference]\nrandom_genotypes = 2\n"
    plan = parse_plan(text, [f"tracking.uri={json.dumps(uri)}",
                             f"experiment.output_dir={json.dumps(str(tmp_path / 'runs'))}",
                             "experiment.seeds=2"])
    plugins = make_plugins()
    result = run_suite(plan, resolve_plan(plan, plugins), plugins, Progress(enabled=False))
    assert result.status == "FINISHED" and len(result.records) == 2 + 2 * 2
    refs = [r for r in result.records if r.reference]
    assert len(refs) == 4 and {r.seed for r in refs} == {"3", "4"}
    assert len({r.genotype for r in refs}) == 4  # four different random genotypes

    lines = result.table.splitlines()
    assert "| Δ vs random (95% CI) | pct | weight images | search s |" in lines[0]
    darts = next(line for line in lines if line.startswith("| darts |"))
    cells = [c.strip() for c in darts.split("|")[1:-1]]
    delta, pct = cells[8], cells[9]
    assert delta.startswith(("+", "-")) and "[" in delta and 0 <= float(pct) <= 100
    ref = next(line for line in lines if line.startswith(f"| {REFERENCE_ROW} |"))
    ref_cells = [c.strip() for c in ref.split("|")[1:-1]]
    assert ref_cells[7] == "4" and ref_cells[10] == "0"  # 4 runs, no weight images
    assert (result.run_dir / "compare.md").read_text() == result.table

    out = CliRunner().invoke(cli, ["compare", "refsuite", "--uri", uri, "--no-plot",
                                   "--suite", "latest"])
    assert out.exit_code == 0, out.output
    assert out.stdout == result.table  # MLflow gives the same table as the suite wrote
