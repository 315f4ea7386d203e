"""PDE solvers and data generators (sciml.pde).

Periodic problems ``u_t = L u + N(u)`` are `SpectralProblem` subclasses stepped by ETDRK1-4:
`Advection`, `Diffusion`, `AdvectionDiffusion`, `Dispersion`, `Burgers`, `KdV`,
`KuramotoSivashinsky`, `AllenCahn`, `CahnHilliard`, `FisherKPP`, `GrayScott`, `SwiftHohenberg`,
`NavierStokes2D`.
"""

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
from sciml.pde.residuals import residual
from sciml.pde.spectral import SpectralGrid, SpectralProblem, equation

__all__ = [
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
