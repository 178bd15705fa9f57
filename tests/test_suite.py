"""Suites and sweeps: expansion rules, tracked runs under one suite run, failures, compare,
provenance and ``run --from-run``."""

from __future__ import annotations

import json

import attrs
import pytest
from click.testing import CliRunner

from automl_bin.cli.main import cli
from automl_bin.compare import RunRecord, build_rows, format_table, genotype_id
from automl_bin.errors import UsageError
from automl_bin.interfaces import Strategy
from automl_bin.progress import Progress
from automl_bin.recipe import parse_recipe
from automl_bin.suite import parse_plan
from automl_bin.suite_runner import resolve_plan, run_suite
from automl_bin.testing import make_plugins, tiny_recipe_text

BASE = """
[experiment]
name = "s"
seed = 5
[data]
name = "synthetic"
[strategy]
name = "darts"
epochs = 1
lr = 0.02
"""


def test_plain_recipe_is_one_member_and_not_a_suite():
    plan = parse_plan(BASE)
    assert not plan.is_suite and len(plan.members) == 1
    assert plan.members[0].recipe.experiment.seed == 5


def test_members_sweep_and_seeds_multiply():
    plan = parse_plan(BASE + """
[[suite]]
label = "d"
[[suite]]
label = "r"
[suite.strategy]
name = "random"
[sweep]
"strategy.max_steps" = [1, 2]
retrain.epochs = [1, 2, 3]
""", ["experiment.seeds=2"])
    assert plan.is_suite and plan.sweep_keys == ("strategy.max_steps", "retrain.epochs")
    assert len(plan.members) == 2 * 2 * 3 * 2
    # seed by seed: the first 12 runs are every member and grid point on the first seed
    assert [m.seed for m in plan.members] == [5] * 12 + [6] * 12
    d = [m for m in plan.members if m.label == "d"][0]
    r = [m for m in plan.members if m.label == "r"][0]
    # same plugin: the member updates the base section; another plugin starts from its defaults
    assert d.recipe.strategy.params["lr"] == 0.02
    assert r.recipe.strategy.name == "random" and "lr" not in r.recipe.strategy.params
    assert d.name == "d max_steps=1 epochs=1 s5"
    assert "seeds" not in d.recipe.raw["experiment"]


def test_set_applies_to_every_member():
    plan = parse_plan(BASE + '[[suite]]\nlabel = "r"\n[suite.strategy]\nname = "random"\n',
                      ["strategy.epochs=3"])
    assert plan.members[0].recipe.strategy.params["epochs"] == 3


def test_seed_list_and_single_seed():
    plan = parse_plan(BASE.replace("seed = 5", "seeds = [1, 7]"))
    assert [m.seed for m in plan.members] == [1, 7] and plan.is_suite


@pytest.mark.parametrize("extra, message", [
    ('[[suite]]\nlabel = "x"\n[suite.data]\nname = "cifar10"\n',
     "[data] is shared by every member"),
    ('[[suite]]\nlabl = "x"\n', "Did you mean 'label'"),
    ('[[suite]]\n[[suite]]\n', "share the label(s) ['darts']"),
    ('[sweep]\n"strategy.lr" = 0.1\n', "must be a non-empty list"),
    ('[sweep]\n"stratgy.lr" = [0.1]\n', "Did you mean 'strategy'"),
    ('[sweep]\n"experiment.name" = ["a", "b"]\n', "cannot vary 'experiment.name'"),
    ('[sweep]\n"strategy.epochs" = [1, 2, 3]\n"strategy.max_steps" = [1, 2]\n'
     '"retrain.epochs" = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n"retrain.lr" = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n',
     "expands to 600 runs"),
])
def test_bad_suites_fail_with_the_fix(extra, message):
    with pytest.raises(UsageError) as info:
        parse_plan(BASE + extra)
    assert message in str(info.value)


def test_bad_seeds_fail():
    for seeds in ("0", "[]", "[1, 1]", "true", '"3"'):
        with pytest.raises(UsageError, match="seeds"):
            parse_plan(BASE, [f"experiment.seeds={seeds}"])


