"""Performance-based operation-space reduction (docs/algorithms.md §BNAS and BNAS2, §CP-NAS).

Shared by every strategy that samples single-path architectures and prunes operations by the
rewards they earn (BNAS, BNAS2, CP-NAS; the ``random`` strategy uses the bookkeeping without
pruning). Pure Python: no torch, no plugin imports; the state is plain data.

Per cell type and edge ``(i, j)`` the pruner holds a candidate set ``O_ij`` (at the start every op
of the space, optionally minus excluded ones, optionally only the first ``k0``), and per
``(edge, op)`` the history of rewards credited to it; the pull count ``n_k`` is its length. The
schedule of book Alg. 9 (docs/algorithms.md §BNAS and BNAS2)::

    while K > 1:
        repeat T times:                                  # one "trial"
            K architectures; on every edge each op of O_ij appears exactly once
            (per-edge random permutations: sampling WITHOUT replacement),
            or, with sampling="lcb_softmax", ops drawn with probability softmax(−LCB)
            train + score each; credit the reward to every (edge, op) of the arch
        e(o) = softmax over O_ij of the indicator s(o)   (Eq. 4.16)
        remove argmin_o e(o) from every O_ij;  K ← K − 1

Indicators of op ``k`` on an edge (``r_k`` its rewards, ``n_k = |r_k|``, ``N`` the architectures
recorded; all three counted over the reward window, see `OperationPruner.window`: by default the
current round, so every round starts with every remaining op untried):

- ``mean`` (BNAS1, CP-NAS with ``z`` rewards): ``s_k = z̄_k = mean(r_k)`` (Eq. 4.16's ``z̄``),
- ``ucb`` (BNAS2): ``s_k = mean(r_k) + sqrt(2 ln N / n_k)``,

normalised per edge by ``e_k = exp(s_k) / Σ_k' exp(s_k')`` (Eq. 4.16). An op that has never been
pulled in the window has ``s_k = +∞`` (it is not pruned before it is tried), and the softmax takes
its limit (the mass is shared by the untried ops). The BNAS2 sampler draws op ``k`` with
probability ``softmax(−LCB)_k``, ``LCB_k = mean(r_k) − sqrt(2 ln N / n_k)`` (ABanditNAS Eq.
4.9–4.10; [INFER], docs/algorithms.md §BNAS and BNAS2); untried ops (``LCB = −∞``) are drawn
first.

Genotype ([INFER] for pruning methods, docs/algorithms.md §Genotype rule): every edge keeps its
surviving op; each node keeps the top ``keep`` (2) incoming edges ranked by the survivor's
last-round indicator ``e``, skipping edges whose survivor is ``none``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs

from automl_bin.interfaces.genotype import Cell, Edge, Genotype

__all__ = ["Architecture", "OperationPruner", "total_trials", "softmax"]

#: one sampled single-path architecture: per cell type, the op index (column of ``op_names``)
#: chosen on every edge, in edge order
Architecture = dict[str, list[int]]

INDICATORS = ("mean", "ucb")
SAMPLINGS = ("permutation", "lcb_softmax")
WINDOWS = ("all", "round")


def total_trials(k0: int, trials: int) -> int:
    """Sampled architectures of a full reduction from ``k0`` ops to one: ``T·Σ_{K=2}^{K0} K``.

    (``35·T`` for the 8-op spaces of docs/algorithms.md §CP-NAS.)
    """
    return trials * sum(range(2, k0 + 1))


def softmax(values: Sequence[float]) -> list[float]:
    """``exp(v_k) / Σ exp(v_k')`` (Eq. 4.16), stable; ``+∞`` entries share all the mass."""
    if not values:
        return []
    infinite = [v == math.inf for v in values]
    if any(infinite):
        count = sum(infinite)
        return [1.0 / count if f else 0.0 for f in infinite]
    top = max(values)
    ex = [math.exp(v - top) for v in values]
    total = sum(ex)
    return [x / total for x in ex]


def _edges(value: Mapping[str, Sequence[Sequence[int]]]) -> dict[str, list[tuple[int, int]]]:
    return {str(k): [(int(s), int(t)) for s, t in v] for k, v in value.items()}


def _finite(x: float) -> float | None:
    """JSON-safe float: ±∞ and NaN become None."""
    return x if math.isfinite(x) else None


@attrs.define(kw_only=True, eq=False)
class OperationPruner:
    """Candidate sets, reward histories and the pruning schedule of a sampling NAS.

    The arguments are the configuration; everything else is state (see `state_dict`).
    """

    #: the op names of every edge, in supernet column order
    op_names: tuple[str, ...] = attrs.field(converter=tuple)
    #: per cell type, ``(source, target)`` of every edge in supernet order
    edges: dict[str, list[tuple[int, int]]] = attrs.field(converter=_edges)
    #: ``Genotype.space`` of the genotypes built
    space: str = ""
    #: trials per reduction round (``T``; default 3 [INFER], docs/algorithms.md §BNAS and BNAS2)
    trials: int = attrs.field(default=3, validator=attrs.validators.ge(1))
    #: ``mean`` (BNAS1, CP-NAS) or ``ucb`` (BNAS2)
    indicator: Literal["mean", "ucb"] = attrs.field(
        default="mean", validator=attrs.validators.in_(INDICATORS))
    #: ``permutation`` (each op once per trial) or ``lcb_softmax`` (BNAS2)
    sampling: Literal["permutation", "lcb_softmax"] = attrs.field(
        default="permutation", validator=attrs.validators.in_(SAMPLINGS))
    #: rewards entering the indicators: ``round`` (only the current round's T trials, the
    #: literal ``(1/T)·Σ_t`` of Eq. 4.16; the UCB's ``N`` and ``n_k`` count that round too) or
    #: ``all`` (the whole search, as the never-reset histories of the pseudo-code in
    #: docs/algorithms.md §BNAS and BNAS2).
    #: ``round`` is the default: the shared weights change between rounds, and rewards earned
    #: by a younger supernet would outvote what the current one says
    window: Literal["all", "round"] = attrs.field(
        default="round", validator=attrs.validators.in_(WINDOWS))
    #: op names left out of every candidate set from the start
    exclude: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    #: start with only the first ``k0`` non-excluded ops (in ``op_names`` order); None = all
    k0: int | None = None
    #: incoming edges kept per node by `genotype`
    keep: int = attrs.field(default=2, validator=attrs.validators.ge(1))
    #: the zero op, never kept by `genotype` unless a node has nothing else
    none_op: str = "none"

    # -- state ----------------------------------------------------------------------------------
    #: per cell type and edge, the remaining op indices (ascending)
    candidates: dict[str, list[list[int]]] = attrs.field(init=False)
    #: per cell type, edge and op index, every reward credited (pull count = its length)
    rewards: dict[str, list[list[list[float]]]] = attrs.field(init=False)
    #: per cell type, edge and op, the length of ``rewards`` when the current round began
    round_start: dict[str, list[list[int]]] = attrs.field(init=False)
    #: architectures recorded over the search and in the current round (``N`` of the UCB)
    records: int = attrs.field(init=False, default=0)
    round_records: int = attrs.field(init=False, default=0)
    #: completed reduction rounds
    round: int = attrs.field(init=False, default=0)
    #: completed trials of the current round, and the current trial's schedule and position
    trials_done: int = attrs.field(init=False, default=0)
    schedule: list[Architecture] = attrs.field(init=False, factory=list)
    position: int = attrs.field(init=False, default=0)
    #: per cell type and edge, ``e`` of each op (None where not a candidate) at the last prune
    last_indicator: dict[str, list[list[float | None]]] = attrs.field(init=False)
    #: one entry per prune round (see `prune_round`)
    history: list[dict[str, Any]] = attrs.field(init=False, factory=list)

    def __attrs_post_init__(self) -> None:
        unknown = [o for o in self.exclude if o not in self.op_names]
        if unknown:
            raise ValueError(f"cannot exclude unknown op(s) {unknown}; the ops are "
                             f"{list(self.op_names)}")
        start = [m for m, name in enumerate(self.op_names) if name not in self.exclude]
        if self.k0 is not None:
            if not 1 <= self.k0 <= len(start):
                raise ValueError(f"K0 = {self.k0} must be between 1 and the {len(start)} "
                                 f"candidate ops {[self.op_names[m] for m in start]}")
            start = start[: self.k0]
        if not start:
            raise ValueError("no candidate op is left after the exclusions")
        if not self.edges or not all(self.edges.values()):
            raise ValueError("every cell type needs at least one edge")
        m = len(self.op_names)
        self.candidates = {k: [list(start) for _ in e] for k, e in self.edges.items()}
        self.rewards = {k: [[[] for _ in range(m)] for _ in e] for k, e in self.edges.items()}
        self.round_start = {k: [[0] * m for _ in e] for k, e in self.edges.items()}
        self.last_indicator = {k: [[None] * m for _ in e] for k, e in self.edges.items()}

    # -- accessors --------------------------------------------------------------------------------
    @property
    def kinds(self) -> list[str]:
        return list(self.edges)

    @property
    def initial_k(self) -> int:
        """Candidates per edge at the start (``K0``)."""
        return len(self.candidates[self.kinds[0]][0]) + self.round

    @property
    def current_k(self) -> int:
        """Candidates per edge now (the same on every edge: one op leaves each per round)."""
        return max(len(c) for cands in self.candidates.values() for c in cands)

    @property
    def finished(self) -> bool:
        """True once every edge holds a single op."""
        return self.current_k <= 1

    def total_trials(self) -> int:
        """Architectures the whole schedule samples: ``T·Σ_{K=2}^{K0} K``."""
        return total_trials(self.initial_k, self.trials)

    def remaining(self) -> dict[str, list[list[str]]]:
        """Per cell type and edge, the names of the remaining ops."""
        return {k: [[self.op_names[m] for m in c] for c in cands]
                for k, cands in self.candidates.items()}

    def remaining_counts(self) -> dict[str, list[int]]:
        """Per cell type and edge, how many ops remain."""
        return {k: [len(c) for c in cands] for k, cands in self.candidates.items()}

    def mean_remaining(self) -> float:
        """Mean number of remaining ops per edge over all cell types (a per-epoch metric)."""
        counts = [n for c in self.remaining_counts().values() for n in c]
        return sum(counts) / len(counts)

    def _window(self, kind: str, edge: int, op: int) -> list[float]:
        r = self.rewards[kind][edge][op]
        return r[self.round_start[kind][edge][op]:] if self.window == "round" else r

    def pulls(self, kind: str, edge: int, op: int) -> int:
        """``n_k``: rewards credited to ``op`` on ``edge`` in the window."""
        return len(self._window(kind, edge, op))

    def mean_reward(self, kind: str, edge: int, op: int) -> float | None:
        """``z̄_k``: mean reward of ``op`` on ``edge`` in the window (None when never pulled)."""
        r = self._window(kind, edge, op)
        return sum(r) / len(r) if r else None

    @property
    def window_records(self) -> int:
        """``N``: architectures recorded in the window."""
        return self.round_records if self.window == "round" else self.records

    def _bonus(self, n: int) -> float:
        """``sqrt(2 ln N / n)`` (UCB/LCB exploration term); +∞ for an untried op."""
        if n == 0:
            return math.inf
        big_n = self.window_records
        return math.sqrt(2.0 * math.log(big_n) / n) if big_n > 1 else 0.0

    def scores(self, kind: str, edge: int) -> dict[int, float]:
        """The raw indicator ``s_k`` of every remaining op of ``edge`` (``mean`` or ``ucb``)."""
        out = {}
        for op in self.candidates[kind][edge]:
            mean, n = self.mean_reward(kind, edge, op), self.pulls(kind, edge, op)
            if mean is None:
                out[op] = math.inf
            elif self.indicator == "ucb":
                out[op] = mean + self._bonus(n)
            else:
                out[op] = mean
        return out

    def lcb(self, kind: str, edge: int) -> dict[int, float]:
        """``LCB_k = mean − sqrt(2 ln N / n_k)`` of every remaining op (−∞ when untried)."""
        out = {}
        for op in self.candidates[kind][edge]:
            mean = self.mean_reward(kind, edge, op)
            out[op] = -math.inf if mean is None else mean - self._bonus(
                self.pulls(kind, edge, op))
        return out

    def normalised(self, kind: str, edge: int) -> dict[int, float]:
        """``e(o_k)``: softmax of the indicator over the remaining ops of ``edge`` (Eq. 4.16)."""
        s = self.scores(kind, edge)
        return dict(zip(s, softmax(list(s.values()))))

    def indicator_matrix(self) -> dict[str, list[list[float]]]:
        """Per cell type, ``edges × ops`` of the current ``e`` (0 for removed or excluded ops)."""
        out = {}
        for kind, cands in self.candidates.items():
            rows = []
            for edge in range(len(cands)):
                row = [0.0] * len(self.op_names)
                for op, e in self.normalised(kind, edge).items():
                    row[op] = e
                rows.append(row)
            out[kind] = rows
        return out

    def mean_matrix(self) -> dict[str, list[list[float]]]:
        """Per cell type, ``edges × ops`` of the mean reward (0 where never pulled)."""
        return {kind: [[self.mean_reward(kind, e, m) or 0.0 for m in range(len(self.op_names))]
                       for e in range(len(cands))]
                for kind, cands in self.candidates.items()}

    # -- sampling -------------------------------------------------------------------------------
    def _draw(self, kind: str, edge: int, rng: random.Random) -> int:
        """One op of ``edge``: uniform (``permutation``) or by ``softmax(−LCB)``."""
        cands = self.candidates[kind][edge]
        if self.sampling == "permutation":
            return rng.choice(cands)
        lcb = self.lcb(kind, edge)
        probs = softmax([-lcb[op] for op in cands])
        return rng.choices(cands, weights=probs)[0]

    def trial_schedule(self, rng: random.Random) -> list[Architecture]:
        """The ``K`` architectures of one trial.

        ``permutation``: architecture ``i`` takes position ``i`` of an independent random
        permutation of each edge's candidates, so every remaining op of every edge is sampled
        exactly once (sampling without replacement, Alg. 9). ``lcb_softmax``: each edge of each
        architecture draws from ``softmax(−LCB)`` over its remaining ops (with replacement).
        """
        if self.finished:
            raise RuntimeError("the reduction is finished: every edge holds a single op")
        k = self.current_k
        archs: list[Architecture] = [{kind: [] for kind in self.kinds} for _ in range(k)]
        for kind, cands in self.candidates.items():
            for edge, ops in enumerate(cands):
                if self.sampling == "permutation":
                    perm = list(ops)
                    rng.shuffle(perm)
                    for i in range(k):  # an edge with fewer ops (never here) wraps around
                        archs[i][kind].append(perm[i % len(perm)])
                else:
                    for i in range(k):
                        archs[i][kind].append(self._draw(kind, edge, rng))
        return archs

    def sample_architecture(self, rng: random.Random) -> Architecture:
        """One architecture, each edge drawn independently (uniform, or ``softmax(−LCB)``)."""
        return {kind: [self._draw(kind, e, rng) for e in range(len(cands))]
                for kind, cands in self.candidates.items()}

    def path_genotype(self, arch: Architecture) -> Genotype:
        """The single-path genotype of ``arch``: every edge listed with its sampled op (``none``
        included), for `Supernet.set_fixed_architecture` and the supernet estimator."""
        cells = {}
        for kind, edges in self.edges.items():
            ops = arch[kind]
            cells[kind] = Cell(edges=[Edge(self.op_names[ops[r]], s, t)
                                      for r, (s, t) in enumerate(edges)],
                               concat=self._concat(kind))
        return Genotype(space=self.space, cells=cells)

    def _concat(self, kind: str) -> list[int]:
        return sorted({t for _, t in self.edges[kind]})

    # -- recording and pruning ------------------------------------------------------------------
    def record(self, arch: Architecture, reward: float) -> None:
        """Credit ``reward`` to every ``(edge, op)`` of ``arch``; ``n_k += 1`` for each."""
        for kind, cands in self.candidates.items():
            ops = arch[kind]
            if len(ops) != len(cands):
                raise ValueError(f"architecture has {len(ops)} {kind} edges, expected "
                                 f"{len(cands)}")
            for edge, op in enumerate(ops):
                if op not in cands[edge]:
                    raise ValueError(f"op {self.op_names[op]!r} was removed from {kind} edge "
                                     f"{edge}; it cannot be credited")
        for kind, ops in arch.items():
            for edge, op in enumerate(ops):
                self.rewards[kind][edge][op].append(float(reward))
        self.records += 1
        self.round_records += 1

    def next_architecture(self, rng: random.Random) -> Architecture:
        """The next architecture of the schedule, drawing a new trial when the last one ended."""
        if self.position >= len(self.schedule):
            self.schedule = self.trial_schedule(rng)
            self.position = 0
        return self.schedule[self.position]

    def complete(self, arch: Architecture, reward: float) -> dict[str, Any] | None:
        """`record` the reward of the current architecture and advance the schedule; after the
        last architecture of the round's ``T``-th trial, `prune_round` and return its entry."""
        if self.position >= len(self.schedule) or arch != self.schedule[self.position]:
            raise ValueError("complete() takes the architecture next_architecture() returned")
        self.record(arch, reward)
        self.position += 1
        if self.position < len(self.schedule):
            return None
        self.schedule, self.position = [], 0
        self.trials_done += 1
        if self.trials_done < self.trials:
            return None
        self.trials_done = 0
        return self.prune_round()

    def prune_round(self) -> dict[str, Any]:
        """Remove from every edge the op with the lowest ``e`` (Eq. 4.16) and return the entry.

        Ties: the lower raw indicator ``s``, then the later op index. The history entry holds
        ``round`` (1-based), ``K`` (ops before), ``records`` (N), ``remaining`` (after), and per
        cell type and edge ``removed`` (op name), ``indicators`` (``e`` per remaining op),
        ``scores`` (``s``, None for +∞) and ``pulls`` (``n``).
        """
        if self.finished:
            raise RuntimeError("the reduction is finished: every edge holds a single op")
        k = self.current_k
        entry: dict[str, Any] = {"round": self.round + 1, "K": k, "records": self.records,
                                 "removed": {}, "indicators": {}, "scores": {}, "pulls": {}}
        for kind, cands in self.candidates.items():
            removed, indicators, scores, pulls = [], [], [], []
            for edge, ops in enumerate(cands):
                s = self.scores(kind, edge)
                e = dict(zip(s, softmax(list(s.values()))))
                # softmax is monotone in s; s also orders ops whose e underflows to 0 (beside
                # an untried op); equal s: the later op index leaves
                worst = min(ops, key=lambda op: (e[op], s[op], -op))
                names = {op: self.op_names[op] for op in ops}
                indicators.append({names[op]: e[op] for op in ops})
                scores.append({names[op]: _finite(s[op]) for op in ops})
                pulls.append({names[op]: self.pulls(kind, edge, op) for op in ops})
                removed.append(names[worst])
                self.last_indicator[kind][edge] = [e.get(m) for m in range(len(self.op_names))]
                ops.remove(worst)
            entry["removed"][kind] = removed
            entry["indicators"][kind] = indicators
            entry["scores"][kind] = scores
            entry["pulls"][kind] = pulls
        self.round += 1
        self.round_records = 0
        self.round_start = {k_: [[len(r) for r in edge] for edge in rows]
                            for k_, rows in self.rewards.items()}
        entry["remaining"] = self.remaining()
        self.history.append(entry)
        return entry

    # -- genotype -------------------------------------------------------------------------------
    def edge_choice(self, kind: str, edge: int,
                    rank: Literal["indicator", "mean"] = "indicator") -> tuple[int, float]:
        """``(op, strength)`` of ``edge`` for `genotype`.

        ``indicator``: a decided edge keeps its survivor, with the ``e`` it had in the last
        round that pruned it; an undecided edge (derive before the end) takes the argmax of the
        current ``e``. ``mean``: the remaining op with the highest mean reward, that mean as the
        strength (ops never pulled are not eligible; an edge with none has strength −∞).
        Ties go to the lower op index.
        """
        ops = self.candidates[kind][edge]
        if rank == "mean":
            means = {op: self.mean_reward(kind, edge, op) for op in ops}
            pulled = [op for op in ops if means[op] is not None]
            if not pulled:
                return ops[0], -math.inf
            best = max(pulled, key=lambda op: (means[op], -op))
            return best, float(means[best])  # type: ignore[arg-type]
        if rank != "indicator":
            raise ValueError(f"rank must be 'indicator' or 'mean', got {rank!r}")
        if len(ops) == 1:
            last = self.last_indicator[kind][edge][ops[0]]
            return ops[0], 1.0 if last is None else float(last)
        s = self.scores(kind, edge)
        e = dict(zip(s, softmax(list(s.values()))))
        best = max(ops, key=lambda op: (e[op], s[op], -op))
        return best, e[best]

    def genotype(self, rank: Literal["indicator", "mean"] = "indicator",
                 meta: Mapping[str, Any] | None = None) -> Genotype:
        """The discrete architecture (docs/algorithms.md §Genotype rule, [INFER] for pruning).

        Every edge takes `edge_choice`; each node keeps its top ``keep`` incoming edges by
        strength (ties: the lower source), skipping edges whose op is ``none``. A node whose
        every incoming edge chose ``none`` keeps its strongest edge with ``none`` (the node is
        zero), so that every concatenated node stays fed and the genotype stays valid.
        """
        cells = {}
        for kind, edges in self.edges.items():
            choice = [self.edge_choice(kind, r, rank) for r in range(len(edges))]
            kept: list[int] = []
            for target in self._concat(kind):
                rows = [r for r, (_, t) in enumerate(edges) if t == target]
                order = sorted(rows, key=lambda r: (-choice[r][1], edges[r][0]))
                live = [r for r in order if self.op_names[choice[r][0]] != self.none_op]
                kept += sorted(live[: self.keep] or order[:1], key=lambda r: edges[r][0])
            cells[kind] = Cell(edges=[Edge(self.op_names[choice[r][0]], *edges[r]) for r in kept],
                               concat=self._concat(kind))
        return Genotype(space=self.space, cells=cells, meta=meta or {})

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The search state as plain data (lists, dicts, floats, ints, strings, None)."""
        return {
            "op_names": list(self.op_names),
            "edges": {k: [list(e) for e in v] for k, v in self.edges.items()},
            "candidates": {k: [list(c) for c in v] for k, v in self.candidates.items()},
            "rewards": {k: [[list(r) for r in edge] for edge in v]
                        for k, v in self.rewards.items()},
            "round_start": {k: [list(edge) for edge in v] for k, v in self.round_start.items()},
            "records": self.records,
            "round_records": self.round_records,
            "round": self.round,
            "trials_done": self.trials_done,
            "schedule": [{k: list(ops) for k, ops in a.items()} for a in self.schedule],
            "position": self.position,
            "last_indicator": {k: [list(edge) for edge in v]
                               for k, v in self.last_indicator.items()},
            "history": [dict(h) for h in self.history],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore `state_dict`; the op names and edges must match this pruner's."""
        if list(state["op_names"]) != list(self.op_names):
            raise ValueError(f"the saved pruner has ops {state['op_names']}, this one "
                             f"{list(self.op_names)}")
        if _edges(state["edges"]) != self.edges:
            raise ValueError("the saved pruner has other cells or edges than this one")
        self.candidates = {k: [[int(m) for m in c] for c in v]
                           for k, v in state["candidates"].items()}
        self.rewards = {k: [[[float(x) for x in r] for r in edge] for edge in v]
                        for k, v in state["rewards"].items()}
        self.round_start = {k: [[int(x) for x in edge] for edge in v]
                            for k, v in state["round_start"].items()}
        self.records = int(state["records"])
        self.round_records = int(state["round_records"])
        self.round = int(state["round"])
        self.trials_done = int(state["trials_done"])
        self.schedule = [{k: [int(m) for m in ops] for k, ops in a.items()}
                         for a in state["schedule"]]
        self.position = int(state["position"])
        self.last_indicator = {k: [[None if x is None else float(x) for x in edge] for edge in v]
                               for k, v in state["last_indicator"].items()}
        self.history = [dict(h) for h in state["history"]]
