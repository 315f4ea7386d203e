"""PDE solvers and data generators (sciml.pde).

Periodic problems ``u_t = L u + N(u)`` are `SpectralProblem` subclasses stepped by ETDRK1-4:
`Advection`, `Diffusion`, `AdvectionDiffusion`, `Dispersion`, `Burgers`, `KdV`,
`KuramotoSivashinsky`, `AllenCahn`, `CahnHilliard`, `FisherKPP`, `GrayScott`, `SwiftHohenberg`,
`NavierStokes2D`. Non-periodic problems: Darcy flow by finite differences (`solve_darcy`), the
generalised porous-medium family by conservative finite volumes (`GeneralizedPorousMedium`), and
the analytic families of constrained-generation papers (`sciml.pde.analytic`). Lattice-Boltzmann
solvers live in `sciml.pde.lbm`.
"""

from sciml.pde import lbm
from sciml.pde.analytic import (
    HeatModeDataset,
    PorousMediumWaveDataset,
    StefanDataset,
    StokesDataset,
    heat_mode,
    porous_medium_mass,
    porous_medium_wave,
    stefan_front_coefficient,
    stefan_mass,
    stefan_solution,
    stokes_second_problem,
    stokes_viscosity,
)
from sciml.pde.darcy import (
    DarcyDataset,
    cosine_random_field,
    darcy_coefficient,
    darcy_operator,
    solve_darcy,
)
from sciml.pde.datasets import SpectralDataset
from sciml.pde.etdrk import ETDRKCoefficients, etdrk_coefficients, etdrk_step
from sciml.pde.initial_conditions import (
    gaussian_random_field,
    initial_condition,
    truncated_fourier_series,
)
from sciml.pde.linear import Advection, AdvectionDiffusion, Diffusion, Dispersion
from sciml.pde.navier_stokes import NavierStokes2D
from sciml.pde.nonlinear import (
    AllenCahn,
    Burgers,
    CahnHilliard,
    FisherKPP,
    GrayScott,
    KdV,
    KuramotoSivashinsky,
    SwiftHohenberg,
)
from sciml.pde.porous_medium import GeneralizedPorousMedium, PorousMediumDataset, diffusivity
from sciml.pde.residuals import darcy_residual, porous_medium_residual, residual
from sciml.pde.spectral import SpectralGrid, SpectralProblem, equation

__all__ = [
    "DarcyDataset",
    "GeneralizedPorousMedium",
    "HeatModeDataset",
    "PorousMediumDataset",
    "PorousMediumWaveDataset",
    "StefanDataset",
    "StokesDataset",
    "cosine_random_field",
    "darcy_coefficient",
    "darcy_operator",
    "darcy_residual",
    "diffusivity",
    "heat_mode",
    "lbm",
    "porous_medium_mass",
    "porous_medium_residual",
    "porous_medium_wave",
    "solve_darcy",
    "stefan_front_coefficient",
    "stefan_mass",
    "stefan_solution",
    "stokes_second_problem",
    "stokes_viscosity",
    "Advection",
    "AdvectionDiffusion",
    "AllenCahn",
    "Burgers",
    "CahnHilliard",
    "Diffusion",
    "Dispersion",
    "ETDRKCoefficients",
    "FisherKPP",
    "GrayScott",
    "KdV",
    "KuramotoSivashinsky",
    "NavierStokes2D",
    "SpectralGrid",
    "SpectralDataset",
    "SpectralProblem",
    "SwiftHohenberg",
    "etdrk_coefficients",
    "etdrk_step",
    "equation",
    "gaussian_random_field",
    "initial_condition",
    "residual",
    "truncated_fourier_series",
]
