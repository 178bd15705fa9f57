"""Run every member of a suite (see `automl_bin.suite`) and compare them.

Members run one after the other with the runner of a single recipe, each its own tracked run
(nested under the suite's run in MLflow). A failed member is recorded as failed and the others
still run; Ctrl-C or SIGTERM stops the suite after marking the current member KILLED. The suite
folder's ``suite.json`` (every member's status, metrics, folder and run id) is rewritten after
each member; at the end the folder also holds ``compare.md``/``compare.csv`` (the comparison
table), ``accuracy_vs_cost.png`` and, for a sweep, ``sweep_<key>.png`` per swept key; trackers
attach them to the suite's run.

``automl-bin run --resume SUITE_FOLDER`` continues an interrupted suite (`find_suite_resume`):
finished members are kept as they are, a member stopped with a checkpoint resumes from it, and
the others run, all in the same suite folder and suite run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from automl_bin import hookimpl
from automl_bin.checkpoint import write_text_atomic
from automl_bin.compare import WEIGHT_IMAGES, RunRecord, build_rows, format_table, safe_filename
from automl_bin.errors import AutomlBinError, UsageError
from automl_bin.plots.compare import plot_accuracy_vs_cost, plot_sweep
from automl_bin.plugins import PluginSet, call_observers
from automl_bin.progress import Progress
from automl_bin.recipe import ResolvedRecipe, resolve
from automl_bin.dead_runs import mark_dead_run_killed
from automl_bin.resume import ResumePoint, check_recipe_changes, find_resume_point
from automl_bin.run_lock import acquire_run_lock
from automl_bin.run_info import SuiteInfo
from automl_bin.runner import RunInterrupted, new_run_dir, recipe_to_toml, run
from automl_bin.suite import Member, SuitePlan

__all__ = ["SUITE_FILE", "SuiteResult", "SuiteResume", "find_suite_resume", "resolve_plan",
           "run_suite"]

SUITE_FILE = "suite.json"


@attrs.frozen(kw_only=True)
class SuiteResult:
    run_dir: Path
    records: tuple[RunRecord, ...]
    table: str
    status: str
    announcements: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class SuiteResume:
    """Where an interrupted suite continues: its folder, recipe and members so far."""

    run_dir: Path
    #: the suite's recipe file as it ran (its folder's recipe.toml)
    recipe_text: str
    #: ``suite.json``'s member entries, by run name
    entries: dict[str, dict[str, Any]]
    #: the suite's announcements (``mlflow_suite_run_id``, ...)
    announcements: dict[str, Any]
    #: recipe keys (or tables) whose change since a member's checkpoint ``--allow-changes``
    #: accepts
    allowed_changes: tuple[str, ...] = ()


def find_suite_resume(folder: Path) -> SuiteResume:
    """The resume point of the suite in ``folder``, or a one-paragraph reason why there is none."""
    state_file, recipe = folder / SUITE_FILE, folder / "recipe.toml"
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
        recipe_text = recipe.read_text(encoding="utf-8")
    except (OSError, ValueError) as exc:
        raise UsageError(f"Cannot resume the suite in {str(folder)!r}: its {SUITE_FILE} or "
                         f"recipe.toml cannot be read ({exc}).") from exc
    if state.get("status") == "FINISHED" and not any(
            e.get("status") != "FINISHED" for e in state.get("members", [])):
        raise UsageError(f"Every run of the suite in {str(folder)!r} FINISHED; there is nothing "
                         "to resume. Compare it with `automl-bin compare EXPERIMENT`.")
    return SuiteResume(run_dir=folder, recipe_text=recipe_text,
                       entries={e["name"]: e for e in state.get("members", []) if "name" in e},
                       announcements=dict(state.get("announcements", {})))


def resolve_plan(plan: SuitePlan, plugins: PluginSet) -> list[ResolvedRecipe]:
    """Resolve every member before anything runs, so a bad member fails the suite at once."""
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
    if member.reference:  # compare gathers these runs into the reference row
        tags["reference"] = member.reference
    tags.update({f"sweep.{k}": str(v) for k, v in member.sweep.items()})
    return tags


def run_suite(plan: SuitePlan, resolved: Sequence[ResolvedRecipe], plugins: PluginSet,
              progress: Progress | None = None, *, resume: SuiteResume | None = None
              ) -> SuiteResult:
    """Run the members of ``plan`` (resolved by `resolve_plan`) and write the comparison.

    :param resume: continue the interrupted suite this describes (``plan`` must come from its
        recipe.toml): its finished members are kept, the others resumed or run.
    """
    progress = progress or Progress()
    first = plan.members[0].recipe
    if resume is None:
        run_dir = new_run_dir(first.experiment.output_dir, f"{plan.name}-suite")
        lock = acquire_run_lock(run_dir)
        write_text_atomic(run_dir / "recipe.toml", recipe_to_toml(plan.raw))
    else:
        run_dir = resume.run_dir
        lock = acquire_run_lock(run_dir)  # a suite being resumed twice at once is refused
    try:
        if resume is not None:  # refuse edited member recipes before anything runs
            for member, rec in zip(plan.members, resolved):
                try:
                    _member_resume_point(resume.entries.get(member.name, {}), rec,
                                         resume.allowed_changes)
                except UsageError as exc:
                    raise UsageError(f"Suite member {member.name!r} (its recipe is the suite's "
                                     f"recipe.toml in {str(run_dir)!r}): {exc}") from exc
        return _run_suite_in(plan, resolved, plugins, progress, resume, run_dir)
    finally:
        lock.release()


def _run_suite_in(plan: SuitePlan, resolved: Sequence[ResolvedRecipe], plugins: PluginSet,
                  progress: Progress, resume: SuiteResume | None, run_dir: Path
                  ) -> SuiteResult:
    """`run_suite` in its (locked) folder."""
    first = plan.members[0].recipe
    info = SuiteInfo(name=plan.name, recipe=first, recipe_text=recipe_to_toml(plan.raw),
                     run_dir=run_dir, members=tuple(m.name for m in plan.members),
                     sweep_keys=plan.sweep_keys,
                     tags={"automl_bin.suite_runs": str(len(plan.members)),
                           "dataset": first.data.name},
                     resume=dict(resume.announcements) if resume is not None else None)
    call_observers(plugins, "on_suite_start", suite=info)
    for key, value in info.announcements.items():
        progress.info(f"{key}: {value}")
    progress.info(f"Suite folder: {run_dir} ({len(plan.members)} runs)")

    records: list[RunRecord] = []
    entries: list[dict[str, Any]] = []
    before = resume.entries if resume is not None else {}
    search = _SearchMetrics()  # listens only while this suite's members run
    plugins.pm.register(search, name=f"automl_bin.suite_search_metrics.{id(search)}")
    try:
        interrupted = _run_members(plan, resolved, plugins, progress, info, run_dir, before,
                                   search, records, entries,
                                   resume.allowed_changes if resume is not None else ())
    finally:
        plugins.pm.unregister(search)
    status = "FINISHED"
    if interrupted is not None:
        status = "KILLED"
    elif not any(e["status"] == "FINISHED" for e in entries):
        status = "FAILED"
    return _finish_suite(plan, plugins, progress, info, run_dir, status, records, entries,
                         interrupted)


class _SearchMetrics:
    """Keeps the running member's latest search metrics: the table's ``weight_images`` is a
    search metric (strategies log the running total every epoch, some also at the end), and a
    run's summary holds only ``search_seconds`` of them."""

    def __init__(self) -> None:
        self.metrics: dict[str, float] = {}

    @hookimpl
    def on_epoch_end(self, phase: str, metrics: Any) -> None:
        if phase == "search":
            self.metrics.update(metrics)

    @hookimpl
    def on_search_end(self, metrics: Any) -> None:
        self.metrics.update(metrics)


