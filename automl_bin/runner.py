"""The runner: owns the run loop of ``automl-bin run``.

`run` seeds, loads and splits the data and creates a fresh output folder; a `Run` then drives
the strategy epoch by epoch (checkpointing after each), retrains the derived genotype with the
retrain estimator, and fires the lifecycle hooks that trackers observe. Ctrl-C or SIGTERM end
the run as ``KILLED`` with the last checkpoint kept; an exception ends it as ``FAILED``. What a
resumed run had finished and where it continues is `automl_bin.resume`'s business.

Under torchrun (``WORLD_SIZE`` > 1) every rank runs this same function on its slice of each
training batch (`automl_bin.distributed`); only rank 0 calls the observers (MLflow), prints and
writes the run folder. The other ranks write to a throw-away folder, so the code path is the
same on all of them.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import random
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

import automl_bin
from automl_bin import distributed
from automl_bin.alpha_progress import alpha_margin, alpha_progress, static_alpha_warning
from automl_bin.checkpoint import save_atomic, write_text_atomic
from automl_bin.dead_runs import record_announcements, tag_tracked_run
from automl_bin.diagnostics import search_diagnostics
from automl_bin.errors import AutomlBinError, StopRun, UsageError
from automl_bin.finite_check import check_metrics, check_search_epoch
from automl_bin.interfaces import Estimate, EstimationEnv, Genotype, SearchEnv
from automl_bin.phase_reporter import PhaseReporter
from automl_bin.plots.run import (OpWeightSnapshot, snapshot_op_weights, write_curves,
                                  write_search_plots)
from automl_bin.plugins import PluginSet, call_observers
from automl_bin.progress import Progress
from automl_bin.recipe import ResolvedRecipe, flatten
from automl_bin.resume import (CHECKPOINT, ResumePoint, load_state, mark_logged,
                               mark_search_done, replay_reported, save_checkpoint,
                               search_checkpoint)
from automl_bin.run_info import RunInfo, SuiteInfo
from automl_bin.run_lock import acquire_run_lock

__all__ = ["Run", "RunResult", "RunInterrupted", "run", "new_run_dir", "recipe_to_toml"]


#: the run folder's record of the recipe changes each ``--resume --allow-changes`` accepted
RESUME_CHANGES_FILE = "resume_changes.json"
#: the tag holding them on the tracked run
RESUME_CHANGES_TAG = "automl_bin.resume_changes"
#: the key a diverged retraining suggests lowering
RETRAIN_LR_KEY = "`[retrain] lr`"


class RunInterrupted(AutomlBinError):
    """The run was stopped by Ctrl-C or SIGTERM; it is marked KILLED, checkpoints are kept."""

    exit_code = 130


@attrs.frozen(kw_only=True)
class RunResult:
    run_dir: Path
    genotype: Genotype
    summary: Mapping[str, Any]
    announcements: Mapping[str, Any]
    estimate: Estimate | None = None
    #: the run's tags (strategy, versions, device, recipe hash, suite label, ...)
    tags: Mapping[str, str] = attrs.field(factory=dict)
    #: a SIGTERM/SIGINT that arrived but did not stop the run (a library swallowed the
    #: KeyboardInterrupt, or it came while the run was ending): a suite stops after this run
    signal: int | None = None


def new_run_dir(output_dir: str | Path, experiment: str) -> Path:
    """A folder that did not exist before: ``output_dir/<experiment>/<time>-<random>``."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(output_dir) / experiment
    for _ in range(100):
        path = base / f"{stamp}-{secrets.token_hex(3)}"
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a fresh run folder under {base}")


def recipe_to_toml(raw: Mapping[str, Any]) -> str:
    import tomli_w

    return tomli_w.dumps(dict(raw))


def seed_everything(seed: int, deterministic: bool) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)


def pick_device(name: str) -> Any:
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("[experiment] device = \"cuda\" but no CUDA device is available; use "
                         "\"auto\" or \"cpu\".")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


