import pytest
import yaml

from sciml import config
from sciml.errors import ConfigError
from tests.conftest import REPO


def test_quickstart_config_loads_with_overrides():
    cfg = config.load(
        REPO / "configs/quickstart.yaml", ["train.steps=200", "model.width=32", "train.lr=3e-4"]
    )
    assert (
        cfg.train.steps == 200 and cfg.model["width"] == 32 and cfg.train.lr == pytest.approx(3e-4)
    )


def test_dump_round_trips(tmp_path):
    cfg = config.load(REPO / "configs/quickstart.yaml")
    (tmp_path / "c.yaml").write_text(config.dump(cfg))
    assert config.load(tmp_path / "c.yaml") == cfg


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ["train.stepz=3"],
            "unknown key 'train.stepz' (did you mean 'steps'?); valid keys here: steps",
        ),
        (["bogus=1"], "unknown key 'bogus'"),
        (["train.steps=abc"], "train.steps: Input should be a valid integer"),
        (["train.steps=-5"], "train.steps: Input should be greater than or equal to 1"),
        (
            ["train.schedule=linear"],
            "train.schedule: Input should be 'constant', 'cosine' or 'warmup_cosine'",
        ),
        (["train.steps"], "must look like key.sub=value"),
        (["train.steps.x=1"], "'steps' is a value, not a section"),
    ],
)
def test_bad_overrides_name_the_key(overrides, expected):
    with pytest.raises(ConfigError, match=None) as err:
        config.load(REPO / "configs/quickstart.yaml", overrides)
    assert expected in str(err.value)


def test_missing_required_key(tmp_path):
    (tmp_path / "c.yaml").write_text(
        yaml.safe_dump({"name": "x", "data": {"path": "d"}, "model": {}})
    )
    with pytest.raises(ConfigError, match="missing required key 'run_dir'"):
        config.load(tmp_path / "c.yaml")


def test_missing_file_lists_shipped_configs(monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(ConfigError, match=r"not found\. Configs in \./configs: .*quickstart\.yaml"):
        config.load("configs/nope.yaml")


def test_invalid_yaml(tmp_path):
    (tmp_path / "c.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        config.load(tmp_path / "c.yaml")


def test_build_validates_component_fields():
    fno = config.build({"type": "sciml.operators.FNO", "out_channels": 2, "width": 16}, "model")
    assert (fno.out_channels, fno.width) == (2, 16)
    with pytest.raises(ConfigError, match="unknown key 'widht' \\(did you mean 'width'\\?\\)"):
        config.build({"type": "sciml.operators.FNO", "out_channels": 1, "widht": 16}, "model")
    with pytest.raises(ConfigError, match="width: Input should be a valid integer"):
        config.build({"type": "sciml.operators.FNO", "out_channels": 1, "width": "wide"}, "model")
    with pytest.raises(ConfigError, match="missing required key 'out_channels'"):
        config.build({"type": "sciml.operators.FNO"}, "model")


@pytest.mark.parametrize(
    "path", ["os.system", "builtins.eval", "sciml.operators.Nope", None, "sciml.config.load"]
)
def test_build_refuses_anything_but_sciml_components(path):
    with pytest.raises(ConfigError, match="model.type"):
        config.build({"type": path}, "model")
