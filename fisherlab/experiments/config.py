"""What a reproduction runs: :class:`ReproduceConfig` and its :data:`PRESETS`."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Any

from fisherlab.errors import FisherlabError
from fisherlab.planner import check_rule


@dataclass(frozen=True)
class ReproduceConfig:
    """What the reproduction runs; presets fill it (see :data:`PRESETS`).

    Attributes:
        preset: Name of the preset it came from.
        seeds: Seeds of fine-tuning and attacks.
        private: Private dataset (fine-tuning, evaluation, attacks).
        public: Public dataset of the GAN priors.
        domains: Pretraining domains; the first is the main one (Figs. 1, 2,
            4, 5), the others are compared in Fig. 3.
        arch: Target architecture.
        eval_arch: Evaluation-model architecture (different from ``arch``).
        pretrain_epochs: Pretraining epochs per domain, in ``domains`` order.
        pretrain_samples: Cap on pretraining images per domain (``None``: all).
        eval_epochs: Evaluation-model epochs.
        eval_samples: Cap on the evaluation model's training images (``None``: all).
        eval_lr: Evaluation-model learning rate.
        finetune_epochs: Fine-tuning epochs.
        finetune_lr: Fine-tuning learning rate.
        finetune_samples: Cap on private training images in fine-tuning
            (``None``: all).
        checkpoint_epochs: Epochs whose checkpoints are attacked in the
            boundary sweep (Fig. 2); the last epoch is always included.
        boundaries: Freeze boundaries of the sweep (``None``: all 0..L-1).
        domain_boundaries: Boundaries compared across domains (Fig. 3).
        first_layers: Layers trained in the "first" arm of Fig. 4.
        middle_layers: Layers trained in the "middle" arm of Fig. 4.
        gmi_gan_epochs: GMI prior (DCGAN) epochs.
        kedmi_gan_epochs: KEDMI prior epochs.
        gan_samples: Cap on the GAN priors' public training images (``None``: all).
        attack_iterations: Iterations per attack.
        attack_restarts: Restarts per attack.
        per_class: Reconstructions per class.
        fisher_every: Record the inversion Fisher every this many iterations.
        profile_samples: Private training images in each classification profile.
        planner_lam: ``lam`` of the planner's rule.
        planner_budget: ``budget`` of the planner's rule.
        compare_defenses: Also run the defense comparison (Fig. 1-IV).
        defense_grid: ``(defense, ((strength, value), ...))`` pairs, each
            applied to full fine-tuning from the main domain.
        tl_bido_boundaries: Boundaries at which TL-DMI is combined with BiDO
            (default strengths).
    """

    preset: str = "default"
    seeds: tuple[int, ...] = (0, 1, 2)
    private: str = "mnist5k:0-4"
    public: str = "mnist5k:5-9"
    domains: tuple[str, ...] = ("fashion", "mnist5k:5-9")
    arch: str = "target_cnn"
    eval_arch: str = "eval_cnn"
    pretrain_epochs: tuple[int, ...] = (1, 5)
    pretrain_samples: tuple[int | None, ...] = (None, None)
    eval_epochs: int = 40
    eval_samples: int | None = None
    eval_lr: float = 0.05
    finetune_epochs: int = 5
    finetune_lr: float = 0.01
    finetune_samples: int | None = None
    checkpoint_epochs: tuple[int, ...] = (1, 3)
    boundaries: tuple[int, ...] | None = None
    domain_boundaries: tuple[int, ...] = (2, 3, 4)
    first_layers: tuple[int, ...] = (0, 1)
    middle_layers: tuple[int, ...] = (2, 3)
    gmi_gan_epochs: int = 100
    kedmi_gan_epochs: int = 30
    gan_samples: int | None = None
    attack_iterations: int = 200
    attack_restarts: int = 1
    per_class: int = 5
    fisher_every: int = 10
    profile_samples: int = 1000
    planner_lam: float = 1.0
    planner_budget: float = 1.0
    compare_defenses: bool = False
    defense_grid: tuple[tuple[str, tuple[tuple[str, float], ...]], ...] = (
        ("mid", (("beta", 0.003),)),
        ("mid", (("beta", 0.01),)),
        ("mid", (("beta", 0.03),)),
        ("bido", (("hsic_a1", 0.05), ("hsic_a2", 0.5))),
        ("bido", (("hsic_a1", 0.1), ("hsic_a2", 1.0))),
        ("bido", (("hsic_a1", 0.2), ("hsic_a2", 2.0))),
        ("ls", (("smoothing", -0.05),)),
        ("ls", (("smoothing", -0.1),)),
        ("ls", (("smoothing", -0.2),)),
    )
    tl_bido_boundaries: tuple[int, ...] = (3, 4)

    def __post_init__(self) -> None:
        if not self.seeds:
            raise FisherlabError("give at least one seed")
        if len(self.pretrain_epochs) != len(self.domains) or len(self.pretrain_samples) != len(
            self.domains
        ):
            raise FisherlabError("pretrain_epochs and pretrain_samples need one entry per domain")
        check_rule(self.planner_lam, self.planner_budget)
        if self.fisher_every < 1:
            raise FisherlabError(
                f"fisher_every must be >= 1, got {self.fisher_every}: the reproduction needs the "
                "Fisher recorded along its attacks (Figs. 1-II and 5, the planner)"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return json.loads(json.dumps(asdict(self)))


PRESETS: dict[str, ReproduceConfig] = {
    "default": ReproduceConfig(),
    "quick": ReproduceConfig(
        preset="quick",
        seeds=(0,),
        pretrain_epochs=(1, 1),
        pretrain_samples=(2000, None),
        eval_epochs=6,
        finetune_epochs=2,
        finetune_samples=640,
        checkpoint_epochs=(1,),
        domain_boundaries=(2, 4),
        gmi_gan_epochs=3,
        kedmi_gan_epochs=1,
        attack_iterations=30,
        per_class=2,
        fisher_every=5,
        profile_samples=256,
        compare_defenses=True,
        defense_grid=(
            ("mid", (("beta", 0.003),)),
            ("bido", (("hsic_a1", 0.05), ("hsic_a2", 0.5))),
            ("ls", (("smoothing", -0.05),)),
        ),
        tl_bido_boundaries=(4,),
    ),
    "full": ReproduceConfig(preset="full", compare_defenses=True),
}

# the smoke preset is quick on tiny data: the same steps and tables, for tests
PRESETS["smoke"] = replace(
    PRESETS["quick"],
    preset="smoke",
    pretrain_samples=(512, 512),
    eval_epochs=2,
    eval_samples=512,
    finetune_samples=256,
    gmi_gan_epochs=1,
    gan_samples=256,
    attack_iterations=10,
    per_class=1,
    profile_samples=64,
)
"""The presets: ``smoke`` (about a minute: every step and table of ``quick``
on tiny data, for tests; its numbers mean nothing), ``quick`` (minutes, a
first look), ``default`` (the paper's Figs. 1-II to 5) and ``full``
(``default`` plus the defense comparison; run it into the same ``--out`` to
reuse the default's steps)."""
