"""fisherlab: Fisher-information layer analysis and TL-DMI defenses against model inversion.

The flow: data + architecture -> :func:`train` (pretrain, or fine-tune with a
freeze boundary) -> checkpoint -> :func:`profile` (per-layer Fisher
information, rows keyed by :func:`layer_map`) -> :func:`attack` (GMI, KEDMI,
white-box, with the Fisher recorded along the attack) -> evaluation. Training
can add a defense against model inversion (:mod:`fisherlab.defenses`).
"""

from fisherlab._version import __version__
from fisherlab.attacks import AttackConfig, attack
from fisherlab.checkpoint import ModelMeta, load_model, model_meta, save_model
from fisherlab.data import DatasetSplits, DataSpec, InputSpec, load_dataset
from fisherlab.defenses import DEFENSES, Defense, VIBHead, build_defense, hsic, normalized_hsic
from fisherlab.errors import FisherlabError
from fisherlab.evaluate import natural_accuracy
from fisherlab.fisher import FisherEngine, profile
from fisherlab.layers import Layer, layer_map, layer_state_keys, layers
from fisherlab.models import build_model, replace_head
from fisherlab.reference import reference_profile
from fisherlab.train import TrainConfig, TrainResult, freeze, train
from fisherlab.train_gan import GANConfig, load_gan

__all__ = [
    "__version__",
    # errors
    "FisherlabError",
    # data
    "DataSpec",
    "DatasetSplits",
    "InputSpec",
    "load_dataset",
    # models and their layers
    "build_model",
    "replace_head",
    "Layer",
    "layers",
    "layer_map",
    "layer_state_keys",
    # checkpoints
    "ModelMeta",
    "model_meta",
    "load_model",
    "save_model",
    # Fisher information
    "FisherEngine",
    "profile",
    "reference_profile",
    # model-inversion attacks
    "AttackConfig",
    "GANConfig",
    "attack",
    "load_gan",
    # training-time defenses
    "DEFENSES",
    "Defense",
    "VIBHead",
    "build_defense",
    "hsic",
    "normalized_hsic",
    # training and evaluation
    "TrainConfig",
    "TrainResult",
    "freeze",
    "train",
    "natural_accuracy",
]
