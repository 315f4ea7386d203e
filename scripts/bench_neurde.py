"""Benchmark: one NeurDE solver step against one step of the Newton teacher it replaces.

Prints one JSON line {"case": "neurde_step_sod", "ours", "peer", "unit": "ms/step", "speedup", ...}
with speedup = peer / ours (above 1: the NeurDE step is faster).

Both sides run the same compressible shifted-D2Q9 solver (`CompressibleProblem`) on the grid of
the config (default ``configs/neurde_sod2.yaml``: Sod case 2, 3001 x 1), in float32 (the config's
dtype), from the same developed state: the float64 teacher after `--start` steps (default 500,
where the evaluation rollout starts; shock, contact and fan all present). They differ only in the
energy equilibrium ``g^eq``:

- ours: the NeurDE network ``exp(a(rho, u, T) . b(c_i))`` (`neural_step`), with the shipped
  ``neurde_sod2`` parameters when the config is its case (else a random init of the config's
  width) and the checkpoint's `moment_iterations` (2); ``ours_bare`` is the paper's bare head (0).
- peer, "sciml Newton teacher": Levermore's closure by per-cell Newton (`CompressibleProblem.step`,
  closed-form 3x3 solve, at most 20 iterations, tol 1e-6), warm-started from the previous step's
  multipliers as in production. ``peer_cold``: multipliers reset to zero before every step.
  ``peer_float64``: warm-started in float64, as the teacher data are generated.

Each time is a jitted `lax.fori_loop` of `--steps` steps divided by the steps (the steady state of a
rollout, no Python dispatch): the median of `--repeats` runs after a compile and warm-up run
(``*_best``: the fastest run; the machine may be shared). ``*_single_call_ms`` is one jitted
single-step call, dispatch included. ``newton_iterations_*`` are the per-cell iteration counts of
the measured state's solve (mean, max).

Usage: python scripts/bench_neurde.py [--config configs/neurde_sod2.yaml] [--repeats 7]
"""

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp

from sciml import config, pretrained
from sciml.errors import CheckpointError
from sciml.pde.lbm import (
    CompressibleState,
    NeurDE,
    NeurDEConfig,
    count_params,
    neural_step,
    teacher_initial_state,
)


def _times(run, repeats: int) -> tuple[float, float]:
    """(median, fastest) seconds of `repeats` runs after a compile + warm-up run."""
    jax.block_until_ready(run())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(run())
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def _cast(state: CompressibleState, dtype) -> CompressibleState:
    return CompressibleState(*(jnp.asarray(a, dtype) for a in state))


def _network(cfg: NeurDEConfig, shift: float):
    """The shipped neurde_sod2 model when it was trained on this case, else a random init."""
    try:
        model, params, meta = pretrained.load("neurde_sod2")
        if meta["data"]["teacher"]["case"] == cfg.teacher.case and model.shift == shift:
            return model, params, meta["equilibrium"]["moment_iterations"], "shipped neurde_sod2"
    except CheckpointError:
        pass
    model = NeurDE(cfg.model.width, cfg.model.depth, shift)
    params = model.init(jax.random.key(cfg.seed), jnp.zeros((1, 4)))
    return model, params, cfg.model.moment_iterations, "random init"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/neurde_sod2.yaml")
    parser.add_argument("--start", type=int, default=500, help="teacher steps before timing")
    parser.add_argument("--steps", type=int, default=50, help="steps per timed run")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    raw = {k: v for k, v in config.read_yaml(args.config).items() if k != "task"}
    cfg: NeurDEConfig = config.validate(NeurDEConfig, raw, where=args.config)
    spec = cfg.teacher.spec()
    with jax.enable_x64(True):
        problem, state64 = teacher_initial_state(spec, dtype="float64")
        state64 = jax.tree.map(lambda a: a[-1], problem.rollout(state64, args.start))
        state64 = jax.block_until_ready(state64)
    state = _cast(state64, jnp.float32)
    model, params, moments, origin = _network(cfg, float(problem.shift))
    steps = args.steps

    def neural_loop(iterations: int):
        def run(p, fg):
            def body(_, fg):
                return neural_step(model.apply, p, problem, *fg, moment_iterations=iterations)[:2]

            return jax.lax.fori_loop(0, steps, body, fg)

        loop = jax.jit(run)
        return lambda: loop(params, (state.f, state.g))

    def teacher_loop(s: CompressibleState, cold: bool):
        def body(_, x):
            return problem.step(
                x._replace(multipliers=jnp.zeros_like(x.multipliers)) if cold else x
            )

        loop = jax.jit(lambda x: jax.lax.fori_loop(0, steps, body, x))
        return lambda: loop(s)

    ms = {}
    ms["ours"] = _times(neural_loop(moments), args.repeats)
    ms["ours_bare"] = _times(neural_loop(0), args.repeats)
    ms["peer"] = _times(teacher_loop(state, cold=False), args.repeats)
    ms["peer_cold"] = _times(teacher_loop(state, cold=True), args.repeats)
    with jax.enable_x64(True):
        ms["peer_float64"] = _times(teacher_loop(state64, cold=False), args.repeats)
    per_step = {k: tuple(1e3 * t / steps for t in v) for k, v in ms.items()}

    one_neural = jax.jit(
        lambda p, f, g: neural_step(model.apply, p, problem, f, g, moment_iterations=moments)[:2]
    )
    one_teacher = jax.jit(problem.step)
    single_ours = _times(lambda: one_neural(params, state.f, state.g), args.repeats)[0]
    single_peer = _times(lambda: one_teacher(state), args.repeats)[0]
    warm = problem.advance(state)[1].iterations
    cold = problem.advance(state._replace(multipliers=jnp.zeros_like(state.multipliers)))[1]

    ours, peer = per_step["ours"][0], per_step["peer"][0]
    line = {
        "case": "neurde_step_sod",
        "ours": round(ours, 4),
        "peer": round(peer, 4),
        "unit": "ms/step",
        "speedup": round(peer / ours, 3),
        "peer_name": "sciml Newton teacher (Levermore g^eq, warm-started Newton, float32)",
        "ours_name": f"NeurDE step ({origin}, {count_params(params)} params, "
        f"moment_iterations={moments})",
        "grid": "x".join(map(str, problem.shape)),
        "teacher_case": cfg.teacher.case,
        "state_step": args.start,
        "dtype": "float32",
        "ours_best": round(per_step["ours"][1], 4),
        "peer_best": round(per_step["peer"][1], 4),
        "ours_bare": round(per_step["ours_bare"][0], 4),
        "speedup_bare": round(peer / per_step["ours_bare"][0], 3),
        "peer_cold": round(per_step["peer_cold"][0], 4),
        "speedup_vs_cold": round(per_step["peer_cold"][0] / ours, 3),
        "peer_float64": round(per_step["peer_float64"][0], 4),
        "speedup_vs_float64": round(per_step["peer_float64"][0] / ours, 3),
        "ours_single_call_ms": round(1e3 * single_ours, 4),
        "peer_single_call_ms": round(1e3 * single_peer, 4),
        "newton_iterations_warm": [float(warm.mean()), int(warm.max())],
        "newton_iterations_cold": [float(cold.iterations.mean()), int(cold.iterations.max())],
        "steps_per_run": steps,
        "repeats": args.repeats,
        "devices": str(jax.devices()[0].platform),
        "jax": jax.__version__,
    }
    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
