"""Exact Riemann solver for the 1-D Euler equations of an ideal gas (Toro, chapter 4).

The reference for shock-tube checks of the compressible lattice-Boltzmann model: given left and
right states ``(rho, u, p)`` and the ratio of specific heats ``gamma``, the star pressure solves

    f_L(p) + f_R(p) + u_R - u_L = 0,
    f_K(p) = (p - p_K) sqrt(A_K / (p + B_K))                            if p > p_K (shock),
    f_K(p) = 2 a_K / (gamma - 1) ((p / p_K)^((gamma - 1) / (2 gamma)) - 1)  otherwise (rarefaction),

with ``A_K = 2 / ((gamma + 1) rho_K)``, ``B_K = (gamma - 1) p_K / (gamma + 1)``, ``a_K`` the sound
speed; Newton's method from the two-rarefaction guess (Toro's eq. 4.46) converges in a few
iterations. ``u* = (u_L + u_R + f_R(p*) - f_L(p*)) / 2``; the self-similar solution is sampled at
``xi = (x - x0) / t`` (Toro, section 4.5).

Plain NumPy in float64: the reference is computed once per test, outside any traced code. The
temperature is ``T = p / rho`` (gas constant R = 1, as in the lattice model).

Example:
    >>> star = riemann_star(EulerState(1.0, 0.0, 1.0), EulerState(0.125, 0.0, 0.1), gamma=1.4)
    >>> round(star.p, 5), round(star.u, 5)
    (0.30313, 0.92745)
"""

from typing import NamedTuple

import numpy as np
from jaxtyping import Real


class EulerState(NamedTuple):
    """A uniform 1-D Euler state: density, velocity, pressure."""

    rho: float
    u: float
    p: float


class RiemannStar(NamedTuple):
    """The star region and the wave speeds of a Riemann problem.

    Attributes:
        p: star pressure.
        u: star velocity (the contact speed).
        rho_left: density between the left wave and the contact.
        rho_right: density between the contact and the right wave.
        left_head, left_tail: left wave edges (equal, the shock speed, for a shock); head < tail.
        right_tail, right_head: right wave edges (equal for a shock); tail < head.
    """

    p: float
    u: float
    rho_left: float
    rho_right: float
    left_head: float
    left_tail: float
    right_tail: float
    right_head: float


class RiemannSolution(NamedTuple):
    """Primitive fields sampled from the exact solution, each shaped like the sample points."""

    rho: np.ndarray
    u: np.ndarray
    p: np.ndarray
    T: np.ndarray


def _wave_function(p: float, state: EulerState, gamma: float) -> tuple[float, float]:
    """Toro's ``f_K(p)`` and its derivative for one side."""
    a = np.sqrt(gamma * state.p / state.rho)
    if p > state.p:  # shock
        big_a = 2.0 / ((gamma + 1.0) * state.rho)
        big_b = (gamma - 1.0) / (gamma + 1.0) * state.p
        root = np.sqrt(big_a / (p + big_b))
        return (p - state.p) * root, root * (1.0 - 0.5 * (p - state.p) / (p + big_b))
    ratio = p / state.p
    exponent = (gamma - 1.0) / (2.0 * gamma)
    value = 2.0 * a / (gamma - 1.0) * (ratio**exponent - 1.0)
    return value, ratio ** (-(gamma + 1.0) / (2.0 * gamma)) / (state.rho * a)


