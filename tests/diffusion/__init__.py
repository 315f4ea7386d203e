"""Tests of sciml.diffusion, and the analytic denoiser they share.

For data ``x0 ~ N(m, s^2)`` elementwise and ``x_t = alpha x0 + sigma eps``, the posterior means
are ``E[x0 | x_t] = m + alpha s^2 (x_t - alpha m) / V`` and ``E[eps | x_t] = sigma (x_t - alpha m) / V``,
``V = alpha^2 s^2 + sigma^2``; every parameterisation's optimal prediction is the same linear
combination of them as its target is of (x0, eps).
"""

import jax.numpy as jnp

from sciml.diffusion import edm_preconditioning, from_x0_eps


def _expand(c, x):
    return c.reshape(c.shape + (1,) * (x.ndim - c.ndim))


def gaussian_model(schedule, kind, sigma_data=0.5, traces=None):
    """``apply_fn(params, x_in, t_in, cond)`` of the exact predictor for ``N(params["m"], params["s"]^2)``.

    `traces`, a list, gets one entry each time the function is traced (compile counting).
    """

    def apply_fn(params, x_in, t_in, cond):
        if traces is not None:
            traces.append(1)
        m, s = params["m"], params["s"]
        if kind == "edm":  # the network sees (c_in x, ln(sigma) / 4) in VE variables
            sig = jnp.exp(4 * t_in)
            c = edm_preconditioning(sig, sigma_data)
            x = x_in / _expand(c.c_in, x_in)
            x0 = m + _expand(s**2 / (s**2 + sig**2), x) * (x - m)
            return (x0 - _expand(c.c_skip, x) * x) / _expand(c.c_out, x)
        a, sg = schedule.alpha(t_in), schedule.sigma(t_in)
        var = a**2 * s**2 + sg**2
        centred = x_in - _expand(a, x_in) * m
        x0 = m + _expand(a * s**2 / var, x_in) * centred
        eps = _expand(sg / var, x_in) * centred
        return from_x0_eps(
            x0, eps, a, sg, kind, d_alpha=schedule.d_alpha(t_in), d_sigma=schedule.d_sigma(t_in)
        )

    return apply_fn
