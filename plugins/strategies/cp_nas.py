"""The ``cp_nas`` strategy: Child-Parent NAS (IJCAI'20; book §4.3, Alg. 9).

See docs/algorithms.md §CP-NAS.

Two supernets over the same space and options (PC-DARTS partial channels, ``partial_k`` = 4):
the **Parent** is real-valued (the ``none`` binarizer), the **Child** uses the recipe's 1-bit
binarizer (``recon``: learned scales, with the reconstruction and intra-class compactness terms
of Eq. 4.17–4.18 weighted by its ``lambda_rec``/``mu_cmp``). Every sampled single path trains
both for one epoch on the same batches (Parent: CE; Child: CE + the binarizer's aux losses, the
compactness on the pooled last-conv features), both are scored on the same validation batches
(A_P, A_C), and the performance indicator (Eq. 4.15)

    z = β_P · (A_P − A_C) + A_C

is credited to every sampled (edge, op). Reduction as in BNAS with the ``mean`` indicator on z
and the softmax normalisation e = softmax(z̄) (Eq. 4.16), z̄ the mean over the round's T trials.
β_P = 0 ranks by the Child alone, β_P = 1 by the Parent alone. ``weight_images`` counts the
Child's images (the Parent trains on the same batches).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from automl_bin import hookimpl
from automl_bin.hookspecs import Register
from automl_bin.interfaces import Binarizer, SearchEnv, SearchSpace
from automl_bin.search.pruning import Architecture
from automl_bin.search.sampled_path import (
    PathTrainee,
    SampledPathConfig,
    SampledPathStrategy,
)

__all__ = ["CpNasStrategy", "CpNasConfig", "cp_indicator"]

_ge0 = attrs.validators.ge(0)


def cp_indicator(a_parent: float, a_child: float, beta_p: float) -> float:
    """Eq. 4.15: ``z = β_P·(A_P − A_C) + A_C``."""
    return beta_p * (a_parent - a_child) + a_child


@attrs.frozen(kw_only=True)
class CpNasConfig(SampledPathConfig):
    #: β_P, the weight of the Parent–Child accuracy gap in z (default 1 [INFER]; the book's
    #: accuracy peaks below 2)
    beta_p: float = attrs.field(default=1.0, validator=_ge0)
    #: weight decay of the real-valued Parent (the Child's latent weights use weight_decay)
    parent_weight_decay: float = attrs.field(default=3e-4, validator=_ge0)


class CpNasStrategy(SampledPathStrategy):
    """CP-NAS: a real Parent and a 1-bit Child share every sampled path; z ranks the ops."""

    Config = CpNasConfig
    label = "cp_nas"

    def check_compatible(self, space: SearchSpace, binarizer: Binarizer) -> str | None:
        if binarizer.weight_bits != 1 or binarizer.activation_bits != 1:
            return (f"its Child is a 1-bit network, but the binarizer gives "
                    f"{binarizer.weight_bits}-bit weights and {binarizer.activation_bits}-bit "
                    "activations; use a 1-bit binarizer such as 'recon'")
        return super().check_compatible(space, binarizer)

    def build_trainees(self, env: SearchEnv) -> list[PathTrainee]:
        if env.create is None:
            raise ValueError("cp_nas builds its real-valued Parent with env.create, which is "
                             "not set")
        parent_binarizer = env.create("binarizer", "none")
        return [self.make_trainee(env, "child", env.binarizer, self.config.weight_decay),
                self.make_trainee(env, "parent", parent_binarizer,
                                  self.config.parent_weight_decay)]

    @property
    def parent(self) -> PathTrainee:
        return self.trainees[1]

    @property
    def child(self) -> PathTrainee:
        return self.trainees[0]

    def record_accuracies(self, arch: Architecture, a_parent: float, a_child: float
                          ) -> tuple[float, dict[str, Any] | None]:
        """Credit ``z`` (Eq. 4.15) of the two accuracies to ``arch``'s ops and advance the
        schedule, as `run_epoch` does; returns ``(z, the prune entry or None)``."""
        z = cp_indicator(a_parent, a_child, self.config.beta_p)
        return z, self.credit(arch, z)

    def reward(self, train: Mapping[str, Mapping[str, float]],
               scores: Mapping[str, Mapping[str, float]]) -> tuple[float, dict[str, float]]:
        a_p, a_c = scores["parent"]["val_acc"], scores["child"]["val_acc"]
        child = train["child"]
        metrics = {
            "train_loss": child["train_loss"], "train_acc": child["train_acc"],
            "parent_train_loss": train["parent"]["train_loss"],
            "parent_train_acc": train["parent"]["train_acc"],
            "recon_loss": child.get("recon_loss", 0.0),
            "compactness_loss": child.get("compactness_loss", 0.0),
            "parent_val_acc": a_p, "child_val_acc": a_c, "val_acc": a_c,
            "val_loss": scores["child"]["val_loss"],
            "parent_val_loss": scores["parent"]["val_loss"],
        }
        z = cp_indicator(a_p, a_c, self.config.beta_p)
        metrics["z"] = z
        return z, metrics


@hookimpl
def register_strategies(register: Register) -> None:
    register("cp_nas", CpNasStrategy)
