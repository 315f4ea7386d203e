"""NeurDE: the equilibrium network, its use inside the compressible solver, training, evaluation."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from sciml.errors import DatasetError
from sciml.pde.lbm import (
    NeurDE,
    cached_teacher,
    count_params,
    cylinder_initial_state,
    equilibrium_loss,
    evaluate_rollout,
    generate_teacher,
    lattice_velocities,
    levermore_equilibrium,
    load_teacher,
    match_energy_moments,
    read_teacher,
    riemann_solution,
    rollout_loss,
    shock_position,
    sod_initial_state,
    sod_interface,
    sod_reference,
    teacher_spec,
    train_neurde,
)
from sciml.train import TrainState, make_train_step
from tests.conftest import REPO

NX, N_STEPS = 200, 60


@pytest.fixture(scope="module")
def teacher():
    """Sod case 2 on 200 cells for 60 steps (float64), Newton solved to round-off.

    The tight Newton tolerance (1e-13 instead of the release's 1e-6) makes the teacher's
    warm-started solve and a cold solve of the same moments agree to round-off.
    """
    with jax.enable_x64(True):
        problem, state = sod_initial_state(2, nx=NX, ny=1, dtype="float64")
        problem = dataclasses.replace(problem, newton_tol=1e-13)
        return generate_teacher(problem, state, N_STEPS, case=2)


@pytest.fixture(scope="module")
def stage1(teacher):
    """A width-32 network after 200 stage-1 updates on the first 40 teacher steps (float32)."""
    model = NeurDE(width=32, depth=4, shift=float(teacher.problem.shift))
    x = jnp.asarray(teacher.inputs(slice(0, 40)), jnp.float32)
    y = jnp.asarray(teacher.equilibrium(slice(0, 40)), jnp.float32)
    params = model.init(jax.random.key(0), x[:1])
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3, weight_decay=1e-4))

    def loss_fn(params, batch, key):
        return equilibrium_loss(jnp.moveaxis(model.apply(params, batch[0]), -1, 1), batch[1]), {}

    step = make_train_step(loss_fn, optimizer)
    state = TrainState.create(params, optimizer, jax.random.key(1))
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(200):
        idx = rng.choice(40, 8, replace=False)
        state, metrics = step(state, (x[idx], y[idx]))
        losses.append(float(metrics["loss"]))
    return model, state.params, losses


# ---------------------------------------------------------------------------- the network


@pytest.mark.parametrize("width, expected", [(64, 25_472), (32, 6_592)])
def test_parameter_count_matches_the_paper(width, expected):
    # Branch 4 -> w x4 and trunk 2 -> w x4: 25,472 for the Sod width 64, 6,592 for width 32.
    params = jax.eval_shape(NeurDE(width=width).init, jax.random.key(0), jnp.zeros((1, 4)))
    assert count_params(params) == expected


def test_equilibrium_is_positive_with_one_value_per_population():
    model = NeurDE(width=16, shift=0.4)
    macro = jax.random.uniform(jax.random.key(1), (5, 7, 1, 4))
    params = jax.jit(model.init)(jax.random.key(0), macro)
    g_eq = jax.jit(model.apply)(params, macro)
    assert g_eq.shape == (5, 7, 1, 9)
    assert bool((g_eq > 0).all()) and bool(jnp.isfinite(g_eq).all())


def test_moment_matching_restores_the_conserved_moments(teacher, x64):
    # Perturb the teacher's g^eq by 5% per population: Newton's quadratic convergence brings
    # sum g and sum c g back to 2 rho E and 2 rho u (E + T): residuals measured 1e-10 after 3
    # iterations, round-off (< 1e-14) after 4. The exact equilibrium is a fixed point.
    macro = jnp.asarray(teacher.inputs(slice(40, 41))[0])
    exact = jnp.moveaxis(jnp.asarray(teacher.equilibrium(slice(40, 41))[0]), 0, -1)
    c = lattice_velocities(teacher.problem.shift, jnp.float64)
    noise = 1 + 0.05 * jax.random.normal(jax.random.key(0), exact.shape, jnp.float64)
    match = jax.jit(match_energy_moments, static_argnums=(3, 4))
    matched = match(exact * noise, macro, c, teacher.problem.gamma, 4)
    basis = jnp.concatenate([jnp.ones((9, 1)), c], axis=1)
    np.testing.assert_allclose(matched @ basis, exact @ basis, rtol=1e-12, atol=1e-13)
    unchanged = match(exact, macro, c, teacher.problem.gamma, 2)
    np.testing.assert_allclose(unchanged, exact, rtol=1e-10)


# ---------------------------------------------------------------------------- training


def test_stage1_loss_decreases(stage1):
    # Relative L2 of g^eq: 6.0 at initialisation (exp of random logits), a plateau near 1 (all
    # g^eq ~ 0) for ~60 updates, then down: measured 0.10 after 200 updates.
    _, _, losses = stage1
    assert losses[-1] < 0.05 * losses[0]
    assert np.mean(losses[-10:]) < 0.2


def test_stage2_bptt_and_stop_gradient_give_finite_different_gradients(teacher, stage1):
    model, params, _ = stage1
    k, n = 10, 5
    f, g = (jnp.asarray(a[k], jnp.float32) for a in (teacher.f, teacher.g))
    targets = jnp.asarray(teacher.equilibrium(slice(k, k + n)), jnp.float32)
    results = {}
    for bptt in (False, True):

        def loss(p, bptt=bptt):
            return rollout_loss(model.apply, p, teacher.problem, f, g, targets, bptt=bptt)

        (value, per_step), grads = jax.value_and_grad(loss, has_aux=True)(params)
        assert per_step.shape == (n,) and np.isfinite(float(value))
        assert all(bool(jnp.isfinite(leaf).all()) for leaf in jax.tree.leaves(grads))
        results[bptt] = value, ravel_pytree(grads)[0]
    # The forward pass is the same (stop_gradient changes no value); the gradients are not:
    # BPTT adds the dependence of later states on earlier equilibria.
    np.testing.assert_allclose(results[True][0], results[False][0], rtol=1e-6)
    a, b = results[True][1], results[False][1]
    assert float(jnp.linalg.norm(a - b)) > 1e-3 * float(jnp.linalg.norm(b))


# ---------------------------------------------------------------------------- evaluation


def test_teacher_equilibrium_inside_the_solver_reproduces_the_teacher(teacher):
    # The Levermore equilibrium (cold Newton to round-off) in place of the network: the rollout
    # from step 30 must equal the teacher's steps 30..60 to float64 round-off (measured < 1e-14);
    # this checks the solver hook, the teacher's stored g^eq and the evaluation plumbing.
    with jax.enable_x64(True):
        metrics, fields = evaluate_rollout(
            levermore_equilibrium(teacher.problem), None, teacher, 30, 30
        )
    assert fields.rho.shape == (31, NX, 1) and metrics["finite_steps"] == 30
    for name in ("rho", "ux", "T"):
        assert metrics[f"{name}_rel_l2_max"] < 1e-12, name
    assert abs(metrics["energy_drift"] - metrics["teacher_energy_drift"]) < 1e-12
    assert metrics["shock_error_cells"] < 1e-9
    # The teacher's stored g^eq is the closure of its own moments.
    with jax.enable_x64(True):
        macro = jnp.asarray(teacher.inputs(slice(12, 13))[0])
        g_eq = np.moveaxis(np.asarray(levermore_equilibrium(teacher.problem)(None, macro)), -1, 0)
        np.testing.assert_allclose(g_eq, teacher.equilibrium(slice(12, 13))[0], rtol=1e-12)


@pytest.mark.parametrize("case, t", [(1, 1000), (2, 1000), (2, 333)])
def test_shock_position_of_the_exact_riemann_profile(case, t):
    # The exact profile sampled at cell centres jumps between the two cells around the shock:
    # the located position is their mid-point, within half a cell of x0 + s t.
    nx = 3001
    left, right, gamma, star = sod_reference(case)
    x0 = sod_interface(nx)
    rho = riemann_solution(left, right, gamma, np.arange(nx), t, x0).rho
    found = shock_position(rho, x0 + star.u * t + 5)
    assert abs(found - (x0 + star.right_head * t)) <= 0.5


def test_teacher_cache_writes_well_file_and_rejects_other_settings(tmp_path, monkeypatch):
    import sciml.pde.lbm.teacher as teacher_module

    calls = []
    spec = teacher_spec(2, 32, 1, 6, False)

    def small_teacher(spec, **kwargs):
        calls.append(spec["case"])
        with jax.enable_x64(True):
            problem, state = sod_initial_state(
                spec["case"], spec["nx"], spec["ny"], dtype="float64"
            )
            return generate_teacher(
                problem, state, spec["n_steps"], case=spec["case"], storage_dtype=np.float32
            )

    monkeypatch.setattr(teacher_module, "run_teacher", small_teacher)
    first, generated = load_teacher(tmp_path, spec)
    second, again = load_teacher(tmp_path, spec)
    assert (generated, again, len(calls)) == (True, False, 1)
    for name in ("f", "g", "multipliers", "rho", "u", "T"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    assert second.f.shape == (7, 9, 32, 1) and second.case == 2
    np.testing.assert_allclose(second.equilibrium(slice(0, 7)), first.equilibrium(slice(0, 7)))
    with pytest.raises(DatasetError, match="delete it"):
        load_teacher(tmp_path, {**spec, "n_steps": 8})


def test_chunked_teacher_equals_one_rollout(teacher):
    # generate_teacher runs in equal chunks (here 62 states: one chunk) and keeps the state at k
    # and the multipliers solved from it; the plain rollout's states agree to round-off.
    problem = teacher.problem
    with jax.enable_x64(True):
        _, state = sod_initial_state(2, nx=NX, ny=1, dtype="float64")
        states = problem.rollout(state, 10, 1)
    np.testing.assert_allclose(teacher.f[:11], states.f, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(teacher.multipliers[:10], states.multipliers[1:], rtol=1e-12)


def test_cylinder_config_generates_its_teacher(tmp_path):
    # `sciml generate configs/neurde_cylinder.yaml` on a 40 x 24 box (r 4) for 6 steps: the Well
    # file reads back with the same solid mask and inlet and no Sod reference (case None).
    from sciml.cli import main

    sizes = ["teacher.nx=40", "teacher.ny=24", "teacher.radius=4", "teacher.n_steps=6"]
    config = REPO / "configs" / "neurde_cylinder.yaml"
    assert main(["generate", str(config), f"teacher.path={tmp_path}", *sizes]) == 0
    spec = teacher_spec("cylinder", 40, 24, 6, False, radius=4.0)
    path = cached_teacher(tmp_path, spec)
    assert path.name == "neurde_cylinder_teacher.hdf5"
    teacher, cached = read_teacher(path)
    assert cached == spec and teacher.case is None and teacher.f.shape == (7, 9, 40, 24)
    problem, _ = cylinder_initial_state(40, 24, 4.0)
    np.testing.assert_array_equal(teacher.problem.solid, problem.solid)
    assert problem.solid.sum() > 0 and teacher.problem.inlet == problem.inlet
    assert np.isfinite(teacher.g).all() and teacher.rho.max() > 1.0  # compression at the disc


@pytest.mark.slow  # ~15 s: two generate calls and a tiny training run through the CLI
def test_generate_cli_writes_the_teacher_that_train_reuses(tmp_path, capsys):
    from sciml.cli import main

    sizes = [
        f"teacher.path={tmp_path / 'data'}",
        "teacher.nx=64",
        "teacher.n_steps=16",
        f"run_dir={tmp_path / 'run'}",
    ]
    training = [
        "model.width=8",
        "stage1.n_snapshots=8",
        "stage1.steps=2",
        "stage1.batch_size=4",
        "stage1.restart_period=2",
        "stage1.log_every=1",
        "stage1.checkpoint_every=2",
        "stage2.steps=0",
        "evaluate.start=8",
        "evaluate.n_steps=8",
        "evaluate.plot_steps=[8,16]",
    ]
    config = REPO / "configs" / "neurde_sod2.yaml"
    assert main(["generate", str(config), *sizes]) == 0
    path = tmp_path / "data" / "data" / "train" / "neurde_sod2_teacher.hdf5"
    assert f"teacher written to {path}" in capsys.readouterr().out
    written = path.stat().st_mtime_ns
    assert main(["generate", str(config), *sizes]) == 0
    assert "teacher already at" in capsys.readouterr().out
    assert main(["train", str(config), *sizes, *training]) == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["teacher"]["generated"] is False and report["teacher"]["nx"] == 64
    assert path.stat().st_mtime_ns == written


@pytest.mark.slow
def test_train_neurde_end_to_end(tmp_path):
    from sciml import pretrained

    config = {
        "name": "tiny",
        "run_dir": str(tmp_path / "run"),
        "teacher": {"path": str(tmp_path / "data"), "nx": 64, "n_steps": 24},
        "model": {"width": 16, "moment_iterations": 2},
        "stage1": {"n_snapshots": 12, "steps": 120, "batch_size": 4, "lr": 1e-3,
                   "restart_period": 40, "log_every": 40, "checkpoint_every": 120},
        "stage2": {"steps": 4, "rollout": 3, "gradient": "bptt", "lr": 1e-4, "log_every": 2},
        "evaluate": {"start": 12, "n_steps": 12, "plot_steps": [12, 18, 24]},
    }  # fmt: skip
    report = train_neurde(config)
    run = tmp_path / "run"
    assert json.loads((run / "report.json").read_text()) == report
    assert report["n_params"] == count_params(NeurDE(16).init(jax.random.key(0), jnp.zeros((4,))))
    assert report["teacher"]["generated"] and report["stage2"]["final_loss"] is not None
    for name in ("profiles.png", "stage1_loss.png", "stage2_loss.png"):
        assert (run / name).stat().st_size > 0
    for key in ("rho_rel_l2_mean", "ux_rel_l2_final", "T_rel_l2_mean", "energy_drift"):
        assert key in report["evaluation"]
    model, params, meta = pretrained.load(run)
    assert meta["model"]["type"] == "sciml.pde.lbm.NeurDE" and model.shift == 0.4
    assert model.apply(params, jnp.ones((1, 64, 1, 4))).shape == (1, 64, 1, 9)
    # A rerun resumes both stages from their checkpoints and reuses the cached teacher.
    again = train_neurde(config)
    assert not again["teacher"]["generated"]
    assert again["evaluation"]["rho_rel_l2_mean"] == report["evaluation"]["rho_rel_l2_mean"]