@attrs.define
class _Signals:
    """What `_signals_as_interrupt` saw: the first SIGTERM/SIGINT, and whether the next one
    may still raise (``armed``)."""

    received: int | None = None
    armed: bool = True

    def flush(self) -> None:
        """Nothing: calling it lets Python run a handler still pending (signal handlers run
        at function entries), after the caller disarmed it."""


@contextmanager
def _signals_as_interrupt() -> Iterator[_Signals]:
    """SIGTERM and SIGINT raise KeyboardInterrupt once: the run checkpoints and is marked
    KILLED. After the first, or once the runner disarms it to end the run, a signal is only
    recorded, so ending the run is not cut short (a second one still stops at once). A signal
    can come while a data-parallel rank waits in a collective that then fails because its peer
    stopped: the runner checks ``received`` before calling that failure FAILED."""
    signals = _Signals()

    def handler(signum: int, frame: Any) -> None:
        first = signals.received is None
        signals.received = signals.received or signum
        if signals.armed or not first:
            signals.armed = False
            raise KeyboardInterrupt(f"signal {signum}")

    previous: dict[int, Any] = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not in the main thread
        pass
    try:
        yield signals
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _device_name(device: Any) -> str:
    """``cpu`` or ``cuda (NVIDIA H100 ...)``: the search cost column of ``compare`` names it."""
    if getattr(device, "type", "cpu") == "cuda":
        import torch

        return f"cuda ({torch.cuda.get_device_name(device)})"
    return str(getattr(device, "type", device))


def _tags(resolved: ResolvedRecipe, plugins: PluginSet) -> dict[str, str]:
    recipe = resolved.recipe
    tags = {
        "strategy": recipe.strategy.name,
        "search_space": recipe.search_space.name,
        "binarizer": recipe.binarizer.name,
        "dataset": recipe.data.name,
        "automl_bin_version": automl_bin.__version__,
        "recipe_sha256": recipe.sha256,
        "recipe_source": recipe.source,
    }
    components = [("strategy", recipe.strategy.name), ("search_space", recipe.search_space.name),
                  ("binarizer", recipe.binarizer.name), ("dataset", recipe.data.name)]
    if recipe.retrain.enabled:
        components.append(("estimator", recipe.retrain.estimator))
    for kind, name in components:
        entry = plugins.registry.get(kind, name)
        tags[f"plugin.{kind}"] = f"{entry.distribution} {entry.version}".strip()
    for key, value in resolved.strategy.tags().items():
        tags.setdefault(str(key), str(value))
    return tags


def run(resolved: ResolvedRecipe, plugins: PluginSet, progress: Progress | None = None, *,
        suite: SuiteInfo | None = None, extra_tags: Mapping[str, str] | None = None,
        resume: ResumePoint | None = None) -> RunResult:
    """Execute a resolved recipe end to end; see the module docstring.

    :param suite: the suite this run is a member of (trackers nest it under the suite's run).
    :param extra_tags: tags added to the run's (e.g. the member's label and swept values).
    :param resume: continue an interrupted run (same folder, same tracked run) after the last
        epoch of its search checkpoint; ``resolved`` must come from its recipe.toml.
    """
    import torch

    progress = progress or Progress()
    exp = resolved.recipe.experiment
    if exp.threads > 0:
        torch.set_num_threads(exp.threads)
    seed_everything(exp.seed, exp.deterministic)
    device = pick_device(exp.device)
    dist = distributed.from_env(device.type)
    try:
        return _run(resolved, plugins, progress, suite=suite, extra_tags=extra_tags,
                    resume=resume, device=device, dist=dist)
    finally:
        distributed.shutdown(dist)


