"""Suites and sweeps: one recipe file that expands into several comparable runs.

A recipe becomes a *suite* when it has any of

- ``[[suite]]`` members: each member may replace or update the ``strategy``, ``binarizer``,
  ``search_space`` and ``retrain`` sections of the base recipe (a member section naming another
  plugin starts from that plugin's defaults; without a ``name``, or with the base's name, its
  keys update the base section), and carries a ``label`` for the comparison table;
- a ``[sweep]`` grid: dotted recipe keys mapped to lists of values
  (``"strategy.beta_p" = [0.0, 0.5]``); every combination runs, for every member;
- ``[experiment] seeds``: a count (seeds ``seed, seed+1, ...``) or a list of seeds; every member
  and grid point runs once per seed. Runs go seed by seed (every member and grid point on the
  first seed, then on the next), so a suite stopped early still has a complete comparison;
- ``[reference] random_genotypes = N``: N extra runs per seed, labelled ``random genotype 1..N``,
  each retraining ONE genotype drawn uniformly from the base search space (the
  ``random_genotype`` strategy) with the base ``[retrain]``: the yardstick ``automl-bin compare``
  measures every row against (seed-paired difference and percentile).

``[data]``, ``[experiment]`` and ``[tracking]`` are shared by every run: the same data set,
split rule and budget for all, which is what makes the comparison fair. Expansion is pure data
(no torch): `expand_recipe` returns one plain recipe per run, each a normal recipe that
`automl_bin.recipe.recipe_from_data` validates, that is written to its run folder and that
``automl-bin run --from-run`` can re-run alone.
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from automl_bin.errors import UsageError, suggest
from automl_bin.recipe import (
    Recipe,
    apply_overrides,
    parse_toml,
    read_recipe_text,
    recipe_from_data,
    recipe_sections,
)

__all__ = ["Member", "SuitePlan", "expand_recipe", "load_plan", "parse_plan",
           "REFERENCE_KINDS", "REFERENCE_LABEL"]

#: sections a suite member may change; the others are shared so that runs stay comparable
MEMBER_SECTIONS = ("strategy", "binarizer", "search_space", "retrain")
_MEMBER_KEYS = ("label", *MEMBER_SECTIONS)
#: the most runs one file may expand to (a typo in a grid should not start 10,000 runs)
MAX_RUNS = 500
#: the keys of the ``[reference]`` table (reference kind -> runs per seed)
REFERENCE_KINDS = ("random_genotypes",)
#: the label of reference run ``i`` (1-based); the rows' labels stay unique
REFERENCE_LABEL = "random genotype {index}"
#: the most random genotypes per seed (each is a full retraining)
MAX_REFERENCE = 50


@attrs.frozen(kw_only=True)
class Member:
    """One run of a suite: its label, seed, swept values and its complete plain recipe."""

    label: str
    seed: int
    #: swept recipe key -> value of this run (empty without a sweep)
    sweep: Mapping[str, Any] = attrs.field(factory=dict)
    recipe: Recipe
    #: the reference kind of a ``[reference]`` run (``"random_genotypes"``), else ""
    reference: str = ""

    @property
    def name(self) -> str:
        """``label[ key=value ...] s<seed>``, the run's name in MLflow and on the terminal."""
        swept = " ".join(f"{k.split('.')[-1]}={_short(v)}" for k, v in self.sweep.items())
        return " ".join(p for p in (self.label, swept, f"s{self.seed}") if p)


@attrs.frozen(kw_only=True)
class SuitePlan:
    """What one recipe file asks for: a single run, or a suite of members."""

    #: the file's data after --set overrides (suite, sweep and seeds included)
    raw: dict[str, Any] = attrs.field(repr=False)
    source: str
    members: tuple[Member, ...]
    #: the swept keys, in grid order
    sweep_keys: tuple[str, ...] = ()
    #: True when the file has [[suite]], [sweep] or experiment.seeds (even with one run)
    is_suite: bool = False

    @property
    def name(self) -> str:
        return self.members[0].recipe.experiment.name


