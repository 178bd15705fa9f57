"""Run every member of a suite (see `automl_bin.suite`) and compare them.

Members run one after the other with the runner of a single recipe, each its own tracked run
(nested under the suite's run in MLflow). A failed member is recorded as failed and the others
still run; Ctrl-C or SIGTERM stops the suite after marking the current member KILLED. At the
end the suite folder holds ``suite.json`` (every member's status, metrics, folder and run id),
``compare.md``/``compare.csv`` (the comparison table), ``accuracy_vs_cost.png`` and, for a
sweep, ``sweep_<key>.png`` per swept key; trackers attach them to the suite's run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from automl_bin.checkpoint import write_text_atomic
from automl_bin.compare import (
    RunRecord,
    build_rows,
    format_table,
    plot_accuracy_vs_cost,
    plot_sweep,
    safe_filename,
)
from automl_bin.errors import AutomlBinError
from automl_bin.plugins import PluginSet, call_observers
from automl_bin.progress import Progress
from automl_bin.recipe import ResolvedRecipe, resolve
from automl_bin.run_info import SuiteInfo
from automl_bin.runner import RunInterrupted, new_run_dir, recipe_to_toml, run
from automl_bin.suite import Member, SuitePlan

__all__ = ["SuiteResult", "resolve_plan", "run_suite"]


@attrs.frozen(kw_only=True)
class SuiteResult:
    run_dir: Path
    records: tuple[RunRecord, ...]
    table: str
    status: str
    announcements: dict[str, Any] = attrs.field(factory=dict)


def resolve_plan(plan: SuitePlan, plugins: PluginSet) -> list[ResolvedRecipe]:
    """Resolve every member before anything runs, so a bad member fails the suite at once."""
    from automl_bin.errors import UsageError

    out = []
    for member in plan.members:
        try:
            out.append(resolve(member.recipe, plugins.registry))
        except UsageError as exc:
            if not plan.is_suite:
                raise
            raise UsageError(f"Suite member {member.label!r}: {exc}") from exc
    return out


def _member_tags(member: Member) -> dict[str, str]:
    tags = {"suite.label": member.label, "suite.run_name": member.name,
            "suite.seed": str(member.seed)}
    tags.update({f"sweep.{k}": str(v) for k, v in member.sweep.items()})
    return tags


def run_suite(plan: SuitePlan, resolved: Sequence[ResolvedRecipe], plugins: PluginSet,
              progress: Progress | None = None) -> SuiteResult:
    """Run the members of ``plan`` (resolved by `resolve_plan`) and write the comparison."""
    progress = progress or Progress()
    first = plan.members[0].recipe
    run_dir = new_run_dir(first.experiment.output_dir, f"{plan.name}-suite")
    write_text_atomic(run_dir / "recipe.toml", recipe_to_toml(plan.raw))
    info = SuiteInfo(name=plan.name, recipe=first, recipe_text=recipe_to_toml(plan.raw),
                     run_dir=run_dir, members=tuple(m.name for m in plan.members),
                     sweep_keys=plan.sweep_keys,
                     tags={"automl_bin.suite_runs": str(len(plan.members)),
                           "dataset": first.data.name})
    call_observers(plugins, "on_suite_start", suite=info)
    for key, value in info.announcements.items():
        progress.info(f"{key}: {value}")
    progress.info(f"Suite folder: {run_dir} ({len(plan.members)} runs)")

    records: list[RunRecord] = []
    entries: list[dict[str, Any]] = []
    status = "FINISHED"
    interrupted: RunInterrupted | None = None
    for i, (member, rec) in enumerate(zip(plan.members, resolved), start=1):
        progress.info(f"[{i}/{len(plan.members)}] {member.name}")
        tags = {**_row_tags(rec), **_member_tags(member)}
        entry: dict[str, Any] = {"name": member.name, "label": member.label,
                                 "seed": member.seed, "sweep": dict(member.sweep)}
        try:
            result = run(rec, plugins, progress, suite=info, extra_tags=tags)
        except RunInterrupted as exc:
            entry.update(status="KILLED", error=str(exc))
            interrupted = exc
        except (AutomlBinError, Exception) as exc:  # a member's failure is its own
            entry.update(status="FAILED", error=f"{type(exc).__name__}: {exc}")
            progress.info(f"[{i}/{len(plan.members)}] {member.name} FAILED: {exc}")
        else:
            entry.update(status="FINISHED", run_dir=str(result.run_dir),
                         genotype=str(result.genotype),
                         mlflow_run_id=result.announcements.get("mlflow_run_id"),
                         metrics={k: v for k, v in result.summary.items()
                                  if isinstance(v, (int, float))})
            tags = {**result.tags, **tags}
        entries.append(entry)
        records.append(RunRecord(name=member.name, status=entry["status"], tags=tags,
                                 metrics=entry.get("metrics", {}),
                                 run_id=entry.get("mlflow_run_id") or ""))
        if interrupted is not None:
            break

    finished = sum(e["status"] == "FINISHED" for e in entries)
    if interrupted is not None:
        status = "KILLED"
    elif finished == 0:
        status = "FAILED"
    rows = build_rows(records)
    table = format_table(rows, "markdown")
    summary = {"runs": len(entries), "finished": finished,
               "failed": sum(e["status"] == "FAILED" for e in entries), "members": entries}
    write_text_atomic(run_dir / "suite.json", json.dumps({"status": status, **summary}, indent=2,
                                                         default=str))
    write_text_atomic(run_dir / "compare.md", table)
    write_text_atomic(run_dir / "compare.csv", format_table(rows, "csv"))
    info.artifacts.extend([run_dir / "suite.json", run_dir / "compare.md", run_dir / "compare.csv"])
    try:
        plots = [plot_accuracy_vs_cost(rows, run_dir / "accuracy_vs_cost.png")]
        plots += [plot_sweep(rows, key, run_dir / f"sweep_{safe_filename(key)}.png")
                  for key in plan.sweep_keys]
        info.artifacts.extend(p for p in plots if p is not None)
    except Exception as exc:  # a plot must never lose the suite's results
        progress.info(f"Could not draw the comparison plots: {exc}")
    call_observers(plugins, "on_suite_end", suite=info, status=status, summary=summary)
    if interrupted is not None:
        raise interrupted
    return SuiteResult(run_dir=run_dir, records=tuple(records), table=table, status=status,
                       announcements=dict(info.announcements))


def _row_tags(resolved: ResolvedRecipe) -> dict[str, str]:
    """The row-defining tags of a member, known before it runs (so failures land in its row)."""
    recipe = resolved.recipe
    tags = {"strategy": recipe.strategy.name, "binarizer": recipe.binarizer.name}
    tags.update({str(k): str(v) for k, v in resolved.strategy.tags().items()})
    return tags