def test_member_error_names_the_member():
    plan = parse_plan(BASE + '[[suite]]\nlabel = "bad"\n[suite.strategy]\nname = "random"\n'
                      'epoch = 3\n')
    with pytest.raises(UsageError, match="Suite member 'bad': .*'strategy.epoch'"):
        resolve_plan(plan, make_plugins())


def test_single_recipe_loader_explains_suites():
    with pytest.raises(UsageError, match="is a suite"):
        parse_recipe(BASE + '[sweep]\n"strategy.lr" = [0.1, 0.2]\n')


# --------------------------------------------------------------------------------------------
# running suites
# --------------------------------------------------------------------------------------------


@attrs.frozen
class _ExplodingConfig:
    arch_lr: float = 0.0  # swept across every member of the suite below


class _Exploding(Strategy):
    """A member that always fails: the suite must record it and go on."""

    Config = _ExplodingConfig

    def num_epochs(self):
        return 1

    def run_epoch(self, epoch):
        raise RuntimeError("boom in epoch 0")

    def derive(self):  # pragma: no cover - never reached
        raise AssertionError


def _run(tmp_path, text, overrides=(), plugins=None):
    uri = f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}"
    plan = parse_plan(text, [f"tracking.uri={json.dumps(uri)}",
                             f"experiment.output_dir={json.dumps(str(tmp_path / 'runs'))}",
                             *overrides])
    plugins = plugins or make_plugins()
    return run_suite(plan, resolve_plan(plan, plugins), plugins, Progress(enabled=False)), uri


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A 2 x 2 sweep of the tiny DARTS recipe, plus a failing member."""
    tmp_path = tmp_path_factory.mktemp("sweep")
    text = tiny_recipe_text("darts", name="sweep") + """
