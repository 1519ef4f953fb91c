"""Training: the `train:` spec and the batch trainer."""

from blocks.spec.train import TrainSpec

__all__ = ["TrainSpec"]
