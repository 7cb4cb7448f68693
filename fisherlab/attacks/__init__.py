"""Stage 4, attacks: model inversion (GMI, KEDMI, LOMMA, PLG-MI, white-box), priors, evaluation.

* :mod:`~fisherlab.attacks.gan`, :mod:`~fisherlab.attacks.train_gan`: the GAN priors
  (PLG-MI's on :mod:`~fisherlab.attacks.pseudo_labels`);
* :mod:`~fisherlab.attacks.surrogates`: LOMMA's surrogates distilled from the target;
* :mod:`~fisherlab.attacks.method`: what an attack implements and returns;
* :mod:`~fisherlab.attacks.identity`: the identity losses (cross-entropy,
  LOMMA's, max-margin);
* :mod:`~fisherlab.attacks.augment`: PLG-MI's image augmentations;
* :mod:`~fisherlab.attacks.recorder`: the Fisher recorded along an attack;
* :mod:`~fisherlab.attacks.gmi`, :mod:`~fisherlab.attacks.kedmi`,
  :mod:`~fisherlab.attacks.lomma`, :mod:`~fisherlab.attacks.plgmi`,
  :mod:`~fisherlab.attacks.whitebox`: the attacks;
* :mod:`~fisherlab.attacks.registry`: the one table of attacks;
* :mod:`~fisherlab.attacks.base`: :class:`AttackConfig`;
* :mod:`~fisherlab.attacks.evaluation`: attack accuracy, KNN distance, FID;
* :mod:`~fisherlab.attacks.outputs`: the files of ``fisherlab attack``;
* :mod:`~fisherlab.attacks.run`: :func:`attack`.
"""

from fisherlab.attacks.base import AttackConfig
from fisherlab.attacks.evaluation import (
    SUMMARY_METRICS,
    AttackOutcome,
    evaluate_attack,
    frechet_distance,
    knn_distances,
    penultimate_features,
    topk_correct,
)
from fisherlab.attacks.identity import IdentityLoss, ModelAugmentation
from fisherlab.attacks.method import AttackMethod, AttackResult
from fisherlab.attacks.outputs import (
    attack_files,
    read_reconstructions,
    write_evaluation,
    write_outputs,
)
from fisherlab.attacks.recorder import FisherRecorder
from fisherlab.attacks.registry import ATTACKS, attack_method, attack_names
from fisherlab.attacks.run import attack, default_private_data, evaluate_saved
from fisherlab.attacks.surrogates import DEFAULT_SURROGATES, DistillConfig, distill
from fisherlab.attacks.train_gan import GANConfig, GANPrior, load_gan, save_samples, train_gan

__all__ = [
    # running an attack
    "AttackConfig",
    "attack",
    "default_private_data",
    "evaluate_saved",
    # the attacks
    "ATTACKS",
    "AttackMethod",
    "AttackResult",
    "FisherRecorder",
    "IdentityLoss",
    "ModelAugmentation",
    "attack_method",
    "attack_names",
    # LOMMA's surrogates
    "DEFAULT_SURROGATES",
    "DistillConfig",
    "distill",
    # evaluation
    "SUMMARY_METRICS",
    "AttackOutcome",
    "evaluate_attack",
    "frechet_distance",
    "knn_distances",
    "penultimate_features",
    "topk_correct",
    # outputs
    "attack_files",
    "read_reconstructions",
    "write_evaluation",
    "write_outputs",
    # GAN priors
    "GANConfig",
    "GANPrior",
    "load_gan",
    "save_samples",
    "train_gan",
]
