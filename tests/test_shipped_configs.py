"""Every shipped config loads, and its generator and model build."""

import pytest

from sciml import config
from tests.conftest import REPO

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_builds(path):
    cfg = config.load(path)
    generator = config.build(cfg.data.generator, "data.generator") if cfg.data.generator else None
    if hasattr(generator, "problem"):  # SpectralDataset: the equation and the step counts are valid
        generator._steps(generator.problem())
    model = config.build(cfg.model, "model")
    assert model is not None and cfg.name == path.stem
