"""The ``bnas`` strategy: BNAS (AAAI'20) and BNAS2 (IJCV'21).

See docs/algorithms.md §BNAS and BNAS2.

A partial-channel (PC-DARTS, ``partial_k`` = 4, no edge normalisation) supernet whose cell
convolutions come from the recipe's binarizer (XNOR or PCNN-style ``recon``) is trained along
single paths sampled by performance-based operation-space reduction: every trial samples each
remaining op of every edge exactly once (``sampling = "permutation"``, BNAS) or draws ops with
probability ``softmax(−LCB)`` (``"lcb_softmax"``, BNAS2 [INFER]); each sampled path trains the
shared weights for one epoch and its validation accuracy (single path, BN batch statistics;
before that training with ``score_before_training``) is credited to its ops. After ``trials``
trials the op with the lowest ``e = softmax(s)`` (Eq. 4.16) leaves every edge, with ``s`` the
mean accuracy over the round (``indicator = "mean"``, BNAS1) or its UCB
``mean + sqrt(2 ln N / n)`` (``"ucb"``, BNAS2; N and n count the round's trials). The loop, the
optional warm-up and the bookkeeping are shared with ``cp_nas`` (`SampledPathStrategy`,
`automl_bin.search.pruning`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import attrs

from automl_bin import hookimpl
from automl_bin.hookspecs import Register
from automl_bin.interfaces import SearchEnv
from automl_bin.search.sampled_path import (
    PathTrainee,
    SampledPathConfig,
    SampledPathStrategy,
)

__all__ = ["BnasStrategy", "BnasConfig"]


@attrs.frozen(kw_only=True)
class BnasConfig(SampledPathConfig):
    #: "mean" accuracy (BNAS1) or "ucb" = mean + sqrt(2 ln N / n) (BNAS2)
    indicator: Literal["mean", "ucb"] = "mean"
    #: "permutation": each op once per trial (BNAS); "lcb_softmax": draw by softmax(−LCB) (BNAS2)
    sampling: Literal["permutation", "lcb_softmax"] = "permutation"


class BnasStrategy(SampledPathStrategy):
    """BNAS/BNAS2: sample, train and score single paths of a binary supernet; prune ops."""

    Config = BnasConfig
    label = "bnas"

    def indicator_name(self) -> Literal["mean", "ucb"]:
        return self.config.indicator

    def sampling_name(self) -> Literal["permutation", "lcb_softmax"]:
        return self.config.sampling

    def build_trainees(self, env: SearchEnv) -> list[PathTrainee]:
        return [self.make_trainee(env, "supernet", env.binarizer, self.config.weight_decay)]

    def reward(self, train: Mapping[str, Mapping[str, float]],
               scores: Mapping[str, Mapping[str, float]]) -> tuple[float, dict[str, float]]:
        metrics = dict(train["supernet"])
        metrics.update(scores["supernet"])
        return float(scores["supernet"]["val_acc"]), metrics


@hookimpl
def register_strategies(register: Register) -> None:
    register("bnas", BnasStrategy)