def _run_members(plan: SuitePlan, resolved: Sequence[ResolvedRecipe], plugins: PluginSet,
                 progress: Progress, info: SuiteInfo, run_dir: Path,
                 before: dict[str, dict[str, Any]], search: _SearchMetrics,
                 records: list[RunRecord], entries: list[dict[str, Any]],
                 allowed: Sequence[str]) -> RunInterrupted | None:
    """Run (or keep) every member, appending to ``records`` and ``entries``; the interrupt
    that stopped the suite, if one did."""
    interrupted: RunInterrupted | None = None
    for i, (member, rec) in enumerate(zip(plan.members, resolved), start=1):
        tags = {**_row_tags(rec), **_member_tags(member)}
        entry: dict[str, Any] = {"name": member.name, "label": member.label,
                                 "seed": member.seed, "sweep": dict(member.sweep)}
        earlier = before.get(member.name, {})
        if earlier.get("status") == "FINISHED":  # kept from before the interruption
            progress.info(f"[{i}/{len(plan.members)}] {member.name}: finished before, kept")
            entries.append(earlier)
            records.append(RunRecord(name=member.name, status="FINISHED",
                                     tags={**tags, **earlier.get("tags", {}),
                                           "genotype": str(earlier.get("genotype", ""))},
                                     metrics=earlier.get("metrics", {}),
                                     run_id=earlier.get("mlflow_run_id") or ""))
            continue
        progress.info(f"[{i}/{len(plan.members)}] {member.name}")
        point = _member_resume_point(earlier, rec, allowed)
        if point is not None:
            progress.info(f"Resuming {member.name} in {point.run_dir}")
        search.metrics = {}
        result = None
        try:
            result = run(rec, plugins, progress, suite=info, extra_tags=tags, resume=point)
        except RunInterrupted as exc:
            entry.update(status="KILLED", error=str(exc), run_dir=_folder(exc))
            interrupted = exc
        except (AutomlBinError, Exception) as exc:  # a member's failure is its own
            entry.update(status="FAILED", error=f"{type(exc).__name__}: {exc}",
                         run_dir=_folder(exc))
            progress.info(f"[{i}/{len(plan.members)}] {member.name} FAILED: {exc}")
        else:
            tags = {**result.tags, **tags, "genotype": str(result.genotype)}
            entry.update(status="FINISHED", run_dir=str(result.run_dir),
                         genotype=str(result.genotype),
                         mlflow_run_id=result.announcements.get("mlflow_run_id"),
                         metrics=_run_metrics(result.summary, search.metrics), tags=tags)
        entries.append(entry)
        records.append(RunRecord(name=member.name, status=entry["status"], tags=tags,
                                 metrics=entry.get("metrics", {}),
                                 run_id=entry.get("mlflow_run_id") or ""))
        if interrupted is None and result is not None and result.signal is not None:
            # Ctrl-C/SIGTERM reached this member but did not stop it (e.g. it came while the
            # run was ending): the member's result stands, the suite stops here
            interrupted = RunInterrupted(f"signal {result.signal} during {member.name}")
        if interrupted is not None:
            break
        # after every member: a suite killed outright still says what it has done
        _write_state(run_dir, "RUNNING", entries, info)
    return interrupted


