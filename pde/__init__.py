"""PDE solvers and data generators (sciml.pde)."""

from sciml.pde.burgers import Burgers1D, BurgersDataset
from sciml.pde.etdrk import ETDRK4Coefficients, etdrk4_coefficients, etdrk4_step
from sciml.pde.initial_conditions import gaussian_random_field

__all__ = [
    "Burgers1D",
    "BurgersDataset",
    "ETDRK4Coefficients",
    "etdrk4_coefficients",
    "etdrk4_step",
    "gaussian_random_field",
]
