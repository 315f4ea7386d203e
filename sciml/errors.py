"""Errors a user can cause. Each message says what went wrong and how to fix it.

The CLI prints any `SciMLError` as one line on stderr and exits non-zero; everything else is a bug.
"""


class SciMLError(Exception):
    """Base class of user-facing errors."""


class ConfigError(SciMLError):
    """A config file or override is missing, unknown, or of the wrong type."""


class DatasetError(SciMLError):
    """A dataset is missing, incomplete, corrupt, or does not match what was asked of it."""


class ShapeMismatchError(SciMLError):
    """Data and model disagree on shapes (channels, spatial dimensions)."""


class CheckpointError(SciMLError):
    """A checkpoint is missing, corrupt, truncated, or belongs to another model."""


class NonFiniteLossError(SciMLError):
    """Training produced a NaN or infinite loss."""
