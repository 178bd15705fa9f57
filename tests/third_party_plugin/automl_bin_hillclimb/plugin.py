"""``hillclimb``: mutate one edge of the current genotype per epoch, keep it if it scores better.

Weights are shared: each epoch trains the supernet along the current and the mutated path, then
both are scored on the validation split with the ``supernet`` estimator.
"""

from __future__ import annotations

import random
from typing import Any

import attrs

from automl_bin import hookimpl
from automl_bin.interfaces import Cell, Edge, EstimationEnv, Genotype, Strategy


@attrs.frozen(kw_only=True)
class HillClimbConfig:
    epochs: int = attrs.field(default=3, validator=attrs.validators.ge(1))
    steps_per_epoch: int = attrs.field(default=2, validator=attrs.validators.ge(1))
    lr: float = 0.05


class HillClimb(Strategy):
    Config = HillClimbConfig

    def setup(self, env):
        super().setup(env)
        import torch

        self.rng = random.Random(env.seed)
        self.net = env.space.build_supernet(env.input_shape, env.num_classes, env.binarizer)
        self.opt = torch.optim.SGD(self.net.weight_parameters(), lr=self.config.lr, momentum=0.9)
        self.current = env.space.sample_genotype(self.rng)
        self.score = -1.0

    def num_epochs(self) -> int:
        return self.config.epochs

    def _mutate(self, g: Genotype) -> Genotype:
        ops = [o for o in self.env.space.op_names if o != "none"]
        cells = {}
        for name, cell in g.cells:
            edges = list(cell.edges)
            i = self.rng.randrange(len(edges))
            e = edges[i]
            edges[i] = Edge(self.rng.choice(ops), e.source, e.target)
            cells[name] = Cell(edges=edges, concat=cell.concat)
        return Genotype(space=g.space, cells=cells)

    def run_epoch(self, epoch: int) -> dict[str, float]:
        import torch.nn.functional as F

        env = self.env
        candidate = self._mutate(self.current)
        self.net.train()
        for step, (x, y) in enumerate(env.splits["train"].batches(epoch)):
            if step >= self.config.steps_per_epoch:
                break
            # alternate the shared weights between the incumbent and the candidate path
            self.net.set_fixed_architecture(candidate if step % 2 else self.current)
            loss = F.cross_entropy(self.net(x), y)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
        self.net.set_fixed_architecture(None)
        est_env = EstimationEnv(space=env.space, binarizer=env.binarizer,
                                input_shape=env.input_shape, num_classes=env.num_classes,
                                device=env.device, seed=env.seed, splits=env.splits,
                                reporter=env.reporter, supernet=self.net)
        scorer = env.create("estimator", "supernet")
        new = scorer.estimate(candidate, est_env).score
        if new >= self.score:
            self.current, self.score = candidate, new
        return {"val_acc": self.score, "candidate_val_acc": new}

    def derive(self) -> Genotype:
        return self.current


@hookimpl
def register_strategies(register: Any) -> None:
    register("hillclimb", HillClimb)
