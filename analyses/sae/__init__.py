"""SAEs on denoising activations: the activation store, training, evaluation per mask ratio / step, features.

The SAE object and its interventions live in `interventions.sae` (`from interventions import SAE`)."""

from .store import MASK_RATIOS, VARIANTS, ActivationStore
from .train import TrainConfig, explained_variance, train_sae

__all__ = ["MASK_RATIOS", "VARIANTS", "ActivationStore", "TrainConfig", "explained_variance", "train_sae"]