[[suite]]
label = "darts"
[[suite]]
label = "exploding"
[suite.strategy]
name = "exploding"
[sweep]
"strategy.arch_lr" = [0.001, 0.01]
"retrain.lr" = [0.01, 0.1]
"""
    plugins = make_plugins(("exploding", _Exploding))
    result, uri = _run(tmp_path, text, plugins=plugins)
    return result, uri, tmp_path


def test_sweep_gives_four_tracked_runs_under_one_suite_run(swept):
    from mlflow.tracking import MlflowClient

    result, uri, _ = swept
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("sweep")
    runs = client.search_runs([exp.experiment_id])
    suites = [r for r in runs if r.data.tags.get("automl_bin.role") == "suite"]
    members = [r for r in runs if r.data.tags.get("automl_bin.role") == "run"]
    assert len(suites) == 1
    suite_id = suites[0].info.run_id
    assert all(r.data.tags["mlflow.parentRunId"] == suite_id for r in members)
    darts = [r for r in members if r.data.tags["suite.label"] == "darts"]
    assert len(darts) == 4 and all(r.info.status == "FINISHED" for r in darts)
    assert {(r.data.tags["sweep.strategy.arch_lr"], r.data.tags["sweep.retrain.lr"])
            for r in darts} == {("0.001", "0.01"), ("0.001", "0.1"), ("0.01", "0.01"),
                                ("0.01", "0.1")}
    # each member keeps its own search/retrain children
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == darts[0].info.run_id]
    assert sorted(r.info.run_name for r in children) == ["retrain", "search"]
    artifacts = {a.path for a in client.list_artifacts(suite_id)}
    assert {"recipe.toml", "suite.json", "compare.md", "compare.csv", "accuracy_vs_cost.png",
            "sweep_strategy.arch_lr.png", "sweep_retrain.lr.png"} <= artifacts
    assert suites[0].info.status == "FINISHED"
    assert suites[0].data.metrics["failed"] == 4 and suites[0].data.metrics["finished"] == 4


def test_failed_members_are_recorded_and_the_others_run(swept):
    from mlflow.tracking import MlflowClient

    result, uri, _ = swept
    failed = [r for r in result.records if r.status == "FAILED"]
    assert len(failed) == 4 and all(r.label == "exploding" for r in failed)
    summary = json.loads((result.run_dir / "suite.json").read_text())
    assert [m["status"] for m in summary["members"]].count("FINISHED") == 4
    assert "boom in epoch 0" in summary["members"][-1]["error"]
    client = MlflowClient(uri)
    tracked = client.search_runs([client.get_experiment_by_name("sweep").experiment_id],
                                 filter_string="tags.`suite.label` = 'exploding'")
    assert tracked and all(r.info.status == "FAILED" for r in tracked)
    assert "| exploding |" in result.table and "0 (+1 failed)" in result.table


def test_runs_carry_provenance_tags(swept):
    from mlflow.tracking import MlflowClient

    _, uri, _ = swept
    client = MlflowClient(uri)
    run = client.search_runs([client.get_experiment_by_name("sweep").experiment_id],
                             filter_string="tags.`suite.label` = 'darts' and "
                                  "tags.`automl_bin.role` = 'run'")[0]
    tags = run.data.tags
    assert len(tags["recipe_sha256"]) == 64
    assert tags["plugin.strategy"].startswith("automl-bin ")
    assert tags["plugin.estimator"].startswith("automl-bin ")
    assert tags["device"] == "cpu"


def test_compare_command_prints_one_row_per_strategy_and_sweep_point(swept, tmp_path):
    _, uri, _ = swept
    out = CliRunner().invoke(cli, ["compare", "sweep", "--uri", uri, "--plot",
                                   str(tmp_path / "cmp.png")])
    assert out.exit_code == 0, out.output
    lines = [line for line in out.stdout.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| strategy | T.P. | GGN | D.O. | binarizer | test acc")
    assert sum(line.startswith("| darts |") for line in lines) == 4
    assert sum(line.startswith("| exploding |") for line in lines) == 4
    assert (tmp_path / "cmp.png").stat().st_size > 1000
    assert (tmp_path / "cmp-sweep-retrain.lr.png").is_file()
    out = CliRunner().invoke(cli, ["compare", "sweep", "--uri", uri, "--format", "json",
                                   "--no-plot", "--suite", "latest"])
    rows = json.loads(out.stdout)
    darts = [r for r in rows if r["label"] == "darts"]
    assert len(darts) == 4 and all(r["runs"] == 1 and 0 <= r["acc_mean"] <= 1 for r in darts)
    out = CliRunner().invoke(cli, ["compare", "sweep", "--uri", uri, "--format", "csv",
                                   "--no-plot"])
    assert out.stdout.splitlines()[0].startswith("strategy,tp,ggn,do,binarizer,test_acc_mean")
    out = CliRunner().invoke(cli, ["compare", "nope", "--uri", uri])
    assert out.exit_code == 2 and "Experiments there:" in out.output and "sweep" in out.output


def test_from_run_reruns_exactly_the_recorded_recipe(swept):
    from mlflow.tracking import MlflowClient

    _, uri, tmp_path = swept
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("sweep")
    original = client.search_runs([exp.experiment_id],
                                  filter_string="tags.`suite.label` = 'darts' and "
                                  "tags.`automl_bin.role` = 'run'")[0]
    out = CliRunner().invoke(cli, ["run", "--from-run", original.info.run_id, "--uri", uri,
                                   "--quiet"])
    assert out.exit_code == 0, out.output
    new_id = out.stdout.split("MLflow run id: ")[1].split()[0]
    again = client.get_run(new_id)
    assert again.data.tags["recipe_sha256"] == original.data.tags["recipe_sha256"]
    assert again.data.tags["genotype"] == original.data.tags["genotype"]
    assert again.data.tags["genotype_id"] == genotype_id(again.data.tags["genotype"])
    out = CliRunner().invoke(cli, ["run", "--from-run", "0" * 32, "--uri", uri])
    assert out.exit_code == 2 and "is not a run in the MLflow store" in out.output


def test_compare_rows_aggregate_seeds():
    records = [RunRecord(name=f"x{s}", status="FINISHED",
                         tags={"strategy": "dcp_nas", "binarizer": "xnor", "tangent": "true",
                               "hessian": "ggn", "decoupled": "false", "device": "cpu"},
                         metrics={"test_acc": acc, "search_seconds": 10.0 * s,
                                  "weight_images": 1280.0 * s})
               for s, acc in ((1, 0.8), (2, 0.9))]
    records.append(RunRecord(name="x3", status="FAILED", tags=records[0].tags))
    (row,) = build_rows(records)
    assert (row.tp, row.ggn, row.do) == ("✓", "✓", "✗")
    assert row.runs == 2 and row.failed == 1
    assert row.acc_mean == pytest.approx(0.85) and row.acc_std == pytest.approx(0.05)
    assert row.acc_best == 0.9 and row.search_seconds == pytest.approx(15.0)
    assert row.weight_images == pytest.approx(1920.0)
    # the weight-training budget stands next to the search seconds
    assert "85.00 ± 5.00 | 90.00 | 2 (+1 failed) | 1,920 | 15.0 | cpu" in format_table(
        [row])
    assert row.genotypes == ("–", "–")  # no genotype tag


def test_compare_shows_which_rows_found_the_same_architecture():
    """Rows whose runs found the same genotype show the same short id in the same position."""
    def record(label, genotype, seed):
        return RunRecord(name=f"{label} s{seed}", status="FINISHED",
                         tags={"suite.label": label, "strategy": "dcp_nas", "genotype": genotype},
                         metrics={"test_acc": 0.8})

    a, b = "Genotype<darts> normal: [skip_connect(0->2)]", "Genotype<darts> normal: [none(0->2)]"
    rows = build_rows([record("x", a, 2), record("y", a, 2), record("x", b, 3), record("y", a, 3)])
    assert rows[0].genotypes == (genotype_id(a), genotype_id(b))
    assert rows[1].genotypes == (genotype_id(a), genotype_id(a))
    assert genotype_id(a) != genotype_id(b) and len(genotype_id(a)) == 6
    table = format_table(rows)
    assert table.splitlines()[0].endswith("| genotypes |")
    assert f"| {genotype_id(a)} {genotype_id(b)} |" in table
    assert f"{genotype_id(a)} {genotype_id(b)}" in format_table(rows, "csv")
    assert f'"{genotype_id(a)}"' in format_table(rows, "json")


def test_genotype_id_tag_wins_over_a_cut_genotype_tag():
    """MLflow keeps 5,000 characters of the genotype tag; the id of the whole text is tagged
    apart, so two long genotypes that differ only past the cut keep different ids."""
    whole = "Genotype<big> " + "x" * 6000
    cut = whole[:4997] + "..."
    record = RunRecord(name="r", status="FINISHED",
                       tags={"genotype": cut, "genotype_id": genotype_id(whole)})
    assert record.genotype == genotype_id(whole) != genotype_id(cut)


def test_suite_hooks_wrap_the_member_runs(tmp_path):
    """on_suite_start / on_suite_end surround the members' on_run_start / on_run_end."""
    import types

    from automl_bin import hookimpl

    events = []
    observer = types.ModuleType("suite_observer")

    @hookimpl
    def on_suite_start(suite):
        events.append(("suite_start", suite.members, suite.sweep_keys))

    @hookimpl
    def on_run_start(run):
        events.append(("run_start", run.suite.name if run.suite else None))

    @hookimpl
    def on_suite_end(suite, status, summary):
        events.append(("suite_end", status, summary["runs"], summary["finished"]))

    for fn in (on_suite_start, on_run_start, on_suite_end):
        setattr(observer, fn.__name__, fn)
    plugins = make_plugins(("suite_observer", observer))
    text = tiny_recipe_text("darts", name="hooks", retrain=False, tracking=False)
    result, _ = _run(tmp_path, text, ["experiment.seeds=2"], plugins=plugins)
    assert result.status == "FINISHED"
    assert events == [("suite_start", ("darts s3", "darts s4"), ()),
                      ("run_start", "hooks"), ("run_start", "hooks"),
                      ("suite_end", "FINISHED", 2, 2)]