def _run_metrics(summary: Mapping[str, Any], search: Mapping[str, Any]) -> dict[str, float]:
    """A finished run's numeric summary, plus ``weight_images`` from its search metrics when
    the summary lacks it (a resumed run whose search had finished reports none: then –)."""
    out = {k: v for k, v in summary.items() if isinstance(v, (int, float))}
    if WEIGHT_IMAGES not in out and isinstance(search.get(WEIGHT_IMAGES), (int, float)):
        out[WEIGHT_IMAGES] = search[WEIGHT_IMAGES]
    return out


def _finish_suite(plan: SuitePlan, plugins: PluginSet, progress: Progress, info: SuiteInfo,
                  run_dir: Path, status: str, records: list[RunRecord],
                  entries: list[dict[str, Any]], interrupted: RunInterrupted | None
                  ) -> SuiteResult:
    """Write the comparison (table, CSV, plots) and suite.json, end the suite's observers, and
    raise the suite-level interrupt when a member was interrupted."""
    finished = sum(e["status"] == "FINISHED" for e in entries)
    rows = build_rows(records)
    table = format_table(rows, "markdown")
    summary = _write_state(run_dir, status, entries, info)
    write_text_atomic(run_dir / "compare.md", table)
    write_text_atomic(run_dir / "compare.csv", format_table(rows, "csv"))
    info.artifacts.extend([run_dir / SUITE_FILE, run_dir / "compare.md", run_dir / "compare.csv"])
    try:
        plots = [plot_accuracy_vs_cost(rows, run_dir / "accuracy_vs_cost.png")]
        plots += [plot_sweep(rows, key, run_dir / f"sweep_{safe_filename(key)}.png")
                  for key in plan.sweep_keys]
        info.artifacts.extend(p for p in plots if p is not None)
    except Exception as exc:  # a plot must never lose the suite's results
        progress.info(f"Could not draw the comparison plots: {exc}")
    call_observers(plugins, "on_suite_end", suite=info, status=status, summary=summary)
    if interrupted is not None:
        stopped = RunInterrupted(
            f"Suite interrupted; the run it was in is marked KILLED with its last checkpoint "
            f"kept, and the {finished} finished run(s) are recorded in {run_dir / SUITE_FILE}. "
            f"Continue the suite (finished runs are kept, the interrupted one resumes from its "
            f"checkpoint) with: automl-bin run --resume {run_dir}")
        stopped.run_dir = run_dir
        raise stopped from interrupted
    return SuiteResult(run_dir=run_dir, records=tuple(records), table=table, status=status,
                       announcements=dict(info.announcements))