def _check_data_parallel(resolved: ResolvedRecipe, suite: SuiteInfo | None) -> None:
    """Refuse what would silently diverge across ranks: code that does not average its
    gradients over ranks, and suites (each member would need its own process group)."""
    recipe = resolved.recipe
    if suite is not None:
        raise UsageError("Data-parallel runs (torchrun, automl-bin run --nproc) take one recipe, "
                         "not a suite; run the suite's members one by one, or without --nproc.")
    if not getattr(resolved.strategy, "supports_data_parallel", False):
        raise UsageError(f"Strategy {recipe.strategy.name!r} does not support data-parallel "
                         "runs (torchrun, automl-bin run --nproc): only strategies that "
                         "average their gradients over ranks (supports_data_parallel, e.g. "
                         "those on the one-shot base) do. Run it in one process.")
    est = resolved.retrain_estimator
    if est is not None and not getattr(est, "supports_data_parallel", False):
        raise UsageError(f"Estimator {recipe.retrain.estimator!r} does not support data-parallel "
                         "retraining; use the 'retrain' estimator or run in one process.")


def _run(resolved: ResolvedRecipe, plugins: PluginSet, progress: Progress, *,
         suite: SuiteInfo | None, extra_tags: Mapping[str, str] | None,
         resume: ResumePoint | None, device: Any, dist: distributed.DistContext | None
         ) -> RunResult:
    if dist is not None:
        _check_data_parallel(resolved, suite)
        plugins, progress, device = _as_rank(plugins, progress, device, dist)
    data, splits = _load_data(resolved, progress, device, dist)
    recipe_text = recipe_to_toml(resolved.recipe.raw)
    with _run_folder(resolved, recipe_text, resume, dist) as run_dir:
        tags = {**_tags(resolved, plugins), "device": _device_name(device), **(extra_tags or {})}
        info = RunInfo(recipe=resolved.recipe, recipe_text=recipe_text, run_dir=run_dir,
                       params=flatten(resolved.recipe.raw), tags=tags, resolved=resolved,
                       suite=suite,
                       resume=dict(resume.announcements) if resume is not None else None)
        return Run(resolved=resolved, plugins=plugins, progress=progress, info=info,
                   device=device, dist=dist, data=data, splits=splits, resume=resume).execute()


def _as_rank(plugins: PluginSet, progress: Progress, device: Any,
             dist: distributed.DistContext) -> tuple[PluginSet, Progress, Any]:
    """This rank's plugins, progress and device: the other ranks than 0 run the same
    computation with nothing tracked or printed."""
    import torch

    if device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    if not dist.is_main:
        plugins = distributed.without_observers(plugins)
        progress = Progress(enabled=False)
    return plugins, progress, device


def _load_data(resolved: ResolvedRecipe, progress: Progress, device: Any,
               dist: distributed.DistContext | None) -> tuple[Any, dict[str, Any]]:
    """The data set and its batched splits (each rank's slice of each training batch)."""
    from automl_bin.data import make_splits

    recipe = resolved.recipe
    progress.info(f"Loading data set {recipe.data.name!r} ...")
    data = resolved.dataset.load()
    splits = make_splits(data, batch_size=recipe.data.batch_size,
                         eval_batch_size=recipe.data.eval_batch_size,
                         train_portion=recipe.data.train_portion, subset=recipe.data.subset,
                         seed=recipe.experiment.seed, device=device)
    if dist is not None:  # every rank walks the same batches and trains on its slice of each
        splits = {name: distributed.ShardedBatches(batches, dist) if name != "test" else batches
                  for name, batches in splits.items()}
    return data, splits


@contextmanager
def _run_folder(resolved: ResolvedRecipe, recipe_text: str, resume: ResumePoint | None,
                dist: distributed.DistContext | None) -> Iterator[Path]:
    """The run's folder: the interrupted run's when resuming, else a fresh one holding
    recipe.toml; ranks other than 0 get a throw-away folder, removed afterwards. The folder
    is locked (`automl_bin.run_lock`) while the run lives."""
    if dist is not None and not dist.is_main:
        run_dir = Path(tempfile.mkdtemp(prefix=f"automl-bin-rank{dist.rank}-"))
        try:
            yield run_dir
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
        return
    if resume is not None:
        run_dir = resume.run_dir
        lock = acquire_run_lock(run_dir)  # a second process resuming a live run is refused
    else:
        exp = resolved.recipe.experiment
        run_dir = new_run_dir(exp.output_dir, exp.name)
        lock = acquire_run_lock(run_dir)
        write_text_atomic(run_dir / "recipe.toml", recipe_text)
    try:
        yield run_dir
    finally:
        lock.release()


