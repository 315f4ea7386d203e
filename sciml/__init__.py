"""sciml: a JAX toolkit for scientific machine learning.

The few entry points most users need first are `sciml.config.load`, `sciml.train.fit` and
`sciml.pretrained.load`; domains are imported as `sciml.operators`, `sciml.pde`, `sciml.diffusion`.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sciml")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

_SUBMODULES = (
    "config",
    "data",
    "fields",
    "losses",
    "metrics",
    "nn",
    "plotting",
    "pretrained",
    "train",
)

__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name: str):
    # Lazy so that `import sciml` stays cheap (jax and orbax are only imported when used).
    if name in _SUBMODULES:
        return import_module(f"sciml.{name}")
    raise AttributeError(f"module 'sciml' has no attribute {name!r}")
