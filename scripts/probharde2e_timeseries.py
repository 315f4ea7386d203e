"""ProbHardE2E on a probabilistic forecasting task with hierarchical coherency.

A synthetic hierarchy of 7 series: 4 leaves (AR(1) around a level, a seasonal cycle of period 12
with its own phase, Gaussian innovations), 2 mid-level aggregates (leaves 3 + 4 and 5 + 6) and
the total (1 + 2). An MLP sees the last `context` steps of all series and emits a Gaussian over
the next `horizon` steps (mean, diagonal variance and a rank-r factor: the head of
`sciml.operators.ProbabilisticOperator` on a vector). The constraint is coherency,
``u[t, parent] = sum of u[t, children]`` for every step (`sciml.constraints.coherency_constraint`),
a linear equality with target 0, so the DPPL is exact Gaussian conditioning.

Rows of the table, all on the same test windows:
- unconstrained: trained and scored without the projection;
- post_hoc: the same model, projected only at evaluation (hard, variance-weighted);
- probconserv: the same model with ProbConserv's soft update (observation noise `--noise`);
- dppl: trained through the projection with the closed-form CRPS (ProbHardE2E).

Metrics (in the data's units): mse of the mean, crps (closed-form, per coordinate),
energy_score (from `--samples` draws, per window), coverage90, coherency_error (largest
``|A mean|``) and sample_coherency_error (largest ``|A draw|``), train_seconds. Evaluation
refines the hard projection once (see `project_forecast`).

Run: ``python scripts/probharde2e_timeseries.py`` (about two minutes on two busy CPU cores).
"""

import argparse
import json
import time
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float

from sciml.constraints import (
    DiagonalCovariance,
    Gaussian,
    LinearConstraint,
    LowRankCovariance,
    coherency_constraint,
    project_gaussian,
)
from sciml.scoring import crps_gaussian, energy_score

# Series 0 is the total, 1 and 2 the mid-level aggregates, 3..6 the leaves.
CHILDREN = {0: (1, 2), 1: (3, 4), 2: (5, 6)}
N_SERIES = 7
LEAVES = (3, 4, 5, 6)
_Z90 = 1.6448536269514722


def make_hierarchy(rng: np.random.Generator, n_steps: int, *, period: int = 12) -> np.ndarray:
    """A coherent hierarchy of `n_steps` values, shape (n_steps, 7): leaves, then their sums.

    Leaf i: ``y_t = level_i + a_i (y_{t-1} - level_i) + amp_i sin(2 pi t / period + phase_i)
    + sigma_i eps_t`` with a_i in [0.5, 0.9] and heteroscedastic noise scales.
    """
    n_leaves = len(LEAVES)
    a = rng.uniform(0.5, 0.9, n_leaves)
    amp = rng.uniform(0.5, 2.0, n_leaves)
    phase = rng.uniform(0.0, 2 * np.pi, n_leaves)
    sigma = rng.uniform(0.2, 0.6, n_leaves)
    eps = rng.standard_normal((n_steps, n_leaves))
    level = 2.0 + np.arange(n_leaves)
    t = np.arange(n_steps)[:, None]
    season = amp * np.sin(2 * np.pi * t / period + phase)
    leaves = np.zeros((n_steps, n_leaves))
    previous = level.copy()
    for step in range(n_steps):
        previous = level + a * (previous - level) + sigma * eps[step]
        leaves[step] = previous
    leaves += season
    series = np.zeros((n_steps, N_SERIES))
    series[:, list(LEAVES)] = leaves
    for parent in sorted(CHILDREN, reverse=True):  # mids before the total
        series[:, parent] = series[:, list(CHILDREN[parent])].sum(axis=1)
    return series.astype(np.float32)