@attrs.define(kw_only=True, eq=False)
class Run:
    """One run of a resolved recipe in its folder: start, search, retrain, then finish or fail.

    `execute` calls the phases in order; what they share (the summary, the phase in progress,
    the genotype, the operation-weight history, the search clock) lives here. Resume
    bookkeeping (which phase had finished, where the search continues, the checkpoint and its
    markers) is `automl_bin.resume`'s.
    """

    resolved: ResolvedRecipe
    plugins: PluginSet
    progress: Progress
    #: what the lifecycle hooks observe (its run_dir is this run's folder)
    info: RunInfo
    device: Any
    dist: distributed.DistContext | None
    #: the loaded data set (shapes, classes) and its batched splits
    data: Any
    splits: Mapping[str, Any]
    #: where an interrupted run continues, or None for a fresh run
    resume: ResumePoint | None = None

    #: written to summary.json and passed to on_run_end
    summary: dict[str, Any] = attrs.field(factory=dict)
    #: the phase whose on_phase_end is still owed (None between phases)
    phase: str | None = None
    genotype: Genotype | None = None
    estimate: Estimate | None = None
    #: the strategy's operation weights after each search epoch (progress metrics and plots)
    weight_history: list[OpWeightSnapshot] = attrs.field(factory=list)
    #: search seconds spent before this process (resumed runs), and when this one's began
    seconds_before: float = 0.0
    search_started: float = 0.0
    #: the first checkpoint this process wrote was read back (`_verify_checkpoint`)
    checkpoint_verified: bool = False

    @property
    def run_dir(self) -> Path:
        return self.info.run_dir

    @property
    def is_main(self) -> bool:
        """Rank 0 (or the only process): the one that writes plots and the model."""
        return self.dist is None or self.dist.is_main

    @property
    def strategy(self) -> Any:
        return self.resolved.strategy

    def execute(self) -> RunResult:
        """Start, search, retrain and finish; on Ctrl-C, SIGTERM or an error, end the run
        (KILLED or FAILED, checkpoints kept) and raise."""
        with _signals_as_interrupt() as signals:
            try:
                self.start()
            except KeyboardInterrupt as exc:
                signals.armed = False
                raise self._interrupted() from exc
            try:
                if signals.received is not None:  # raised inside a library that swallowed it
                    raise KeyboardInterrupt(f"signal {signals.received}")
                self.search()
                self.retrain()
            except StopRun as exc:
                signals.armed = False  # first: no call before it, where a handler could run
                raise self._stopped(exc) from exc
            except KeyboardInterrupt as exc:
                signals.armed = False
                raise self._interrupted() from exc
            except BaseException as exc:
                signals.armed = False
                signals.flush()
                if signals.received is not None:  # e.g. a collective whose peer was stopped
                    raise self._interrupted() from exc
                self.end("FAILED", error=self.plugins.registry.failure_message(
                    exc, self.resolved.components))
                raise
            signals.armed = False
            self.end("FINISHED")
        assert self.genotype is not None
        return RunResult(run_dir=self.run_dir, genotype=self.genotype, summary=self.summary,
                         announcements=dict(self.info.announcements), estimate=self.estimate,
                         tags=dict(self.info.tags), signal=signals.received)

    # ---- set-up --------------------------------------------------------------------------------
    def start(self) -> None:
        """Fire on_run_start and print what the observers announce (e.g. the MLflow run id);
        an unreachable tracking store stops the run before anything is trained."""
        self.progress.info(f"Run folder: {self.run_dir}")
        try:
            call_observers(self.plugins, "on_run_start", run=self.info)
        except StopRun as exc:
            write_text_atomic(self.run_dir / "summary.json", json.dumps(
                {"status": "FAILED", "error": str(exc)}, indent=2))
            raise StopRun(f"{exc} Nothing was trained. Start the run again when it is "
                          "reachable, or set [tracking] on_error = \"continue\" to run "
                          "untracked.") from exc
        if self.is_main:  # a run whose process dies is found and closed from these
            record_announcements(self.run_dir, self.info.announcements)
        for key, value in self.info.announcements.items():
            self.progress.info(f"{key}: {value}")
        if self.resume is not None and self.resume.accepted_changes:
            self._log_accepted_changes(self.resume.accepted_changes)

    def _log_accepted_changes(self, changes: Mapping[str, tuple[str | None, str | None]]
                              ) -> None:
        """Print the recipe changes ``--allow-changes`` accepted, append them to the run
        folder's resume_changes.json and tag the tracked run with them (its params keep the
        values it started with: MLflow params cannot change)."""
        text = "; ".join(f"{k}: {a} -> {b}" for k, (a, b) in changes.items())
        self.progress.info(f"Resuming with recipe changes (--allow-changes): {text}")
        if not self.is_main:
            return
        path = self.run_dir / RESUME_CHANGES_FILE
        try:
            history = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            history = []
        history.append({"resumed_at": _dt.datetime.now().isoformat(timespec="seconds"),
                        "changes": {k: {"before": a, "after": b}
                                    for k, (a, b) in changes.items()}})
        write_text_atomic(path, json.dumps(history, indent=2))
        tag_tracked_run(self.info.announcements, RESUME_CHANGES_TAG, text[:5000])

    def _create(self, kind: str, name: str, config: Any = None) -> Any:
        return self.plugins.registry.create(kind, name, config)

    # ---- search --------------------------------------------------------------------------------
    def search(self) -> None:
        """Set the strategy up, run its remaining epochs (checkpoint, then report, each) and
        derive the genotype; a search that had finished before an interruption is not run or
        reported again."""
        self.phase = "search"
        # stopped while retraining: the finished search is not reported again
        done = self.resume is not None and self.resume.search_done
        if not done:
            call_observers(self.plugins, "on_phase_start", run=self.info, phase=self.phase)
        reporter = PhaseReporter(self.plugins, self.info, self.phase, self.progress)
        self.search_started = time.perf_counter()
        self.strategy.setup(self._search_env(reporter))
        epochs = self.strategy.num_epochs()
        first_epoch = 0 if self.resume is None else self._resume_search(reporter, epochs, done)
        for epoch in range(first_epoch, epochs):
            self._search_epoch(reporter, epoch)
        self._finish_search(reporter, done)
        self.phase = None

    def _search_env(self, reporter: PhaseReporter) -> SearchEnv:
        resolved = self.resolved
        return SearchEnv(space=resolved.search_space, binarizer=resolved.binarizer,
                         input_shape=self.data.input_shape, num_classes=self.data.num_classes,
                         device=self.device, seed=resolved.recipe.experiment.seed,
                         splits=self.splits, reporter=reporter,
                         estimator=resolved.search_estimator, create=self._create,
                         network=attrs.asdict(resolved.network), dist=self.dist)

    def _search_seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.search_started

    def _resume_search(self, reporter: PhaseReporter, epochs: int, done: bool) -> int:
        """Restore the strategy, RNGs, weight history and reported epochs of the interrupted
        run; returns the epoch the search continues at."""
        resume = self.resume
        assert resume is not None
        resume.restore_search(self.strategy)
        self.weight_history.extend(OpWeightSnapshot(e, w) for e, w in resume.op_weights)
        self.seconds_before = resume.search_seconds
        if done:
            reporter.epochs.extend(resume.reported_epochs)
        else:
            if resume.next_epoch < epochs:
                self.progress.info(f"Resuming the search at epoch {resume.next_epoch + 1} of "
                                   f"{epochs}")
            replay_reported(reporter, resume.reported_epochs, self.run_dir)
        return resume.next_epoch

    def _search_epoch(self, reporter: PhaseReporter, epoch: int) -> None:
        """One strategy epoch with the runner's metrics, checkpointed before it is reported."""
        t0 = time.perf_counter()
        metrics = dict(self.strategy.run_epoch(epoch))
        # before anything is derived or checkpointed from a diverged search: losses, α
        check_search_epoch(epoch, metrics, None, distributed.arch_parameters_of(self.strategy))
        metrics["epoch_seconds"] = time.perf_counter() - t0
        # arch.* counts of the genotype derived now: collapse shows epoch by epoch
        metrics.update(search_diagnostics(self.strategy, self.resolved.search_space))
        metrics.update(self._snapshot_weights(reporter, epoch))
        if self.weight_history and self.weight_history[-1].epoch == epoch:
            check_search_epoch(epoch, {}, self.weight_history[-1].weights, ())
        state = search_checkpoint(
            epoch=epoch, strategy_state=self.strategy.state_dict(),
            recipe_text=self.info.recipe_text, search_seconds=self._search_seconds(),
            epochs=[*reporter.epochs, (epoch, metrics)],
            op_weights=[(w.epoch, w.weights) for w in self.weight_history],
            announcements=self.info.announcements)
        save_checkpoint(state, self.run_dir / CHECKPOINT)
        if not self.checkpoint_verified:
            _verify_checkpoint(self.run_dir / CHECKPOINT, state)
            self.checkpoint_verified = True
        reporter.log_epoch(epoch, metrics)
        mark_logged(self.run_dir, "search", epoch)

    def _snapshot_weights(self, reporter: PhaseReporter, epoch: int) -> dict[str, float]:
        """Keep the strategy's operation weights after ``epoch``; for a differentiable one,
        how far they moved (`alpha_progress`)."""
        snapshot = snapshot_op_weights(self.strategy, epoch, reporter)
        if snapshot is None:
            return {}
        moved: dict[str, float] = {}
        if self.strategy.differentiable:
            previous = self.weight_history[-1].weights if self.weight_history else None
            moved = dict(alpha_progress(snapshot.weights, previous))
        self.weight_history.append(snapshot)
        return moved

    def _finish_search(self, reporter: PhaseReporter, done: bool) -> None:
        """Derive the genotype, print it and report the search (unless reported before)."""
        strategy = self.strategy
        self.genotype = strategy.derive()
        ddp_metrics = _check_same_alpha(strategy, self.dist)
        if strategy.differentiable and self.weight_history and not done:
            warning = static_alpha_warning(alpha_margin(self.weight_history[-1].weights),
                                           self.resolved.recipe.strategy.name)
            if warning:
                self.progress.info(warning)
        self.progress.info(f"Genotype: {self.genotype}")
        last_epoch = reporter.epochs[-1][1] if reporter.epochs else {}
        if "weight_images" in last_epoch:  # the search's weight-training budget
            self.summary["weight_images"] = float(last_epoch["weight_images"])
        if done:
            self.summary["search_seconds"] = self.seconds_before
            self.progress.info("The search had finished; resuming the retraining.")
        else:
            self.summary["search_seconds"] = self._search_seconds()
            self._report_search(reporter, ddp_metrics)

    def _report_search(self, reporter: PhaseReporter, ddp_metrics: Mapping[str, float]) -> None:
        """genotype.json, the search plots, on_search_end and on_phase_end; then mark the
        search done so that a resumed run does not report it again."""
        genotype = self.genotype
        assert genotype is not None
        write_text_atomic(self.run_dir / "genotype.json", genotype.to_json())
        reporter.log_artifact(self.run_dir / "genotype.json")
        if self.is_main:
            write_search_plots(reporter, genotype=genotype,
                               op_names=self.resolved.search_space.op_names,
                               history=self.weight_history, epochs=reporter.epochs)
        search_metrics = {"search_seconds": self.summary["search_seconds"],
                          **({"weight_images": self.summary["weight_images"]}
                             if "weight_images" in self.summary else {}),
                          **self.strategy.final_metrics(), **ddp_metrics}
        call_observers(self.plugins, "on_search_end", run=self.info, genotype=genotype,
                       metrics=search_metrics)
        call_observers(self.plugins, "on_phase_end", run=self.info, phase="search",
                       status="FINISHED")
        mark_search_done(self.run_dir, genotype)

    # ---- retrain -------------------------------------------------------------------------------
    def retrain(self) -> None:
        """Retrain the genotype with the retrain estimator (from its last checkpoint when
        resuming) and report it; nothing when the recipe has no retrain estimator."""
        estimator = self.resolved.retrain_estimator
        if estimator is None:
            return
        self.phase = "retrain"
        call_observers(self.plugins, "on_phase_start", run=self.info, phase=self.phase)
        reporter = _FiniteReporter(self.plugins, self.info, self.phase, self.progress,
                                   mark_logged=True)
        state = self.resume.retrain_state() if self.resume is not None else None
        if state is not None:
            replay_reported(reporter, state.get("reported_epochs"), self.run_dir)
        self.estimate = estimator.estimate(self.genotype, self._retrain_env(reporter, state))
        self._report_retrain(reporter, self.estimate)
        self.phase = None

    def _retrain_env(self, reporter: PhaseReporter,
                     state: dict[str, Any] | None) -> EstimationEnv:
        resolved = self.resolved
        return EstimationEnv(space=resolved.search_space, binarizer=resolved.binarizer,
                             input_shape=self.data.input_shape,
                             num_classes=self.data.num_classes, device=self.device,
                             seed=resolved.recipe.experiment.seed, splits=self.splits,
                             fit="train_full", score="test", reporter=reporter,
                             network=attrs.asdict(resolved.network), create=self._create,
                             dist=self.dist, resume=state)

    def _report_retrain(self, reporter: PhaseReporter, estimate: Estimate) -> None:
        """The retrain curves and model, the printed metrics, on_retrain_end, on_phase_end."""
        if self.is_main:
            write_curves(reporter, "retrain_curves.png", reporter.epochs, title="retrain")
        if estimate.model is not None and self.is_main:
            save_atomic(estimate.model.state_dict(), self.run_dir / "model.pt")
            reporter.log_artifact(self.run_dir / "model.pt")
        check_metrics("retrain", max(len(reporter.epochs) - 1, 0), estimate.metrics,
                      RETRAIN_LR_KEY)
        self.summary.update(estimate.metrics)
        self.progress.info("Retrained: " + ", ".join(
            f"{k}={v:.4g}" for k, v in estimate.metrics.items()))
        call_observers(self.plugins, "on_retrain_end", run=self.info, estimate=estimate)
        call_observers(self.plugins, "on_phase_end", run=self.info, phase="retrain",
                       status="FINISHED")

    # ---- finish and failure --------------------------------------------------------------------
    def end(self, status: str, error: str | None = None) -> None:
        """Tear the strategy down, close the phase in progress, write summary.json and fire
        on_run_end with ``status``."""
        if error is not None:
            self.summary["error"] = error
        try:
            self.strategy.teardown()
        finally:
            if self.phase is not None:
                call_observers(self.plugins, "on_phase_end", run=self.info, phase=self.phase,
                               status=status)
            write_text_atomic(self.run_dir / "summary.json", json.dumps(
                {"status": status, **self.summary}, indent=2, default=str))
            call_observers(self.plugins, "on_run_end", run=self.info, status=status,
                           summary=dict(self.summary))

    def _stopped(self, exc: StopRun) -> StopRun:
        """End the run FAILED after a StopRun (e.g. the store went away); the error to raise
        says how to continue it."""
        self.end("FAILED", error=str(exc))
        stop = StopRun(f"{exc} The run stopped with its last checkpoint kept in {self.run_dir}; "
                       "when the store is reachable again, continue it in the same tracked run "
                       f"with: automl-bin run --resume {self.run_dir}")
        stop.run_dir = self.run_dir
        return stop

    def _interrupted(self) -> RunInterrupted:
        """End the run KILLED after Ctrl-C or SIGTERM; the error to raise says how to
        continue it."""
        self.end("KILLED", error="interrupted (Ctrl-C or SIGTERM); the last checkpoint is kept")
        interrupted = RunInterrupted(
            f"Run interrupted; it is marked KILLED and its last checkpoint is kept in "
            f"{self.run_dir}. Continue it with: automl-bin run --resume {self.run_dir}")
        interrupted.run_dir = self.run_dir
        return interrupted


