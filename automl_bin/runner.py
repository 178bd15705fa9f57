"""The runner: owns the run loop of ``automl-bin run``.

It seeds, loads and splits the data, creates a fresh output folder, drives the strategy epoch by
epoch (checkpointing after each), retrains the derived genotype with the retrain estimator, and
fires the lifecycle hooks that trackers observe. Ctrl-C or SIGTERM end the run as ``KILLED``
with the last checkpoint kept; an exception ends it as ``FAILED``.

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
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import attrs

import automl_bin
from automl_bin import distributed
from automl_bin.alpha_progress import alpha_margin, alpha_progress, static_alpha_warning
from automl_bin.checkpoint import save_atomic, write_text_atomic
from automl_bin.diagnostics import search_diagnostics
from automl_bin.errors import AutomlBinError, StopRun, UsageError
from automl_bin.interfaces import Estimate, EstimationEnv, Genotype, SearchEnv
from automl_bin.plots.run import (OpWeightSnapshot, snapshot_op_weights, write_curves,
                                  write_search_plots)
from automl_bin.plugins import PluginSet, call_observers
from automl_bin.progress import Progress
from automl_bin.recipe import ResolvedRecipe, flatten
from automl_bin.resume import (CHECKPOINT, CHECKPOINT_FORMAT, ResumePoint, capture_rng,
                               load_state, restore_rng)
from automl_bin.run_info import RunInfo, SuiteInfo

__all__ = ["RunResult", "RunInterrupted", "run", "new_run_dir", "recipe_to_toml"]

T = TypeVar("T")


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


class PhaseReporter:
    """The `automl_bin.interfaces.Reporter` of one phase: turns calls into hook calls."""

    def __init__(self, plugins: PluginSet, run: RunInfo, phase: str, progress: Progress, *,
                 mark_logged: bool = False) -> None:
        self.plugins = plugins
        #: record each reported epoch in the run folder (`_logged_marker`); the search loop
        #: does it itself, since estimators nested in a search report through it too
        self.mark_logged = mark_logged
        self.run = run
        self.phase = phase
        self.progress = progress
        self.work_dir = run.run_dir / phase
        self.work_dir.mkdir(parents=True, exist_ok=True)
        #: ``(epoch, metrics)`` of every `log_epoch`, for the phase's curve plot
        self.epochs: list[tuple[int, dict[str, float]]] = []

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        call_observers(self.plugins, "on_metrics", run=self.run, phase=self.phase,
                       metrics=dict(metrics), step=step)

    def log_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        self.epochs.append((epoch, dict(metrics)))
        self.progress.info(_epoch_line(self.phase, epoch, metrics))
        call_observers(self.plugins, "on_epoch_end", run=self.run, phase=self.phase, epoch=epoch,
                       metrics=dict(metrics))
        if self.mark_logged:  # reached the trackers: a resumed run does not report it again
            write_text_atomic(self.run.run_dir / _logged_marker(self.phase), str(epoch))

    def save_checkpoint(self, state: Mapping[str, Any], name: str | None = None) -> Path:
        name = name or f"{self.phase}_checkpoint.pt"
        if name == CHECKPOINT:
            raise ValueError(f"{CHECKPOINT} is the runner's search checkpoint; a strategy returns "
                             "its state from state_dict() and the runner saves it.")
        return _save_checkpoint(state, self.run.run_dir / name)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        call_observers(self.plugins, "on_artifact", run=self.run, phase=self.phase,
                       path=Path(path), artifact_path=artifact_path)

    def log_json(self, name: str, data: Any) -> Path:
        path = write_text_atomic(self.work_dir / name, json.dumps(data, indent=2, default=str))
        self.log_artifact(path)
        return path

    def track(self, iterable: Iterable[T], total: int | None, description: str) -> Iterator[T]:
        return self.progress.track(iterable, total, description)

    def info(self, message: str) -> None:
        self.progress.info(message)


def _epoch_line(phase: str, epoch: int, metrics: Mapping[str, float]) -> str:
    keys = ("train_loss", "train_acc", "val_acc", "test_acc", "alpha_entropy", "alpha_margin",
            "epoch_seconds")
    # alpha entropy moves in the 4th decimal early in a search: show enough digits to see it
    shown = ", ".join(f"{k}={metrics[k]:.5f}" if k == "alpha_entropy" else f"{k}={metrics[k]:.4g}"
                      for k in keys if k in metrics)
    return f"[{phase}] epoch {epoch + 1}: {shown}"


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


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C: the run checkpoints and is marked KILLED."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not in the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _save_checkpoint(state: Mapping[str, Any], path: Path) -> Path:
    """Write a checkpoint; a full disk stops the run resumably, with the fix."""
    try:
        return save_atomic(state, path)
    except OSError as exc:
        kept = "the previous checkpoint is intact" if path.exists() else "no checkpoint exists yet"
        raise StopRun(f"Could not write the checkpoint {path} ({exc.strerror or exc}); "
                      f"{kept}. Free space on that disk (or fix its permissions).") from exc


def _logged_marker(phase: str) -> str:
    """The file holding the last epoch of ``phase`` whose metrics reached the observers
    (checkpoints are written first, so a resumed run re-reports an epoch cut off between)."""
    return f"{phase}_logged_epoch"


#: written once the search phase, its genotype and plots have reached the observers
SEARCH_DONE = "search_done"


def _logged_epoch(run_dir: Path, phase: str) -> int:
    try:
        return int((run_dir / _logged_marker(phase)).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return -1


def _restore_reported(reporter: PhaseReporter, reported: Any, run_dir: Path) -> None:
    """Put a resumed phase's reported epochs back in its curves, and report the last one
    again when its logging was cut off (it was checkpointed first)."""
    history = [(int(e), dict(m)) for e, m in reported or []]
    if not history:
        return
    reporter.epochs.extend(history[:-1])
    last, last_metrics = history[-1]
    if _logged_epoch(run_dir, reporter.phase) < last:
        reporter.log_epoch(last, last_metrics)
        write_text_atomic(run_dir / _logged_marker(reporter.phase), str(last))
    else:
        reporter.epochs.append((last, last_metrics))


def _plain(values: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON-plain entries of ``values`` (what a weights_only checkpoint may hold)."""
    return {str(k): v for k, v in values.items()
            if isinstance(v, (str, int, float, bool)) or v is None}


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
                         "runs (torchrun, automl-bin run --nproc); the differentiable "
                         "strategies darts, pc_darts and dcp_nas do. Run it in one process.")
    est = resolved.retrain_estimator
    if est is not None and not getattr(est, "supports_data_parallel", False):
        raise UsageError(f"Estimator {recipe.retrain.estimator!r} does not support data-parallel "
                         "retraining; use the 'retrain' estimator or run in one process.")


