"""Domain decomposition: the first spatial axis split over a 1-D device mesh (`jax.shard_map`).

Each device holds ``nx / n_devices`` planes of every population and runs the same fused step as a
single device; only streaming differs (`stream_halo`: one `ppermute` per direction per step).
Collision, bounce-back and the masks are local. Edge conditions on axis 0 act only on the devices
that hold that face; edge conditions on other axes must have uniform values (a profile along an
edge would have to be split too).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from jaxtyping import Array, Float

from sciml.pde.lbm.lattices import Populations
from sciml.pde.lbm.solver import UNROLL, Geometry, LBMProblem
from sciml.pde.lbm.streaming import stream_halo

Trajectory = Float[Array, "t q *space"]
"""Populations at saved steps ``(T, Q, *space)``."""


def slab_mesh(n_devices: int | None = None, axis_name: str = "x") -> Mesh:
    """A 1-D mesh over the first `n_devices` devices (default all)."""
    devices = jax.devices()[: n_devices or len(jax.devices())]
    return Mesh(devices, (axis_name,))


def shard_populations(f: Populations, mesh: Mesh) -> Populations:
    """Place populations ``(Q, nx, ...)`` on `mesh`, split along x."""
    return jax.device_put(f, NamedSharding(mesh, P(None, mesh.axis_names[0])))


def _validate(problem: LBMProblem, mesh: Mesh) -> int:
    if len(mesh.axis_names) != 1:
        raise ValueError(f"need a 1-D mesh, got axes {mesh.axis_names}")
    n = mesh.devices.size
    nx = problem.shape[0]
    if nx % n or nx // n < 2:
        raise ValueError(f"nx = {nx} must be a multiple of the {n} devices with >= 2 planes each")
    for edge in problem.edges:
        if edge.axis != 0 and not edge.uniform():
            raise NotImplementedError(
                f"{type(edge).__name__} on axis {edge.axis} with a profile is not supported when "
                "sharded along x: give uniform values or run on one device"
            )
    return n


def sharded_rollout(
    problem: LBMProblem,
    f0: Populations,
    n_steps: int,
    save_every: int | None = None,
    *,
    mesh: Mesh,
) -> Trajectory:
    """`LBMProblem.rollout` with the box split along x over `mesh`; same numbers as one device.

    Args:
        problem: the problem (any lattice, collision, masks and edges, within `_validate`'s rules).
        f0: initial populations ``(Q, *shape)``.
        n_steps: steps, a multiple of `save_every` (default: only first and last saved).
        mesh: a 1-D mesh, e.g. `slab_mesh()`.

    Returns:
        Populations at steps 0, save_every, ..., n_steps, ``(T, Q, *shape)``, sharded along x.
    """
    save_every = n_steps if save_every is None else save_every
    if save_every <= 0 or n_steps % save_every:
        raise ValueError(
            f"n_steps={n_steps} must be a positive multiple of save_every={save_every}"
        )
    _validate(problem, mesh)
    problem._check_state(f0)
    return _sharded_rollout(problem, f0, n_steps, save_every, mesh)


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _sharded_rollout(problem, f0, n_steps, save_every, mesh):
    axis_name = mesh.axis_names[0]
    n_blocks = mesh.devices.size
    geometry = problem.geometry(f0.dtype)
    # Spatial fields travel as the geometry (split along x); the rest of the problem is replicated.
    local = dataclasses.replace(
        problem,
        solid=None,
        wall_velocity=None,
        force=problem.force if isinstance(problem.force, tuple) else None,
    )
    geometry_specs = Geometry(
        *(
            None if g is None else P(*([None] * (g.ndim - len(problem.shape))), axis_name)
            for g in geometry
        )
    )
    x_spec = P(None, axis_name)

    def run(local, geometry, f):
        index = jax.lax.axis_index(axis_name)
        is_first, is_last = index == 0, index == n_blocks - 1

        def enabled(edge):
            if edge.axis != 0:
                return None
            return is_first if edge.side == "low" else is_last

        stream = functools.partial(stream_halo, axis_name=axis_name, n_blocks=n_blocks)

        def advance(planes, _):
            planes = jax.lax.fori_loop(
                0,
                save_every,
                lambda _, p: tuple(local.advance(p, geometry, stream, enabled)),
                planes,
                unroll=UNROLL,
            )
            return planes, jnp.stack(planes)

        planes = tuple(f[i] for i in range(f.shape[0]))
        _, saved = jax.lax.scan(advance, planes, None, length=n_steps // save_every)
        return jnp.concatenate([f[None], saved])

    return jax.shard_map(
        run,
        mesh=mesh,
        in_specs=(P(), geometry_specs, x_spec),
        out_specs=P(None, None, axis_name),
    )(local, geometry, f0)