class UnloadableCheckpointError(AutomlBinError):
    """The run's checkpoint holds something ``torch.load(weights_only=True)`` refuses."""


def _verify_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    """Read a just-written checkpoint back as ``--resume`` will (weights_only); a state that
    cannot load fails the run now, naming the offending key and type, instead of after the run
    promised it could be resumed. The unreadable file is removed."""
    try:
        load_state(path)
    except UsageError as exc:
        path.unlink(missing_ok=True)
        where, kind = _unloadable_entry(state) or ("?", "?")
        raise UnloadableCheckpointError(
            f"The run's first checkpoint cannot be read back with torch.load(weights_only=True) "
            f"as --resume must: {where} holds a {kind}. A strategy's state_dict() (and an "
            "estimator's checkpoint) may hold only tensors and plain data (numbers, strings, "
            "lists, tuples, dicts); convert that value (e.g. to a tensor or a list) in the "
            f"plugin's state_dict()/load_state_dict(). ({exc})") from exc


def _unloadable_entry(value: Any, where: str = "checkpoint") -> tuple[str, str] | None:
    """The deepest key path under ``value`` that weights_only refuses, and its type."""
    import io

    import torch

    def loads(item: Any) -> bool:
        buffer = io.BytesIO()
        try:
            torch.save(item, buffer)
            buffer.seek(0)
            torch.load(buffer, weights_only=True)
        except Exception:  # noqa: BLE001 - any refusal means "not loadable"
            return False
        return True

    if loads(value):
        return None
    items: list[tuple[str, Any]] = []
    if isinstance(value, Mapping):
        items = [(f"{where}[{k!r}]", v) for k, v in value.items()]
    elif isinstance(value, (list, tuple)):
        items = [(f"{where}[{i}]", v) for i, v in enumerate(value)]
    for sub_where, item in items:
        found = _unloadable_entry(item, sub_where)
        if found is not None:
            return found
    return where, f"{type(value).__module__}.{type(value).__qualname__}"


class _FiniteReporter(PhaseReporter):
    """The retrain phase's reporter: an epoch with a non-finite metric stops the run."""

    def log_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        check_metrics(self.phase, epoch, metrics, RETRAIN_LR_KEY)
        super().log_epoch(epoch, metrics)


def _check_same_alpha(strategy: Any, dist: distributed.DistContext | None) -> dict[str, float]:
    """``{"ddp_alpha_max_diff": 0.0}`` after checking every rank ended with rank 0's α.

    Averaged gradients keep the ranks bit-identical, so any difference is a bug (a gradient
    some code path forgot to average); stopping beats tracking a genotype only rank 0 holds.
    """
    if dist is None:
        return {}
    alphas = distributed.arch_parameters_of(strategy)
    if not alphas:
        return {}
    diff = distributed.max_divergence(alphas, dist)
    if diff != 0.0:
        raise distributed.DivergedError(
            f"The {dist.world_size} ranks of this data-parallel run ended the search with "
            f"different architecture parameters (largest difference {diff:.3g}); some gradient "
            "was not averaged over ranks. This is a bug in the strategy or in automl-bin; run "
            "in one process (without torchrun / --nproc) and report it.")
    return {"ddp_alpha_max_diff": diff}
