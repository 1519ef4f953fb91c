"""Training: the `train:` spec and the batch trainer."""

from blocks.train.spec import TrainSpec

__all__ = ["TrainSpec"]