def test_interrupted_suite_resumes_keeping_finished_runs(tmp_path):
    """SIGTERM in the second of three runs: the suite stops and says how to go on; --resume on
    the suite folder keeps the first run, resumes the second from its checkpoint and runs the
    third, in the same suite folder and MLflow suite run."""
    import os
    import signal
    import types

    from mlflow.tracking import MlflowClient

    from automl_bin import hookimpl
    from automl_bin.runner import RunInterrupted

    seen = {"starts": 0}
    killer = types.ModuleType("kill_second_run")

    @hookimpl
    def on_epoch_end(run, phase, epoch):
        if phase == "search" and epoch == 0:
            seen["starts"] += 1
            if seen["starts"] == 2:
                os.kill(os.getpid(), signal.SIGTERM)

    killer.on_epoch_end = on_epoch_end
    text = tiny_recipe_text("darts", name="resumable", strategy_params={"epochs": 2})
    with pytest.raises(RunInterrupted, match="automl-bin run --resume") as info:
        _run(tmp_path, text, ["experiment.seeds=3"], plugins=make_plugins(("killer", killer)))
    folder = info.value.run_dir
    state = json.loads((folder / "suite.json").read_text())
    assert state["status"] == "KILLED"
    assert [m["status"] for m in state["members"]] == ["FINISHED", "KILLED"]
    first, killed = (m["run_dir"] for m in state["members"])

    result = CliRunner().invoke(cli, ["run", "--resume", str(folder), "--plain"])
    assert result.exit_code == 0, result.output
    assert "finished before, kept" in result.output and f"Resuming darts s4 in {killed}" \
        in result.output
    state = json.loads((folder / "suite.json").read_text())
    assert state["status"] == "FINISHED"
    assert [m["status"] for m in state["members"]] == ["FINISHED"] * 3
    assert [m["run_dir"] for m in state["members"]][:2] == [first, killed]
    assert "| 3 |" in result.output  # one row over the three seeds

    client = MlflowClient(f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}")
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    (suite_run,) = [r for r in runs if r.data.tags.get("automl_bin.role") == "suite"]
    assert suite_run.info.status == "FINISHED"
    assert suite_run.data.tags.get("automl_bin.resumed") == "true"
    members = [r for r in runs if r.data.tags.get("automl_bin.role") == "run"]
    assert len(members) == 3 and all(r.info.status == "FINISHED" for r in members)
    assert {r.data.tags["mlflow.parentRunId"] for r in members} == {suite_run.info.run_id}
    assert "nothing to resume" in CliRunner().invoke(
        cli, ["run", "--resume", str(folder)]).output