def _write_state(run_dir: Path, status: str, entries: list[dict[str, Any]],
                 info: SuiteInfo) -> dict[str, Any]:
    """Write ``suite.json``; returns its summary (counts, members, the suite's announcements)."""
    summary = {"runs": len(entries), "finished": sum(e["status"] == "FINISHED" for e in entries),
               "failed": sum(e["status"] == "FAILED" for e in entries), "members": entries,
               "announcements": {k: v for k, v in info.announcements.items()
                                 if isinstance(v, (str, int, float))}}
    write_text_atomic(run_dir / SUITE_FILE, json.dumps({"status": status, **summary}, indent=2,
                                                       default=str))
    return summary


def _folder(exc: BaseException) -> str | None:
    """The run folder a member's error names (a run stopped with a checkpoint), if any."""
    run_dir = getattr(exc, "run_dir", None)
    return str(run_dir) if run_dir is not None else None


def _member_resume_point(entry: dict[str, Any], rec: ResolvedRecipe,
                         allowed: Sequence[str]) -> ResumePoint | None:
    """Where an interrupted member continues, or None to run it from the start (it had no
    folder or no finished search epoch yet). A member whose process died is marked KILLED;
    one whose recipe in the suite's recipe.toml changed since its checkpoint is refused
    unless the suite resume allows the change (`check_recipe_changes`)."""
    folder = entry.get("run_dir")
    if not folder or entry.get("status") == "FINISHED":
        return None
    if Path(folder).is_dir():
        mark_dead_run_killed(Path(folder))
    try:
        point = find_resume_point(Path(folder))
    except UsageError:
        return None
    point = attrs.evolve(point, recipe_text=recipe_to_toml(rec.recipe.raw))
    return check_recipe_changes(point, allowed)


def _row_tags(resolved: ResolvedRecipe) -> dict[str, str]:
    """The row-defining tags of a member, known before it runs (so failures land in its row)."""
    recipe = resolved.recipe
    tags = {"strategy": recipe.strategy.name, "binarizer": recipe.binarizer.name}
    tags.update({str(k): str(v) for k, v in resolved.strategy.tags().items()})
    return tags