def _run(resolved: ResolvedRecipe, plugins: PluginSet, progress: Progress, *,
         suite: SuiteInfo | None, extra_tags: Mapping[str, str] | None,
         resume: ResumePoint | None, device: Any, dist: distributed.DistContext | None
         ) -> RunResult:
    import torch

    from automl_bin.data import make_splits

    recipe = resolved.recipe
    exp = recipe.experiment
    main = dist is None or dist.is_main
    if dist is not None:
        _check_data_parallel(resolved, suite)
        if device.type == "cuda":
            device = torch.device("cuda", dist.local_rank)
        if not main:  # same computation, nothing tracked, printed or kept
            plugins = distributed.without_observers(plugins)
            progress = Progress(enabled=False)

    progress.info(f"Loading data set {recipe.data.name!r} ...")
    data = resolved.dataset.load()
    splits = make_splits(data, batch_size=recipe.data.batch_size,
                         eval_batch_size=recipe.data.eval_batch_size,
                         train_portion=recipe.data.train_portion, subset=recipe.data.subset,
                         seed=exp.seed, device=device)
    if dist is not None:  # every rank walks the same batches and trains on its slice of each
        splits = {name: distributed.ShardedBatches(batches, dist) if name != "test" else batches
                  for name, batches in splits.items()}
    recipe_text = recipe_to_toml(recipe.raw)
    if dist is not None and not main:
        run_dir = Path(tempfile.mkdtemp(prefix=f"automl-bin-rank{dist.rank}-"))
        try:
            return _run_in(resolved, plugins, progress, suite, extra_tags, resume, device,
                           dist, splits, data, recipe_text, run_dir)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
    if resume is None:
        run_dir = new_run_dir(exp.output_dir, exp.name)
        write_text_atomic(run_dir / "recipe.toml", recipe_text)
    else:
        run_dir = resume.run_dir
    return _run_in(resolved, plugins, progress, suite, extra_tags, resume, device, dist, splits,
                   data, recipe_text, run_dir)