@pytest.mark.parametrize("hook", ["on_run_start", "on_run_end"])
def test_a_signal_a_library_swallows_still_stops_the_suite(tmp_path, hook):
    """Ctrl-C/SIGTERM that lands inside code which catches KeyboardInterrupt itself (as MLflow's
    store calls can) while a member starts or ends: the suite still stops after that member
    instead of going on to the next one (seen on a 42-run table suite)."""
    import os
    import signal
    import types

    from automl_bin import hookimpl
    from automl_bin.runner import RunInterrupted

    calls = {"n": 0}
    swallower = types.ModuleType("swallow_signal")

    def swallow(**_kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            try:
                os.kill(os.getpid(), signal.SIGINT)
                signal.getsignal(signal.SIGINT)  # a call: lets Python run the handler here
            except KeyboardInterrupt:
                pass  # a library that swallows it

    def observer(run):  # on_run_start(run)
        swallow()

    def observer_end(run, status):  # on_run_end(run, status)
        swallow()

    setattr(swallower, hook, hookimpl(observer if hook == "on_run_start" else observer_end))
    text = tiny_recipe_text("darts", name="swallowed", retrain=False, tracking=False)
    with pytest.raises(RunInterrupted) as info:
        _run(tmp_path, text, ["experiment.seeds=3"],
             plugins=make_plugins(("swallower", swallower)))
    state = json.loads((info.value.run_dir / "suite.json").read_text())
    assert state["status"] == "KILLED"
    expected = "KILLED" if hook == "on_run_start" else "FINISHED"
    assert [m["status"] for m in state["members"]] == [expected]  # seeds 2 and 3 never ran
