"""Training: train state, compiled step, fit loop, optimisers, mesh and checkpoints."""

from sciml.train.checkpoint import Checkpointer, read_metadata, restore_raw_state, steps_in
from sciml.train.loop import METRICS_FILE, fit, read_metrics, tree_equal
from sciml.train.mesh import initialize_distributed, make_mesh, replicate
from sciml.train.optim import make_optimizer, make_schedule
from sciml.train.state import TrainState, make_train_step

__all__ = [
    "METRICS_FILE",
    "Checkpointer",
    "TrainState",
    "fit",
    "initialize_distributed",
    "make_mesh",
    "make_optimizer",
    "make_schedule",
    "make_train_step",
    "read_metadata",
    "read_metrics",
    "replicate",
    "restore_raw_state",
    "steps_in",
    "tree_equal",
]