def riemann_star(
    left: EulerState,
    right: EulerState,
    gamma: float,
    *,
    tol: float = 1e-14,
    max_iter: int = 100,
) -> RiemannStar:
    """Star pressure, velocity, densities and wave speeds of the Riemann problem (Toro, ch. 4).

    Args:
        left: state for x < x0.
        right: state for x > x0.
        gamma: ratio of specific heats (> 1).
        tol: relative change of the star pressure that stops Newton's iteration.
        max_iter: Newton iterations before giving up.

    Returns:
        The `RiemannStar`.

    Raises:
        ValueError: for non-physical states, or when the data generate a vacuum.
    """
    left, right = EulerState(*map(float, left)), EulerState(*map(float, right))
    if min(left.rho, left.p, right.rho, right.p) <= 0 or gamma <= 1:
        raise ValueError(f"need rho, p > 0 and gamma > 1; got {left}, {right}, gamma={gamma}")
    a_l, a_r = np.sqrt(gamma * left.p / left.rho), np.sqrt(gamma * right.p / right.rho)
    du = right.u - left.u
    if 2.0 * (a_l + a_r) / (gamma - 1.0) <= du:
        raise ValueError("the initial data generate a vacuum: no star region")
    # Two-rarefaction guess (exact when both waves are rarefactions).
    z = (gamma - 1.0) / (2.0 * gamma)
    p = ((a_l + a_r - 0.5 * (gamma - 1.0) * du) / (a_l / left.p**z + a_r / right.p**z)) ** (1 / z)
    for _ in range(max_iter):
        f_l, df_l = _wave_function(p, left, gamma)
        f_r, df_r = _wave_function(p, right, gamma)
        p_new = max(p - (f_l + f_r + du) / (df_l + df_r), 1e-300)
        change = abs(p_new - p) / (0.5 * (p_new + p))
        p = p_new
        if change < tol:
            break
    else:
        raise RuntimeError(f"star pressure did not converge in {max_iter} iterations")
    f_l, _ = _wave_function(p, left, gamma)
    f_r, _ = _wave_function(p, right, gamma)
    u = 0.5 * (left.u + right.u) + 0.5 * (f_r - f_l)
    g1, g2 = (gamma - 1.0) / (gamma + 1.0), (gamma + 1.0) / (2.0 * gamma)
    sides = []
    for state, a, sign in ((left, a_l, -1.0), (right, a_r, 1.0)):
        ratio = p / state.p
        if ratio > 1.0:  # shock: Rankine-Hugoniot density and speed
            rho = state.rho * (ratio + g1) / (ratio * g1 + 1.0)
            speed = state.u + sign * a * np.sqrt(g2 * ratio + z)
            sides.append((rho, speed, speed))
        else:  # rarefaction: isentropic density, head and tail characteristics
            rho = state.rho * ratio ** (1.0 / gamma)
            a_star = a * ratio**z
            sides.append((rho, state.u + sign * a, u + sign * a_star))
    (rho_l, head_l, tail_l), (rho_r, head_r, tail_r) = sides
    values = (p, u, rho_l, rho_r, head_l, tail_l, tail_r, head_r)
    return RiemannStar(*(float(v) for v in values))


def sample_riemann(
    left: EulerState,
    right: EulerState,
    gamma: float,
    xi: Real[np.ndarray, "*points"],
) -> RiemannSolution:
    """The exact solution at similarity coordinates ``xi = (x - x0) / t``.

    Args:
        left, right: the initial states either side of ``x0``.
        gamma: ratio of specific heats.
        xi: sample points ``(x - x0) / t``, any shape.

    Returns:
        `RiemannSolution` with rho, u, p and ``T = p / rho``, each shaped like ``xi``.
    """
    left, right = EulerState(*map(float, left)), EulerState(*map(float, right))
    xi = np.asarray(xi, dtype=np.float64)
    star = riemann_star(left, right, gamma)
    rho, u, p = (np.empty_like(xi) for _ in range(3))
    g1 = (gamma - 1.0) / (gamma + 1.0)
    sides = (
        (left, xi < star.u, star.rho_left, star.left_head, star.left_tail, 1.0),
        (right, xi >= star.u, star.rho_right, star.right_head, star.right_tail, -1.0),
    )
    for state, side, rho_star, head, tail, sign in sides:
        a = np.sqrt(gamma * state.p / state.rho)
        # sign * (xi - edge) < 0: outside the wave (undisturbed), > 0: inside the star region.
        outside = side & (sign * (xi - head) < 0)
        inside = side & (sign * (xi - tail) >= 0)
        fan = side & ~outside & ~inside
        rho[outside], u[outside], p[outside] = state.rho, state.u, state.p
        rho[inside], u[inside], p[inside] = rho_star, star.u, star.p
        # Inside a rarefaction fan (Toro eq. 4.56 / 4.63), with sign = +1 left, -1 right.
        x = xi[fan]
        c = 2.0 / (gamma + 1.0) + sign * g1 / a * (state.u - x)
        rho[fan] = state.rho * c ** (2.0 / (gamma - 1.0))
        u[fan] = 2.0 / (gamma + 1.0) * (sign * a + 0.5 * (gamma - 1.0) * state.u + x)
        p[fan] = state.p * c ** (2.0 * gamma / (gamma - 1.0))
    return RiemannSolution(rho, u, p, p / rho)


def riemann_solution(
    left: EulerState,
    right: EulerState,
    gamma: float,
    x: Real[np.ndarray, "*points"],
    t: float | int,
    x0: float = 0.0,
) -> RiemannSolution:
    """The exact solution at positions ``x`` and time ``t > 0`` for an interface at ``x0``."""
    if t <= 0:
        raise ValueError(f"t must be positive, got {t}")
    return sample_riemann(left, right, gamma, (np.asarray(x, dtype=np.float64) - x0) / t)
