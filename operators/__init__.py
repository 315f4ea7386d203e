"""Neural operators (sciml.operators): FNO-family, U-shaped and convolutional models, probabilistic heads.

Multi-resolution training and resolution evaluation are tracked in their own issue.
"""

from sciml.operators.cno import CNO
from sciml.operators.fno import FNO, positional_grid
from sciml.operators.heads import GaussianHead, ProbabilisticOperator
from sciml.operators.tfno import TFNO, FactorizedSpectralConv
from sciml.operators.unet import UNet
from sciml.operators.uno import UNO, FourierLayer
from sciml.probabilistic import GaussianField, to_gaussians  # what the heads predict

__all__ = [
    "CNO",
    "FNO",
    "TFNO",
    "UNO",
    "FactorizedSpectralConv",
    "FourierLayer",
    "GaussianField",
    "GaussianHead",
    "ProbabilisticOperator",
    "UNet",
    "positional_grid",
    "to_gaussians",
]
