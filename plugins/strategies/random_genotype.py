"""The ``random_genotype`` reference: ONE genotype drawn uniformly from the search space.

No weights are trained and nothing is scored: the single "epoch" draws the genotype with
``space.sample_genotype`` (for the DARTS space every edge's op and each node's two inputs
uniform, ``none`` excluded as the DARTS derivation excludes it) and the run's retraining then
trains it like any searched genotype. A suite's ``[reference] random_genotypes = N`` adds N of
these per seed (``index`` 1..N), so ``automl-bin compare`` can say whether a strategy beats a
random architecture of the same space at the same retraining budget.

The draw is seeded by the run seed *and* ``index``: the N references of a seed differ, and the
same seed and index give the same genotype bit for bit on any machine (a string seed goes
through SHA-512 in `random.Random`, independent of ``PYTHONHASHSEED``).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import attrs

from automl_bin import hookimpl
from automl_bin.hookspecs import Register
from automl_bin.interfaces import Genotype, Strategy

__all__ = ["RandomGenotype", "RandomGenotypeConfig", "REFERENCE_TAG", "draw_genotype"]

#: the tag (key, value) that marks a run as a random-genotype reference for `automl_bin.compare`
REFERENCE_TAG = ("reference", "random_genotypes")


@attrs.frozen(kw_only=True)
class RandomGenotypeConfig:
    #: which of a seed's references this is (1..N in a suite); with the run seed it seeds the draw
    index: int = attrs.field(default=1, validator=attrs.validators.ge(0))
    #: the seed of the draw; -1 (default) uses the run seed. Fixing it retrains ONE genotype
    #: under several run seeds: the seed-to-seed spread of the retraining alone
    draw_seed: int = attrs.field(default=-1, validator=attrs.validators.ge(-1))


def draw_genotype(space: Any, seed: int, index: int) -> Genotype:
    """The genotype reference ``index`` of run seed ``seed`` draws from ``space``."""
    return space.sample_genotype(random.Random(f"random_genotype:{seed}:{index}"))


class RandomGenotype(Strategy):
    """Draw one uniform random genotype; train no weights (``weight_images`` = 0)."""

    Config = RandomGenotypeConfig
    # no gradient step at all: every rank draws the same genotype from the same seed
    supports_data_parallel = True

    def setup(self, env: Any) -> None:
        super().setup(env)
        self.genotype: Genotype | None = None

    def num_epochs(self) -> int:
        return 1

    def run_epoch(self, epoch: int) -> Mapping[str, float]:
        env = self.env
        assert env is not None
        seed = env.seed if self.config.draw_seed < 0 else self.config.draw_seed
        self.genotype = draw_genotype(env.space, seed, self.config.index)
        return {"weight_images": 0.0}

    def derive(self) -> Genotype:
        if self.genotype is None:
            raise RuntimeError("random_genotype derived before its one epoch drew the genotype")
        return self.genotype

    def tags(self) -> Mapping[str, str]:
        return {REFERENCE_TAG[0]: REFERENCE_TAG[1], "reference.index": str(self.config.index)}

    def final_metrics(self) -> Mapping[str, float]:
        return {"weight_images": 0.0}

    def state_dict(self) -> dict[str, Any]:
        return {"genotype": None if self.genotype is None else self.genotype.to_json()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        text = state.get("genotype")
        self.genotype = None if text is None else Genotype.from_json(text)


@hookimpl
def register_strategies(register: Register) -> None:
    register("random_genotype", RandomGenotype)