def _short(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def _check_sections(raw: Mapping[str, Any], source: str) -> None:
    """Every top-level entry is a known section and a table (``[[suite]]``: tables)."""
    known = (*recipe_sections(), "suite", "sweep", "reference")
    for section, value in raw.items():
        if section not in known:
            raise UsageError(f"Unknown recipe section [{section}] in {source}."
                             f"{suggest(section, known)} Valid sections: {', '.join(known)}.")
        if section != "suite" and not isinstance(value, dict):
            raise UsageError(f"Recipe section [{section}] must be a table, not {value!r}; write "
                             f"it as [{section}] followed by key = value lines.")


def _flatten_grid(table: Mapping[str, Any], prefix: str = "") -> dict[str, list[Any]]:
    """``{"strategy": {"beta_p": [..]}}`` and ``{"strategy.beta_p": [..]}`` both become
    ``{"strategy.beta_p": [..]}``."""
    out: dict[str, list[Any]] = {}
    for key, value in table.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten_grid(value, path + "."))
            continue
        if not isinstance(value, list) or not value:
            raise UsageError(
                f"[sweep] key '{path}' must be a non-empty list of values to try, e.g. "
                f"\"{path}\" = [0.1, 1.0]; got {value!r}.")
        out[path] = value
    return out


def _check_sweep_key(key: str) -> None:
    parts = key.split(".")
    if len(parts) < 2 or not all(parts):
        raise UsageError(f"[sweep] key '{key}' must name a section and a key, e.g. "
                         "\"strategy.beta_p\".")
    if parts[0] not in recipe_sections():
        raise UsageError(f"[sweep] key '{key}' names the unknown section [{parts[0]}]."
                         f"{suggest(parts[0], recipe_sections())} Valid sections: "
                         f"{', '.join(recipe_sections())}.")
    if parts[0] in ("tracking",) or key in ("experiment.name", "experiment.output_dir",
                                            "experiment.seeds"):
        raise UsageError(f"[sweep] cannot vary '{key}': every run of a suite shares it. Sweep "
                         "seeds with [experiment] seeds = N instead.")


def _seeds(experiment: Mapping[str, Any]) -> list[int] | None:
    if "seeds" not in experiment:
        return None
    value = experiment["seeds"]
    base = experiment.get("seed", 2)
    if isinstance(value, bool) or not isinstance(value, (int, list)):
        raise UsageError("[experiment] seeds must be a count (e.g. 3: the seeds seed, seed+1 and "
                         f"seed+2) or a list of seeds such as [1, 2, 3], got {value!r}.")
    if isinstance(value, int):
        if value < 1 or value > MAX_RUNS:
            raise UsageError(f"[experiment] seeds must be between 1 and {MAX_RUNS}, got {value}.")
        if not isinstance(base, int) or isinstance(base, bool):
            raise UsageError(f"[experiment] seed must be an integer, got {base!r}.")
        return [base + i for i in range(value)]
    if not value or not all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        raise UsageError(f"[experiment] seeds must be a non-empty list of integers, got {value!r}.")
    if len(set(value)) != len(value):
        raise UsageError(f"[experiment] seeds lists a seed twice: {value!r}.")
    return list(value)