def _run_in(resolved: ResolvedRecipe, plugins: PluginSet, progress: Progress,
            suite: SuiteInfo | None, extra_tags: Mapping[str, str] | None,
            resume: ResumePoint | None, device: Any, dist: distributed.DistContext | None,
            splits: Mapping[str, Any], data: Any, recipe_text: str, run_dir: Path) -> RunResult:
    """The run proper, in ``run_dir`` (rank 0's or a single process's run folder)."""
    recipe = resolved.recipe
    exp = recipe.experiment
    main = dist is None or dist.is_main
    tags = {**_tags(resolved, plugins), "device": _device_name(device), **(extra_tags or {})}
    info = RunInfo(recipe=recipe, recipe_text=recipe_text, run_dir=run_dir,
                   params=flatten(recipe.raw), tags=tags, resolved=resolved, suite=suite,
                   resume=dict(resume.announcements) if resume is not None else None)
    progress.info(f"Run folder: {run_dir}")

    summary: dict[str, Any] = {}
    status = "FINISHED"
    phase: str | None = None
    genotype: Genotype | None = None
    estimate: Estimate | None = None
    try:
        call_observers(plugins, "on_run_start", run=info)
    except StopRun as exc:
        write_text_atomic(run_dir / "summary.json", json.dumps(
            {"status": "FAILED", "error": str(exc)}, indent=2))
        raise StopRun(f"{exc} Nothing was trained. Start the run again when it is reachable, "
                      "or set [tracking] on_error = \"continue\" to run untracked.") from exc
    for key, value in info.announcements.items():
        progress.info(f"{key}: {value}")
    strategy = resolved.strategy

    def create(kind: str, name: str, config: Any = None) -> Any:
        return plugins.registry.create(kind, name, config)

    try:
        with _sigterm_as_interrupt():
            # ---- search ----
            phase = "search"
            # stopped while retraining: the finished search is not reported again
            search_done = resume is not None and (resume.run_dir / SEARCH_DONE).is_file()
            if not search_done:
                call_observers(plugins, "on_phase_start", run=info, phase=phase)
            reporter = PhaseReporter(plugins, info, phase, progress)
            env = SearchEnv(space=resolved.search_space, binarizer=resolved.binarizer,
                            input_shape=data.input_shape, num_classes=data.num_classes,
                            device=device, seed=exp.seed, splits=splits, reporter=reporter,
                            estimator=resolved.search_estimator,
                            create=create,
                            network=attrs.asdict(resolved.network), dist=dist)
            t_search = time.perf_counter()
            strategy.setup(env)
            epochs = strategy.num_epochs()
            weight_history: list[OpWeightSnapshot] = []
            first_epoch, seconds_before = 0, 0.0
            if resume is not None:
                ckpt = resume.checkpoint
                strategy.load_state_dict(ckpt["strategy"])
                restore_rng(ckpt["rng"])
                weight_history.extend(OpWeightSnapshot(int(e), w) for e, w in ckpt["op_weights"])
                first_epoch, seconds_before = resume.next_epoch, float(ckpt["search_seconds"])
                if search_done:
                    reporter.epochs.extend((int(e), dict(m)) for e, m in ckpt["epochs"])
                else:
                    if first_epoch < epochs:
                        progress.info(f"Resuming the search at epoch {first_epoch + 1} of "
                                      f"{epochs}")
                    _restore_reported(reporter, ckpt["epochs"], run_dir)
            for epoch in range(first_epoch, epochs):
                t0 = time.perf_counter()
                metrics = dict(strategy.run_epoch(epoch))
                metrics["epoch_seconds"] = time.perf_counter() - t0
                # arch.* counts of the genotype derived now: collapse shows epoch by epoch
                metrics.update(search_diagnostics(strategy, resolved.search_space))
                if (snapshot := snapshot_op_weights(strategy, epoch, reporter)) is not None:
                    if strategy.differentiable:
                        previous = weight_history[-1].weights if weight_history else None
                        metrics.update(alpha_progress(snapshot.weights, previous))
                    weight_history.append(snapshot)
                _save_checkpoint({"format": CHECKPOINT_FORMAT, "epoch": epoch,
                                  "strategy": strategy.state_dict(), "rng": capture_rng(),
                                  "recipe": recipe_text,
                                  "search_seconds": seconds_before + time.perf_counter() - t_search,
                                  "epochs": [[e, m] for e, m in [*reporter.epochs,
                                                                 (epoch, metrics)]],
                                  "op_weights": [[w.epoch, dict(w.weights)]
                                                 for w in weight_history],
                                  "announcements": _plain(info.announcements)},
                                 run_dir / CHECKPOINT)
                reporter.log_epoch(epoch, metrics)
                write_text_atomic(run_dir / _logged_marker(phase), str(epoch))
            genotype = strategy.derive()
            ddp_metrics = _check_same_alpha(strategy, dist)
            if strategy.differentiable and weight_history and not search_done:
                warning = static_alpha_warning(alpha_margin(weight_history[-1].weights),
                                               recipe.strategy.name)
                if warning:
                    progress.info(warning)
            progress.info(f"Genotype: {genotype}")
            last_epoch = reporter.epochs[-1][1] if reporter.epochs else {}
            if "weight_images" in last_epoch:  # the search's weight-training budget
                summary["weight_images"] = float(last_epoch["weight_images"])
            if search_done:
                summary["search_seconds"] = seconds_before
                progress.info("The search had finished; resuming the retraining.")
            else:
                summary["search_seconds"] = seconds_before + time.perf_counter() - t_search
                write_text_atomic(run_dir / "genotype.json", genotype.to_json())
                reporter.log_artifact(run_dir / "genotype.json")
                if main:
                    write_search_plots(reporter, genotype=genotype,
                                       op_names=resolved.search_space.op_names,
                                       history=weight_history, epochs=reporter.epochs)
                search_metrics = {"search_seconds": summary["search_seconds"],
                                  **({"weight_images": summary["weight_images"]}
                                     if "weight_images" in summary else {}),
                                  **strategy.final_metrics(), **ddp_metrics}
                call_observers(plugins, "on_search_end", run=info, genotype=genotype,
                               metrics=search_metrics)
                call_observers(plugins, "on_phase_end", run=info, phase=phase, status="FINISHED")
                write_text_atomic(run_dir / SEARCH_DONE, genotype.to_json())
            phase = None

            # ---- retrain ----
            if resolved.retrain_estimator is not None:
                phase = "retrain"
                call_observers(plugins, "on_phase_start", run=info, phase=phase)
                reporter = PhaseReporter(plugins, info, phase, progress, mark_logged=True)
                est_resume = _retrain_resume_state(resume)
                if est_resume is not None:
                    _restore_reported(reporter, est_resume.get("reported_epochs"), run_dir)
                est_env = EstimationEnv(space=resolved.search_space, binarizer=resolved.binarizer,
                                        input_shape=data.input_shape, num_classes=data.num_classes,
                                        device=device, seed=exp.seed, splits=splits,
                                        fit="train_full", score="test", reporter=reporter,
                                        network=attrs.asdict(resolved.network), create=create,
                                        dist=dist, resume=est_resume)
                estimate = resolved.retrain_estimator.estimate(genotype, est_env)
                if main:
                    write_curves(reporter, "retrain_curves.png", reporter.epochs, title="retrain")
                if estimate.model is not None and main:
                    save_atomic(estimate.model.state_dict(), run_dir / "model.pt")
                    reporter.log_artifact(run_dir / "model.pt")
                summary.update(estimate.metrics)
                progress.info("Retrained: " + ", ".join(
                    f"{k}={v:.4g}" for k, v in estimate.metrics.items()))
                call_observers(plugins, "on_retrain_end", run=info, estimate=estimate)
                call_observers(plugins, "on_phase_end", run=info, phase=phase, status="FINISHED")
                phase = None
    except StopRun as exc:
        status = "FAILED"
        summary["error"] = str(exc)
        _end(plugins, info, phase, status, summary, strategy)
        stop = StopRun(f"{exc} The run stopped with its last checkpoint kept in {run_dir}; when "
                       f"the store is reachable again, continue it in the same tracked run with: "
                       f"automl-bin run --resume {run_dir}")
        stop.run_dir = run_dir
        raise stop from exc
    except KeyboardInterrupt as exc:
        status = "KILLED"
        summary["error"] = "interrupted (Ctrl-C or SIGTERM); the last checkpoint is kept"
        _end(plugins, info, phase, status, summary, strategy)
        interrupted = RunInterrupted(
            f"Run interrupted; it is marked KILLED and its last checkpoint is kept in {run_dir}. "
            f"Continue it with: automl-bin run --resume {run_dir}")
        interrupted.run_dir = run_dir
        raise interrupted from exc
    except BaseException as exc:
        status = "FAILED"
        summary["error"] = f"{type(exc).__name__}: {exc}"
        _end(plugins, info, phase, status, summary, strategy)
        raise
    _end(plugins, info, None, status, summary, strategy)
    assert genotype is not None
    return RunResult(run_dir=run_dir, genotype=genotype, summary=summary,
                     announcements=dict(info.announcements), estimate=estimate,
                     tags=dict(info.tags))


def _retrain_resume_state(resume: ResumePoint | None) -> dict[str, Any] | None:
    """The retrain phase's last checkpoint in a resumed run's folder (every rank reads rank
    0's folder), or None when retraining had not finished an epoch."""
    if resume is None:
        return None
    path = resume.run_dir / "retrain_checkpoint.pt"
    if not path.is_file():
        return None
    state = load_state(path)
    if not isinstance(state, dict):
        raise UsageError(f"{str(path)!r} is not a retrain checkpoint; delete it to retrain from "
                         "the beginning.")
    return state


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


def _end(plugins: PluginSet, info: RunInfo, phase: str | None, status: str,
         summary: Mapping[str, Any], strategy: Any) -> None:
    try:
        strategy.teardown()
    finally:
        if phase is not None:
            call_observers(plugins, "on_phase_end", run=info, phase=phase, status=status)
        write_text_atomic(info.run_dir / "summary.json",
                          json.dumps({"status": status, **summary}, indent=2, default=str))
        call_observers(plugins, "on_run_end", run=info, status=status, summary=dict(summary))
