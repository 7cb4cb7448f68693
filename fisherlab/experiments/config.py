"""What a reproduction runs: :class:`ReproduceConfig` and its :data:`PRESETS`."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Any

from fisherlab.errors import FisherlabError
from fisherlab.planner import check_rule

STRONG_ATTACKS = ("lomma-gmi", "plgmi")
"""The stronger attacks a reproduction can add to the sweep (C7)."""

PER_SEED = ("pretraining", "evaluator", "priors")
"""The shared models a reproduction can train again for every seed."""


@dataclass(frozen=True)
class ReproduceConfig:
    """What the reproduction runs; presets fill it (see :data:`PRESETS`).

    Attributes:
        preset: Name of the preset it came from.
        seeds: Seeds of fine-tuning and attacks, and of the shared models
            named in ``per_seed``.
        per_seed: Which shared models are trained again for every seed:
            any of ``"pretraining"``, ``"evaluator"``, ``"priors"`` (the GAN
            priors). The others are trained once (seed 0) and shared.
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
            applied to full fine-tuning from the main domain (replaced by the
            tuned strengths when ``defense_candidates`` is set).
        defense_candidates: ``(defense, (((strength, value), ...), ...))``:
            per defense, candidate strengths weakest first, tuned on a
            validation split held out of the private training data
            (:func:`fisherlab.training.tune_defense`) before the comparison;
            the chosen ones (an operating point and its neighbours) form the
            defense grid. ``None``: use ``defense_grid`` as given.
        tune_tolerance: Validation-accuracy drop the operating point may cost.
        tune_seeds: Seeds of the tuning runs.
        defense_roles: Which tuned strengths the comparison trains: the
            operating point and its weaker and stronger neighbours, or fewer.
        tl_bido_boundaries: Boundaries at which TL-DMI is combined with BiDO
            (default strengths).
        second_arch: A second target architecture for C1 (``None``: none):
            pretrained on the main domain, fully fine-tuned, profiled and
            attacked with GMI like the main target.
        second_arch_seeds: How many of ``seeds`` (the first ones) it runs.
        reference_iterations: GMI iterations of the reference-length check
            (``None``: no check): the sweep's final checkpoints at
            ``reference_boundaries`` are attacked at this length and at
            ``attack_iterations``, both with ``reference_per_class``.
        reference_boundaries: Boundaries of the reference-length check.
        reference_seeds: How many of ``seeds`` (the first ones) it runs.
        reference_per_class: Reconstructions per class in the check.
        strong_attacks: The stronger attacks (LOMMA, PLG-MI) that also
            attack the Fig. 2 sweep's final checkpoints, with GMI's
            iterations, restarts and reconstructions (claim C7).
        strong_seeds: How many of ``seeds`` (the first ones) they run.
        strong_boundaries: The sweep's boundaries they attack (``None``: all).
        surrogates: LOMMA's surrogate architectures, each distilled from
            every attacked model on the public data.
        surrogate_epochs: Their distillation epochs.
        plgmi_gan_epochs: Epochs of each attacked model's PLG-MI GAN.
        plgmi_top_n: Public images pseudo-labelled per class for it.
        plgmi_n_critic: Its discriminator steps per generator step.
    """

    preset: str = "default"
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    per_seed: tuple[str, ...] = ("pretraining", "evaluator")
    private: str = "mnist5k:0-4"
    public: str = "mnist5k:5-9"
    domains: tuple[str, ...] = ("fashion", "mnist5k:5-9")
    arch: str = "target_cnn"
    eval_arch: str = "eval_cnn"
    pretrain_epochs: tuple[int, ...] = (5, 5)
    pretrain_samples: tuple[int | None, ...] = (2000, 2000)
    eval_epochs: int = 40
    eval_samples: int | None = None
    eval_lr: float = 0.05
    finetune_epochs: int = 5
    finetune_lr: float = 0.01
    finetune_samples: int | None = None
    checkpoint_epochs: tuple[int, ...] = ()
    boundaries: tuple[int, ...] | None = None
    domain_boundaries: tuple[int, ...] = (2, 4)
    first_layers: tuple[int, ...] = (0, 1)
    middle_layers: tuple[int, ...] = (2, 3)
    gmi_gan_epochs: int = 100
    kedmi_gan_epochs: int = 30
    gan_samples: int | None = None
    attack_iterations: int = 100
    attack_restarts: int = 1
    per_class: int = 20
    fisher_every: int = 10
    profile_samples: int = 500
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
    defense_candidates: tuple[tuple[str, tuple[tuple[tuple[str, float], ...], ...]], ...] | None = (
        None
    )
    tune_tolerance: float = 0.02
    tune_seeds: tuple[int, ...] = (0, 1, 2)
    defense_roles: tuple[str, ...] = ("weaker", "operating", "stronger")
    second_arch: str | None = None
    second_arch_seeds: int = 3
    reference_iterations: int | None = None
    reference_boundaries: tuple[int, ...] = (0, 4)
    reference_seeds: int = 2
    reference_per_class: int = 5
    strong_attacks: tuple[str, ...] = ("lomma-gmi", "plgmi")
    strong_seeds: int = 3
    strong_boundaries: tuple[int, ...] | None = None
    surrogates: tuple[str, ...] = ("lenet5", "mlp", "vit_small")
    surrogate_epochs: int = 20
    plgmi_gan_epochs: int = 30
    plgmi_top_n: int = 200
    plgmi_n_critic: int = 1

    def __post_init__(self) -> None:
        if not self.seeds:
            raise FisherlabError("give at least one seed")
        roles = ("weaker", "operating", "stronger")
        if not self.defense_roles or set(self.defense_roles) - set(roles):
            raise FisherlabError(f"defense_roles must be some of {roles}, got {self.defense_roles}")
        unknown = sorted(set(self.per_seed) - set(PER_SEED))
        if unknown:
            raise FisherlabError(f"unknown per_seed {unknown}: expected some of {PER_SEED}")
        if len(self.pretrain_epochs) != len(self.domains) or len(self.pretrain_samples) != len(
            self.domains
        ):
            raise FisherlabError("pretrain_epochs and pretrain_samples need one entry per domain")
        check_rule(self.planner_lam, self.planner_budget)
        unknown = sorted(set(self.strong_attacks) - set(STRONG_ATTACKS))
        if unknown:
            raise FisherlabError(
                f"unknown strong_attacks {unknown}: expected some of {STRONG_ATTACKS}"
            )
        if any(a.startswith("lomma") for a in self.strong_attacks) and not self.surrogates:
            raise FisherlabError("LOMMA needs at least one surrogate architecture")
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
        per_seed=(),
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
        second_arch="vgg16_bn_small",
        second_arch_seeds=1,
        reference_iterations=60,
        reference_seeds=1,
        reference_per_class=2,
        strong_seeds=1,
        surrogate_epochs=5,
        plgmi_gan_epochs=20,
    ),
}
# checks: the default plus C1 on a second architecture and the reference-length check
PRESETS["checks"] = replace(
    PRESETS["default"],
    preset="checks",
    second_arch="vgg16_bn_small",
    reference_iterations=1500,
)
PRESETS["full"] = replace(
    PRESETS["checks"],
    preset="full",
    compare_defenses=True,
    defense_candidates=(  # weakest first; the edge of 2 points lies inside each grid
        ("mid", tuple((("beta", b),) for b in (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0))),
        (
            "bido",
            tuple(
                (("hsic_a1", a), ("hsic_a2", 10 * a))
                for a in (0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.2)
            ),
        ),
        ("ls", tuple((("smoothing", v),) for v in (-0.01, -0.02, -0.03, -0.05, -0.07, -0.1))),
    ),
)
# defenses: checks plus the tuned defense comparison at the operating points only, tuned on one
# seed; what fits a session on 2 CPU cores (full tunes on 3 seeds and trains the neighbours too)
PRESETS["defenses"] = replace(
    PRESETS["full"],
    preset="defenses",
    tune_seeds=(0,),
    defense_roles=("operating",),
)
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
    second_arch="eval_cnn",  # plumbing only: a second architecture that trains in seconds
    reference_iterations=20,
    reference_per_class=2,  # not per_class: its attacks are steps of their own
    strong_boundaries=(0,),
    surrogates=("mlp",),
    surrogate_epochs=1,
    plgmi_gan_epochs=1,
    plgmi_top_n=20,
)
"""The presets: ``smoke`` (about a minute: every step and table of ``quick``
on tiny data, for tests; its numbers mean nothing), ``quick`` (minutes, a
first look), ``default`` (the paper's Figs. 1-II to 5 and claims C1-C5 over
five seeds; about an hour on 2 CPU cores), ``checks`` (``default`` plus C1 on
VGG16-bn and the reference-length check), ``full`` (``checks`` plus the
defense comparison, each defense tuned on 3 seeds and compared at its
operating point and both neighbours) and ``defenses`` (``full`` tuned on one
seed and compared at the operating points only; about an hour here). Run
a larger preset into the same ``--out`` to reuse the smaller one's steps."""