def _member_tables(raw: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    if "suite" not in raw:
        return None
    members = raw["suite"]
    if isinstance(members, dict):
        members = [members]
    if not isinstance(members, list) or not members or not all(isinstance(m, dict)
                                                               for m in members):
        raise UsageError("[[suite]] must be one or more tables, each a member of the suite: "
                         "[[suite]] label = \"darts\" followed by [suite.strategy] name = "
                         "\"darts\" ... (see docs/comparing.md).")
    for i, member in enumerate(members, start=1):
        for key in member:
            if key not in _MEMBER_KEYS:
                shared = key in recipe_sections()
                why = (f" [{key}] is shared by every member so that runs are comparable; set "
                       "it in the base recipe." if shared else suggest(key, _MEMBER_KEYS))
                raise UsageError(f"Suite member {i} has the unknown key '{key}'.{why} A member "
                                 f"may set: {', '.join(_MEMBER_KEYS)}.")
            if key in MEMBER_SECTIONS and not isinstance(member[key], dict):
                raise UsageError(f"Suite member {i}: '{key}' must be a table "
                                 f"([suite.{key}]), not {member[key]!r}.")
        if "label" in member and (not isinstance(member["label"], str)
                                  or not member["label"].strip()):
            raise UsageError(f"Suite member {i}: 'label' must be a non-empty string.")
    return members


def _merge_member(base: Mapping[str, Any], member: Mapping[str, Any]) -> dict[str, Any]:
    raw = copy.deepcopy(dict(base))
    for section in MEMBER_SECTIONS:
        if section not in member:
            continue
        table = dict(member[section])
        current = dict(raw.get(section, {}))
        other_plugin = "name" in table and table["name"] != current.get("name")
        if section == "retrain":
            other_plugin = "estimator" in table and table["estimator"] != current.get(
                "estimator", "retrain")
        raw[section] = table if other_plugin else {**current, **table}
    return raw


def _set_key(raw: dict[str, Any], key: str, value: Any) -> None:
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise UsageError(f"[sweep] key '{key}': '{part}' is a value, not a table.")
        node = child
    node[parts[-1]] = copy.deepcopy(value)


def _reference_count(raw: Mapping[str, Any]) -> int:
    """Random genotypes per seed that ``[reference]`` asks for (0 without the table)."""
    table = raw.get("reference", {})
    for key in table:
        if key not in REFERENCE_KINDS:
            raise UsageError(f"Unknown key '{key}' in [reference].{suggest(key, REFERENCE_KINDS)} "
                             f"Valid keys: {', '.join(REFERENCE_KINDS)} (e.g. random_genotypes "
                             "= 3: three random genotypes per seed).")
    count = table.get("random_genotypes", 0)
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_REFERENCE:
        raise UsageError(f"[reference] random_genotypes must be a whole number from 0 (no "
                         f"reference) to {MAX_REFERENCE}: how many random genotypes each seed "
                         f"retrains; got {count!r}.")
    return count


def _check_reference_sweep(grid: Mapping[str, list[Any]], count: int) -> None:
    """A reference is retrained once per seed with the base recipe, so a sweep may vary only
    [strategy] keys: a swept [retrain], [data], ... key would retrain rows differently from it."""
    outside = [key for key in grid if not key.startswith("strategy.")]
    if count and outside:
        raise UsageError(f"[sweep] varies {', '.join(outside)}, but the [reference] random "
                         "genotypes retrain once per seed with the base recipe, so rows would "
                         "no longer share their retraining with the reference. With [reference], "
                         "sweep only strategy.* keys (or set reference.random_genotypes = 0).")


def _reference_members(base: Mapping[str, Any], count: int,
                       overrides: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
    """(label, recipe data) of reference runs 1..count: the base recipe with the
    ``random_genotype`` strategy, so the same space, binarizer and [retrain] as the base."""
    # --set strategy.* keys belong to the searching strategies; random_genotype has none of them
    kept = [o for o in overrides if o.split(".", 1)[0] in MEMBER_SECTIONS
            and o.split(".", 1)[0] != "strategy"]
    out = []
    for index in range(1, count + 1):
        table = {"strategy": {"name": "random_genotype", "index": index}}
        out.append((REFERENCE_LABEL.format(index=index),
                    apply_overrides(_merge_member(base, table), kept)))
    return out


def _build_member(run_raw: dict[str, Any], *, label: str, seed: int | None,
                  swept: Mapping[str, Any], source: str, is_suite: bool,
                  reference: str = "") -> Member:
    """Validate one run's recipe data; an error names the member."""
    if seed is not None:
        run_raw.setdefault("experiment", {})["seed"] = seed
    where = f"{source} (suite member {label!r})" if is_suite else source
    try:
        recipe = recipe_from_data(run_raw, where)
    except UsageError as exc:
        if not is_suite:
            raise
        raise UsageError(f"Suite member {label!r}: {exc}") from exc
    return Member(label=label, seed=recipe.experiment.seed, sweep=dict(swept), recipe=recipe,
                  reference=reference)


def _labels(base: Mapping[str, Any], member_tables: Sequence[Mapping[str, Any]],
            references: Sequence[tuple[str, Any]]) -> list[str]:
    """Each member table's label (its ``label``, else its strategy's name); refuses labels
    shared by two members or with a reference run."""
    labels = []
    for table in member_tables:
        merged_strategy = _merge_member(base, table).get("strategy", {})
        labels.append(table.get("label") or str(merged_strategy.get("name", "run")))
    all_labels = labels + [label for label, _ in references]
    duplicates = sorted({label for label in all_labels if all_labels.count(label) > 1})
    if duplicates:
        raise UsageError(f"Suite members share the label(s) {duplicates}; give each member its "
                         "own label = \"...\" (it names the row in automl-bin compare; "
                         "\"random genotype N\" is taken by the [reference] runs).")
    return labels


def _check_total(members: int, points: int, n_reference: int, seeds: int) -> None:
    total = (members * points + n_reference) * seeds
    if total > MAX_RUNS:
        raise UsageError(f"This recipe expands to {total} runs ({members} member(s) x "
                         f"{points} grid point(s) + {n_reference} reference run(s), x "
                         f"{seeds} seed(s)), more than {MAX_RUNS}; shrink the [sweep] "
                         "grid, the reference or the seeds.")


def _plain_base(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe without its suite tables ([[suite]], [sweep], [reference], seeds)."""
    base = {k: v for k, v in raw.items() if k not in ("suite", "sweep", "reference")}
    if isinstance(base.get("experiment"), dict):
        base["experiment"] = {k: v for k, v in base["experiment"].items() if k != "seeds"}
    return base


def expand_recipe(raw: Mapping[str, Any], overrides: Sequence[str] = (),
                  source: str = "<string>") -> SuitePlan:
    """Expand recipe data (``--set`` ``overrides`` already applied or given here) into runs.

    Every run's recipe is validated with `recipe_from_data`; an error names the member.
    """
    raw = apply_overrides(dict(raw), overrides)
    _check_sections(raw, source)
    members = _member_tables(raw)
    grid = _flatten_grid(raw.get("sweep", {})) if "sweep" in raw else {}
    if "sweep" in raw and not isinstance(raw["sweep"], dict):
        raise UsageError("[sweep] must be a table of \"section.key\" = [values].")
    for key in grid:
        _check_sweep_key(key)
    n_reference = _reference_count(raw)
    _check_reference_sweep(grid, n_reference)
    experiment = raw.get("experiment", {})
    seeds = _seeds(experiment) if isinstance(experiment, dict) else None
    is_suite = members is not None or bool(grid) or seeds is not None or n_reference > 0

    base = _plain_base(raw)
    member_tables = members if members is not None else [{}]
    references = _reference_members(base, n_reference, overrides)
    labels = _labels(base, member_tables, references)
    points = list(itertools.product(*grid.values())) if grid else [()]
    seed_list = seeds or [None]
    _check_total(len(member_tables), len(points), n_reference, len(seed_list))
    member_raws = []
    for table in member_tables:
        member_raw = _merge_member(base, table)
        # --set applies to every member, also to sections a member replaced
        member_raws.append(apply_overrides(member_raw, [o for o in overrides
                                                        if o.split(".", 1)[0] in MEMBER_SECTIONS]))
    build = functools.partial(_build_member, source=source, is_suite=is_suite)
    out: list[Member] = []
    # seed by seed: a suite stopped early still compares every member on the first seeds
    for seed in seed_list:
        for member_raw, label in zip(member_raws, labels):
            for point in points:
                run_raw = copy.deepcopy(member_raw)
                swept = dict(zip(grid, point))
                for key, value in swept.items():
                    _set_key(run_raw, key, value)
                out.append(build(run_raw, label=label, seed=seed, swept=swept))
        # after the searched members, so the seed's rows are there even if a reference fails
        for label, ref_raw in references:
            out.append(build(copy.deepcopy(ref_raw), label=label, seed=seed, swept={},
                             reference="random_genotypes"))
    return SuitePlan(raw=raw, source=source, members=tuple(out), sweep_keys=tuple(grid),
                     is_suite=is_suite)


def parse_plan(text: str, overrides: Sequence[str] = (), source: str = "<string>") -> SuitePlan:
    """Parse recipe TOML ``text`` into a `SuitePlan` (one member for a plain recipe)."""
    return expand_recipe(parse_toml(text, source), overrides, source)


def load_plan(path: str | Path, overrides: Sequence[str] = ()) -> SuitePlan:
    """Read the recipe at ``path`` and expand it (see `parse_plan`)."""
    return parse_plan(read_recipe_text(path), overrides, source=str(path))
