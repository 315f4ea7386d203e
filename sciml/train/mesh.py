"""Device mesh, replicated parameters, and multi-host start-up."""

import os

import jax
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from sciml.data.loader import DATA_AXIS


def make_mesh(devices: list[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over all (global) devices with an explicit data axis."""
    devices = jax.devices() if devices is None else devices
    return jax.make_mesh(
        (len(devices),), (DATA_AXIS,), axis_types=(AxisType.Explicit,), devices=devices
    )


def replicate(tree, mesh: Mesh):
    """Place every array of `tree` on all devices of `mesh` (fully replicated)."""
    return jax.device_put(tree, NamedSharding(mesh, P()))


def initialize_distributed() -> bool:
    """Join a multi-process run when launched as one; return whether it is multi-process.

    Set JAX_COORDINATOR_ADDRESS (host:port of process 0), JAX_NUM_PROCESSES and JAX_PROCESS_ID
    in each process's environment. On clusters that JAX detects by itself (SLURM, Cloud TPU) set
    SCIML_DISTRIBUTED=1 instead.
    """
    address = os.environ.get("JAX_COORDINATOR_ADDRESS")
    if address:
        jax.distributed.initialize(
            coordinator_address=address,
            num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
            process_id=int(os.environ["JAX_PROCESS_ID"]),
        )
    elif os.environ.get("SCIML_DISTRIBUTED") == "1":
        jax.distributed.initialize()
    return jax.process_count() > 1