def make_windows(series: np.ndarray, context: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (w, context, 7) and targets (w, horizon, 7) of every window of `series`."""
    n = len(series) - context - horizon + 1
    starts = np.arange(n)[:, None]
    x = series[starts + np.arange(context)]
    y = series[starts + context + np.arange(horizon)]
    return x, y


class GaussianForecast(NamedTuple):
    """Per-window Gaussian over the flattened horizon x series forecast (time-major)."""

    mean: Float[Array, "b n"]
    variance: Float[Array, "b n"]
    factor: Float[Array, "b n r"] | None


class Forecaster(nn.Module):
    """MLP: the context window -> a Gaussian over the next `horizon` steps of all series."""

    horizon: int
    n_series: int = N_SERIES
    hidden: int = 128
    rank: int = 4

    @nn.compact
    def __call__(self, x: Float[Array, "b l s"]) -> GaussianForecast:
        n = self.horizon * self.n_series
        h = x.reshape(x.shape[0], -1)
        for _ in range(2):
            h = nn.gelu(nn.Dense(self.hidden)(h))
        mean = nn.Dense(n, name="mean")(h)
        variance = jax.nn.softplus(nn.Dense(n, name="variance")(h)) + 1e-6
        if self.rank == 0:
            return GaussianForecast(mean, variance, None)
        factor = nn.Dense(n * self.rank, name="factor")(h).reshape(-1, n, self.rank)
        return GaussianForecast(mean, variance, factor / np.sqrt(self.rank))


def project_forecast(
    forecast: GaussianForecast,
    constraint: LinearConstraint,
    projection: str,
    *,
    noise_variance: float = 1e-3,
    refine: bool = False,
) -> Gaussian:
    """The batch of forecasts as `Gaussian`s, conditioned on coherency unless projection is none.

    With `refine`, the hard projection's mean is projected once more under the prior covariance
    (iterative refinement; the covariance is unchanged). A DPPL-trained head leaves its mean free
    along the constrained directions and shrinks its variance there, so ``A Sigma A^T`` is
    ill-conditioned and one float32 solve leaves a residual of ~1e-4 of ``|A mu|``; the second
    brings it to round-off. Windows are projected one at a time (see `per_window`); use
    `per_window` too for what needs the projected covariance (variances, draws).
    """
    return per_window(
        lambda f: _project_window(f, constraint, projection, noise_variance, refine), forecast
    )


def _project_window(
    forecast: GaussianForecast,
    constraint: LinearConstraint,
    projection: str,
    noise_variance: float,
    refine: bool,
) -> Gaussian:
    """`project_forecast` for one window (leaves without the batch axis)."""
    if forecast.factor is None:
        cov = DiagonalCovariance(variance=forecast.variance)
    else:
        cov = LowRankCovariance(factor=forecast.factor, diagonal_part=forecast.variance)
    prior = Gaussian(mean=forecast.mean, cov=cov)
    if projection == "none":
        return prior
    noise = noise_variance if projection == "probconserv" else 0.0
    post = project_gaussian(prior, constraint, noise_variance=noise)
    if refine and projection == "dppl":
        again = project_gaussian(Gaussian(mean=post.mean, cov=prior.cov), constraint)
        post = Gaussian(mean=again.mean, cov=post.cov)
    return post


def per_window(fn, *args):
    """``jax.vmap(fn)(*args)`` computed one window at a time (`jax.lax.map`).

    The coherency projection factorises a dense 24 x 24 ``A Sigma A^T`` per window (LAPACK).
    jaxlib 0.10.2's CPU LAPACK kernels split a large batch across XLA's intra-op thread pool and
    block until the pieces are done; when the executor runs two such kernels at once, each on a
    pool thread, and the pool has no third thread (2 cores), both wait forever. That is how the
    full-size evaluation (593 windows, a batched LU solve beside batched Cholesky solves) hung.
    One window at a time every kernel has a batch of one and runs inline.
    """
    return jax.lax.map(lambda xs: fn(*xs), args)


def crps_loss(
    params, model: Forecaster, constraint: LinearConstraint, projection: str, x, y
) -> Float[Array, ""]:
    """Closed-form CRPS of the (projected) marginals, mean over windows and coordinates."""

    def marginals(forecast: GaussianForecast) -> tuple[Array, Array]:
        post = _project_window(forecast, constraint, projection, 1e-3, False)
        return post.mean, post.variance()

    mean, variance = per_window(marginals, model.apply(params, x))
    return crps_gaussian(mean, variance, y.reshape(y.shape[0], -1))


def train_forecaster(
    key: Array,
    model: Forecaster,
    constraint: LinearConstraint,
    x: np.ndarray,
    y: np.ndarray,
    *,
    projection: str,
    steps: int,
    batch_size: int = 64,
    lr: float = 3e-3,
):
    """Adam with a cosine schedule on the CRPS through `projection`; returns (params, seconds)."""
    init_key, batch_key = jax.random.split(key)
    params = jax.jit(model.init)(init_key, jnp.asarray(x[:1]))
    optimizer = optax.adam(optax.cosine_decay_schedule(lr, steps))
    opt_state = optimizer.init(params)

    @jax.jit
    def step(params, opt_state, xb, yb):
        loss, grads = jax.value_and_grad(crps_loss)(params, model, constraint, projection, xb, yb)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    # Batches are gathered in NumPy: per-step device gathers would each compile on first use.
    rng = np.random.default_rng(np.asarray(jax.random.key_data(batch_key)).ravel())
    indices = rng.integers(0, len(x), (steps, batch_size))
    start = time.perf_counter()
    for i in range(steps):
        params, opt_state, loss = step(params, opt_state, x[indices[i]], y[indices[i]])
    jax.block_until_ready(loss)
    return params, time.perf_counter() - start


def forecast_metrics(
    key: Array,
    model: Forecaster,
    params,
    constraint: LinearConstraint,
    x: np.ndarray,
    y: np.ndarray,
    projection: str,
    *,
    scale: float,
    n_samples: int = 100,
    noise_variance: float = 1e-3,
) -> dict[str, float]:
    """Test metrics in the data's units (`scale` undoes the normalisation; coherency is linear)."""
    metrics = _metrics(
        key,
        model,
        params,
        constraint,
        jnp.asarray(x),
        jnp.asarray(y),
        projection,
        scale,
        n_samples,
        noise_variance,
    )
    return {name: float(value) for name, value in metrics.items()}


@jax.jit(static_argnums=(1, 6, 8, 9))
def _metrics(key, model, params, constraint, x, y, projection, scale, n_samples, noise_variance):
    forecast = model.apply(params, x)

    def window(forecast: GaussianForecast, key: Array) -> tuple[Array, Array, Array]:
        post = _project_window(forecast, constraint, projection, noise_variance, True)
        if projection == "dppl":
            # ProbHardE2E's inference: draw from the head, project every draw exactly (and refine).
            prior = _project_window(forecast, constraint, "none", noise_variance, False)
            draws = _project_draws(prior.sample(key, n_samples), prior.cov, constraint)
        else:
            draws = post.sample(key, n_samples)
        return post.mean, post.variance(), draws

    keys = jax.random.split(key, y.shape[0])
    mean, variance, draws = per_window(window, forecast, keys)
    mean = mean * scale
    std = jnp.sqrt(jnp.maximum(variance, 0.0)) * scale
    truth = y.reshape(y.shape[0], -1) * scale
    draws = draws * scale  # (b, s, n)
    matrix = constraint.matrix
    return {
        "mse": jnp.mean((mean - truth) ** 2),
        "crps": crps_gaussian(mean, std**2, truth),
        "energy_score": energy_score(jnp.swapaxes(draws, 0, 1), truth),
        "coverage90": jnp.mean(jnp.abs(truth - mean) <= _Z90 * std),
        "coherency_error": jnp.max(jnp.abs(mean @ matrix.T)),
        "sample_coherency_error": jnp.max(jnp.abs(draws @ matrix.T)),
    }


def _project_draws(
    z: Float[Array, "s n"], cov, constraint: LinearConstraint
) -> Float[Array, "s n"]:
    """The oblique projections ``z - K (A z - b)``, ``K = Sigma A^T (A Sigma A^T)^-1``, refined once.

    K is formed once per forecast (n and q are small here) and shared by its draws.
    """
    a, b = constraint.matrix, constraint.target
    cross = cov.matmul(a.T)  # Sigma A^T, (n, q)
    gain = jnp.linalg.solve(a @ cross, cross.T).T  # K, (n, q); A Sigma A^T is symmetric
    for _ in range(2):
        z = z - (z @ a.T - b[None]) @ gain.T
    return z


def run(
    *,
    seed: int = 0,
    n_steps: int = 3000,
    context: int = 24,
    horizon: int = 8,
    train_steps: int = 3000,
    noise: float = 1e-3,
    n_samples: int = 100,
    hidden: int = 128,
    rank: int = 4,
) -> dict[str, dict[str, float]]:
    """Generate, train the unconstrained and the DPPL forecaster, and score the four rows."""
    key_none, key_dppl, eval_key = jax.random.split(jax.random.key(seed), 3)
    series = make_hierarchy(np.random.default_rng(seed), n_steps)
    split = int(0.8 * n_steps)
    train_series, test_series = series[:split], series[split - context :]
    # One scale for all series: normalisation stays linear and leaves coherency intact.
    scale = float(np.abs(train_series).max())
    x_train, y_train = make_windows(train_series / scale, context, horizon)
    x_test, y_test = make_windows(test_series / scale, context, horizon)
    constraint = coherency_constraint(CHILDREN, n_series=N_SERIES, horizon=horizon)
    model = Forecaster(horizon=horizon, hidden=hidden, rank=rank)
    trained = {}
    for projection, key in (("none", key_none), ("dppl", key_dppl)):
        trained[projection] = train_forecaster(
            key, model, constraint, x_train, y_train, projection=projection, steps=train_steps
        )
    rows = {}
    for name, (weights, evaluate_with) in {
        "unconstrained": ("none", "none"),
        "post_hoc": ("none", "dppl"),
        "probconserv": ("none", "probconserv"),
        "dppl": ("dppl", "dppl"),
    }.items():
        params, seconds = trained[weights]
        rows[name] = forecast_metrics(
            eval_key,
            model,
            params,
            constraint,
            x_test,
            y_test,
            evaluate_with,
            scale=scale,
            n_samples=n_samples,
            noise_variance=noise,
        )
        rows[name]["train_seconds"] = seconds
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-steps", type=int, default=3000, help="length of the series")
    parser.add_argument("--context", type=int, default=24)
    parser.add_argument("--horizon", type=int, default=8)
    parser.add_argument("--train-steps", type=int, default=3000)
    parser.add_argument("--noise", type=float, default=1e-3, help="ProbConserv's variance")
    parser.add_argument("--samples", type=int, default=100)
    args = parser.parse_args()
    rows = run(
        seed=args.seed,
        n_steps=args.n_steps,
        context=args.context,
        horizon=args.horizon,
        train_steps=args.train_steps,
        noise=args.noise,
        n_samples=args.samples,
    )
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
