"""Post-training: the loop, its EMA, precision, optimizer, saving and resuming, DDP/FSDP2 and fault handling.

`train(config)` runs one job; the loss terms live in vtok.losses and the settings in vtok.config.
"""

from .run import PeerLostError, TrainResult, train
from .trainer import Trainer

__all__ = ["PeerLostError", "TrainResult", "train", "Trainer"]
