"""ECI and PCFM constrained sampling: exact constraints with any network, and the baselines.

Tolerances: float32 samples of order one; an exact projection leaves a residual of a few units of
float32 round-off (eps = 1.2e-7) times the field's size (quadrature weights sum the field),
bounded here by ``1e-5 (1 + max|x|)``: the "1e-5 relative" of the acceptance criterion. Keys
are "rbg" (threefry is slow to compile on XLA:CPU; every sampler draws its own noise).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml import constraints as C
from sciml.diffusion import (
    ChainedProjection,
    EuclideanProjection,
    VelocityFNO,
    WhiteNoise,
    eci_sample,
    ffm_euler,
    guidance_sample,
    pcfm_sample,
)
from sciml.metrics import constraint_error, mmse, smse
from sciml.pde.sampling_tasks import (
    DarcyTask,
    HeatTask,
    PorousMediumTask,
    StefanTask,
    StokesTask,
)

# (time, space); samples are (batch, 5, 5, 1). Square, so that every single constraint below has
# 5 rows: one compiled sampler serves them all (a test-time saving, nothing more).
GRID = (5, 5)
BATCH = (3, *GRID, 1)


def key(seed: int) -> jax.Array:
    return jax.random.key(seed, impl="rbg")


def _cases() -> dict:
    rng = np.random.default_rng(0)
    values = rng.normal(size=GRID)
    mask = np.zeros(GRID, bool)
    mask.flat[rng.choice(mask.size, 5, replace=False)] = True
    weights = C.trapezoid_weights(np.linspace(0, 1, GRID[1]))
    ic = C.initial_value_constraint(GRID, values[0])
    bc = C.boundary_value_constraint(GRID, left=values[1:, 0], right=values[1:, -1], first_time=1)
    return {
        "mask": C.value_constraint(mask, values),
        "ic": ic,
        "bc": C.slice_constraint(GRID, np.s_[:, 0], values[:, 0]),
        "periodic": C.periodic_constraint(GRID, axis=-1),
        "conservation": C.conservation_constraint(weights, rng.normal(size=GRID[0])),
        "ic+bc": (ic, bc),
    }


CASES = _cases()
# The tasks' own constraints, value-fixing like "mask" (Stefan's IC has 5 rows; its BC 10,
# Darcy's boundary 16): checked by ECI only.
TASK_CASES = {
    "stefan ic": StefanTask(*GRID).ic_constraint(),
    "stefan bc": StefanTask(*GRID).bc_constraint(),
    "darcy boundary": DarcyTask(n=GRID[0]).boundary_constraint(0.7),
}


def _projection(case):
    """The correction, and the stacked constraint it must satisfy."""
    if isinstance(case, tuple):
        return ChainedProjection(tuple(EuclideanProjection(c) for c in case)), C.stack_constraints(
            *case
        )
    return EuclideanProjection(case), case


def _residual(x, constraint) -> float:
    return float(jnp.max(jnp.abs(jax.vmap(constraint.residual)(x))))


def _bound(x) -> float:
    return 1e-5 * (1 + float(jnp.max(jnp.abs(x))))


@pytest.mark.parametrize("name", list(CASES))
def test_projection_is_exact_idempotent_and_minimal_norm(name):
    project, constraint = _projection(CASES[name])
    x = 3 * jax.random.normal(key(0), BATCH)
    p = jax.jit(lambda proj, u: proj(u))(project, x)  # the projection's arrays are arguments
    assert _residual(p, constraint) < _bound(x)
    np.testing.assert_allclose(project(p), p, atol=_bound(x))
    # The minimal-norm correction: x - pinv(A) (A x - b), in float64 numpy.
    a = np.asarray(constraint.matrix, np.float64)
    flat = np.asarray(x, np.float64).reshape(x.shape[0], -1)
    expected = flat - (np.linalg.pinv(a) @ (flat @ a.T - np.asarray(constraint.target)).T).T
    np.testing.assert_allclose(np.asarray(p).reshape(flat.shape), expected, atol=_bound(x))


MODEL = VelocityFNO(
    out_channels=1, modes=2, width=4, n_layers=1, projection_width=4, time_features=4
)
PARAMS = jax.jit(MODEL.init)(key(1), jnp.zeros(BATCH), jnp.zeros(BATCH[0]))


@pytest.mark.parametrize("name", list(CASES) + list(TASK_CASES))
def test_eci_is_exact_with_an_untrained_network(name):
    project, constraint = _projection({**CASES, **TASK_CASES}[name])
    x = eci_sample(
        MODEL.apply,
        PARAMS,
        None,
        project,
        key=key(2),
        shape=BATCH,
        prior=WhiteNoise(),
        n_steps=4,
        n_mix=2,
        resample_every=3,
    )
    assert x.shape == BATCH and bool(jnp.all(jnp.isfinite(x)))
    assert _residual(x, constraint) < _bound(x)


def test_eci_compiles_once_and_is_deterministic_given_the_key():
    traces = []

    def apply_fn(params, x, t, cond):
        traces.append(1)
        return MODEL.apply(params, x, t, cond)

    def run(k, constraint, params=PARAMS):
        return eci_sample(
            apply_fn,
            params,
            None,
            EuclideanProjection(constraint),
            key=k,
            shape=BATCH,
            prior=WhiteNoise(),
            n_steps=3,
            n_mix=2,
            resample_every=2,
        )

    ic = CASES["ic"]
    x = run(key(3), ic)
    n_traces = len(traces)
    np.testing.assert_array_equal(run(key(3), ic), x)
    # New keys, constraint values and parameters reuse the compiled program.
    shifted = C.LinearConstraint(matrix=ic.matrix, target=ic.target + 1.0)
    params = jax.tree.map(lambda p: 1.1 * p, PARAMS)
    y = run(key(4), shifted, params)
    assert len(traces) == n_traces
    assert not np.allclose(x, y) and _residual(y, shifted) < _bound(y)


def test_eci_follows_the_papers_loop():
    """A float64 numpy transcription of the notes' loop, in the paper's time tau = 1 - t."""
    n_steps, n_mix, every = 3, 2, 4
    a, b = 0.4, 0.3

    def apply_fn(params, x, t, cond):  # v = dx_t/dt in the package's convention
        return params * x + b * jnp.cos(x) * t.reshape(-1, 1, 1, 1)

    constraint = CASES["conservation"]
    amat, target = np.asarray(constraint.matrix, np.float64), np.asarray(constraint.target)
    pinv = jnp.asarray(np.linalg.pinv(amat), jnp.float32)

    def correction(u):  # a plain function is a correction too (static, hashed by identity)
        flat = u.reshape(u.shape[0], -1)
        residual = flat @ constraint.matrix.T - constraint.target[None, :]
        return (flat - residual @ pinv.T).reshape(u.shape)

    k = key(5)
    x = eci_sample(
        apply_fn,
        jnp.float32(a),
        None,
        correction,
        key=k,
        shape=BATCH,
        prior=WhiteNoise(),
        n_steps=n_steps,
        n_mix=n_mix,
        resample_every=every,
    )
    # The sampler's draws: the initial noise from the first half of the key, resampled noise at
    # (0-based) iteration j from fold_in(second half, j).
    k_init, k_resample = jax.random.split(k)

    def draw(kk):
        return np.asarray(WhiteNoise().sample(kk, BATCH), np.float64)

    def project(u):
        flat = u.reshape(u.shape[0], -1)
        fix = np.linalg.solve(amat @ amat.T, (flat @ amat.T - target).T)
        return (flat - (amat.T @ fix).T).reshape(u.shape)

    def v_paper(u, tau):
        return -(a * u + b * np.cos(u) * (1 - tau))

    noise = draw(k_init)
    ref, count, dt = noise, 0, 1 / n_steps
    for tau in np.linspace(0, 1, n_steps + 1)[:-1]:
        for u in range(n_mix):
            count += 1
            if count % every == 0:
                noise = draw(jax.random.fold_in(k_resample, count - 1))
            x1 = project(ref + (1 - tau) * v_paper(ref, tau))
            w = tau if u < n_mix - 1 else tau + dt
            ref = x1 * w + noise * (1 - w)
    np.testing.assert_allclose(x, ref, atol=1e-5)


def test_guidance_approaches_the_constraint_without_reaching_it():
    constraint = CASES["ic"]

    def run(eta):
        return guidance_sample(
            MODEL.apply,
            PARAMS,
            None,
            constraint,
            key=key(6),
            shape=BATCH,
            prior=WhiteNoise(),
            n_steps=8,
            eta=eta,
        )

    free = ffm_euler(
        MODEL.apply, PARAMS, None, key=key(6), shape=BATCH, prior=WhiteNoise(), n_steps=8
    )
    np.testing.assert_allclose(run(0.0), free, atol=1e-5)  # eta = 0: plain Euler
    guided = run(0.5)
    ce_free, ce_guided = constraint_error(free, constraint), constraint_error(guided, constraint)
    assert float(ce_guided) < 0.5 * float(ce_free)
    assert float(ce_guided) > 1e-6  # not exact: the gap ECI closes


def _energy(u, target):
    """Per-time mean energy ``mean_x u(t, x)^2 = E(t)``: one nonlinear equation per time."""
    return jnp.mean(u[..., 0] ** 2, axis=1) - target


@pytest.mark.parametrize("kind", ["nonlinear", "linear"])
def test_pcfm_is_exact_with_an_untrained_network(kind):
    if kind == "nonlinear":
        constraint = C.NonlinearConstraint(fn=_energy, params=jnp.linspace(0.5, 2.0, GRID[0]))
    else:
        constraint = CASES["conservation"]

    def run(k):
        return pcfm_sample(
            MODEL.apply, PARAMS, None, constraint, key=k, shape=BATCH, prior=WhiteNoise(), n_steps=4
        )

    x = run(key(7))
    assert _residual(x, constraint) < _bound(x)
    np.testing.assert_array_equal(run(key(7)), x)


# --- tasks and metrics --------------------------------------------------------------------------


def test_task_ground_truth_satisfies_its_constraints():
    stokes, heat, pme = StokesTask(6, 8), HeatTask(6, 8), PorousMediumTask(6, 8)
    for fields, constraint in [
        (stokes.sample(key(8), 4, k=5.0), stokes.ic_constraint(5.0)),
        (stokes.sample(key(8), 4, w=6.0), stokes.bc_constraint(6.0)),
        (heat.sample(key(9), 4, phi=1.0), heat.ic_constraint(1.0)),
        (heat.sample(key(9), 4), heat.conservation_constraint()),
        (pme.sample(key(10), 4, m=3.0), pme.bc_constraint(3.0)),
        (pme.sample(key(10), 4, m=3.0), pme.mass_constraint(3.0)),
        (pme.sample(key(10), 4), pme.ic_constraint()),
    ]:
        assert fields.shape[0] == 4 and fields.shape[-1] == 1
        assert float(constraint_error(fields, constraint)) < 1e-11  # float32 round-off, squared
    # Fixing k leaves w free: the IC-conditioned samples differ after t = 0.
    ic_set = stokes.sample(key(8), 4, k=5.0)
    assert np.ptp(ic_set[:, 0], axis=0).max() < 1e-6 and np.ptp(ic_set[:, -1], axis=0).max() > 0.1


def test_stefan_task_has_its_boundary_values_and_front():
    task = StefanTask(n_t=6, n_x=40)
    t, x = task.grid()
    for fields in (task.sample(key(12), 3), task.sample(key(12), 3, p_star=0.6)):
        assert fields.shape == (3, 6, 40, 1)
        for constraint in (task.ic_constraint(), task.bc_constraint()):
            assert float(constraint_error(fields, constraint)) == 0.0  # exact 1s and 0s
    # The conducting region u > 0 is exactly x <= s(t) = 2 lambda sqrt(t) (t > 0), where
    # u >= p*: the front is where u drops from p* to 0.
    u = task.sample(key(12), 3, p_star=0.6)[..., 0]
    behind = x[None, :] <= task.front(t[1:, None], 0.6)
    np.testing.assert_array_equal(u[:, 1:] > 0, np.broadcast_to(behind, u[:, 1:].shape))
    assert u[:, 1:][:, behind].min() >= 0.6 - 1e-6
    with pytest.raises(ValueError, match="reaches x = 1"):
        StefanTask(t_final=5.0)
    with pytest.raises(ValueError, match="p_star_range"):
        StefanTask(p_star_range=(0.5, 1.5))


def test_darcy_task_boundary_is_the_offset():
    task = DarcyTask(n=9)
    fields, offsets = task.sample_with_parameters(key(13), 3)
    assert fields.shape == (3, 9, 9, 1) and offsets.shape == (3, 1)
    assert np.all((offsets >= -2) & (offsets <= 2)) and np.ptp(offsets) > 0
    for u, c in zip(fields, offsets[:, 0]):
        assert float(constraint_error(u[None], task.boundary_constraint(float(c)))) < 1e-12
        assert u[1:-1, 1:-1].min() > c  # u0 > 0 inside: the maximum principle (forcing > 0)
    fixed = task.sample(key(13), 3, offset=1.0)  # 3 again: one compiled solver
    assert float(constraint_error(fixed, task.boundary_constraint(1.0))) < 1e-12


def test_sample_metrics():
    truth = jax.random.normal(key(11), (50, 4, 3, 1))
    np.testing.assert_allclose(mmse(truth, truth), 0.0, atol=1e-12)
    np.testing.assert_allclose(smse(truth, truth), 0.0, atol=1e-12)
    np.testing.assert_allclose(mmse(truth + 0.5, truth), 0.25, rtol=1e-5)
    np.testing.assert_allclose(
        smse(2 * truth, truth), jnp.mean(jnp.std(truth, axis=0) ** 2), rtol=1e-5
    )


def test_sample_cli_runs_a_constrained_sampling_config_on_an_ffm_checkpoint(tmp_path):
    # An untrained prior on a 16 x 16 Stokes grid: ECI is exact anyway, and the report, the
    # samples and the figure are written; a constraint the task does not have is refused.
    import json

    import yaml

    from sciml import cli
    from sciml.config import component_spec
    from sciml.diffusion import ffm_checkpoint_metadata
    from sciml.train import Checkpointer

    task = StokesTask(n_t=16, n_y=16)
    params = jax.jit(MODEL.init)(key(1), jnp.zeros((1, 16, 16, 1)), jnp.zeros(1))
    saver = Checkpointer(tmp_path / "prior", keep=1)
    meta = ffm_checkpoint_metadata(MODEL, WhiteNoise(), component_spec(task), task.shape)
    saver.save(1, {"params": params}, meta, {})
    saver.close()
    spec = {
        "task": "constrained_sampling",
        "name": "bc",
        "checkpoint": str(tmp_path / "prior"),
        "constraints": [{"method": "bc_constraint", "args": {"w": 6.0}}],
        "truth": {"w": 6.0},
        "sampler": {"method": "eci", "n_steps": 4, "resample_every": 2},
        "n_samples": 4,
        "n_truth": 8,
        "out": str(tmp_path / "out"),
    }
    path = tmp_path / "bc.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert cli.main(["sample", str(path)]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["metrics"]["eci"]["ce"] < 1e-10 < report["metrics"]["unconstrained"]["ce"]
    data = np.load(tmp_path / "out" / "samples.npz")
    assert data["samples"].shape == data["unconstrained"].shape == (4, 16, 16, 1)
    assert data["truth"].shape == (8, 16, 16, 1)
    assert (tmp_path / "out" / "samples.png").stat().st_size > 0
    bad = ["sample", str(path), "constraints=[{method: mass_constraint}]"]
    assert cli.main(bad) == 2
