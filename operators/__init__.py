"""Neural operators (sciml.operators): FNO-family models.

Multi-resolution training and resolution evaluation are tracked in their own issue.
"""

from sciml.operators.fno import FNO, positional_grid

__all__ = ["FNO", "positional_grid"]
