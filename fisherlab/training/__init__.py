"""Stage 3a, training: pretraining, TL-DMI fine-tuning, defenses, natural accuracy.

* :mod:`~fisherlab.training.train`: :class:`TrainConfig` and :func:`train`
  (pretrain, or fine-tune with a freeze boundary that freezes for real);
* :mod:`~fisherlab.training.freezing`: :func:`freeze` and :func:`training_mode`
  (frozen layers, BatchNorm statistics included, stay bit-identical);
* :mod:`~fisherlab.training.fit`: :func:`fit`, training a module you hold on a
  ``Dataset``/``DataLoader`` (``train(model, data, ...)``);
* :mod:`~fisherlab.training.defenses`: training-time defenses (MID, BiDO, LS);
* :mod:`~fisherlab.training.tuning`: :func:`tune_defense`, defense strengths
  chosen on a validation split of the private training data;
* :mod:`~fisherlab.training.accuracy`: :func:`natural_accuracy`.
"""

from fisherlab.training.accuracy import natural_accuracy
from fisherlab.training.defenses import (
    DEFENSES,
    MID,
    STRENGTH_FIELDS,
    BiDO,
    Defense,
    LabelSmoothing,
    Strength,
    build_defense,
    flag,
    gaussian_gram,
    hsic,
    kl_to_standard_normal,
    negative_ls_factor,
    normalized_hsic,
    resolve_strengths,
    smoothed_cross_entropy,
)
from fisherlab.training.fit import TrainResult, fit
from fisherlab.training.freezing import freeze, training_mode
from fisherlab.training.train import TrainConfig, train
from fisherlab.training.tuning import DefenseTuning, choose_strengths, tune_defense

__all__ = [
    # training
    "TrainConfig",
    "TrainResult",
    "freeze",
    "training_mode",
    "train",
    "fit",
    "natural_accuracy",
    # defenses
    "DEFENSES",
    "STRENGTH_FIELDS",
    "Defense",
    "Strength",
    "MID",
    "BiDO",
    "LabelSmoothing",
    "build_defense",
    "resolve_strengths",
    "flag",
    "gaussian_gram",
    "hsic",
    "normalized_hsic",
    "kl_to_standard_normal",
    "smoothed_cross_entropy",
    "negative_ls_factor",
    # tuning
    "DefenseTuning",
    "tune_defense",
    "choose_strengths",
]
