"""Experiment configs: YAML files validated into frozen pydantic models, with dotted overrides.

An unknown or mistyped key is a `ConfigError` naming the key and the valid ones. Components that
live in a domain (a model, a data generator) are given as ``{type: sciml.<path>, **fields}`` and are
built with `build`, which validates the fields against the component's own dataclass fields.

Example:
    >>> cfg = load("configs/quickstart.yaml", ["train.steps=200", "model.width=32"])
    >>> cfg.train.steps
    200
"""

import dataclasses
import difflib
import importlib
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from sciml.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Strict):
    """Where the dataset lives, how to make it if it is missing, and how to cut it into samples."""

    path: str
    generator: dict[str, Any] | None = None
    resolutions: list[int] | None = None  # extra grids stored from the same solve, in <path>/res<N>
    chunk: int = Field(64, ge=1)  # trajectories generated per chunk (a resumable unit)
    # Multi-resolution training: resolution -> share of the training samples (see sciml.data.multires)
    train_mix: dict[int, float] | None = None
    n_train: int = Field(512, ge=1)
    n_valid: int = Field(64, ge=1)
    n_test: int = Field(64, ge=1)
    fields: list[str] | None = None
    target_fields: list[str] | None = (
        None  # field-to-field maps (Darcy a -> u) instead of time steps
    )
    input_steps: int = Field(1, ge=1)
    output_steps: int = Field(1, ge=1)
    dt_stride: int = Field(1, ge=1)
    normalize: bool = True


Beta = Annotated[float, Field(ge=0, lt=1)]


class TrainConfig(_Strict):
    """Optimisation, logging and checkpointing of one training run."""

    steps: int = Field(1000, ge=1)
    batch_size: int = Field(32, ge=1)
    optimizer: Literal["adam", "adamw", "lion"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    # (b1, b2) of the optimizer; none: its own defaults (Adam/AdamW 0.9, 0.999; Lion 0.9, 0.99).
    betas: tuple[Beta, Beta] | None = None
    schedule: Literal["constant", "cosine", "warmup_cosine"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(1e-5, ge=0)
    grad_clip: float | None = Field(1.0, gt=0)
    ema_decay: float | None = Field(None, gt=0, lt=1)
    # crps / nll: for models with a Gaussian head (sciml.operators.ProbabilisticOperator).
    loss: Literal["relative_l2", "mse", "relative_h1", "crps", "nll"] = "relative_l2"
    # Gaussian heads only: project onto conservation (spatial mean of each output channel) inside
    # the loss. "dppl" is ProbHardE2E (see sciml.probabilistic).
    projection: Literal["none", "dppl", "probconserv"] = "none"
    # What is conserved: "mass" (linear: the spatial mean of each channel) or "mass_energy"
    # (nonlinear: also the spatial mean of its square; "probconserv" is not defined for it).
    constraint: Literal["mass", "mass_energy"] = "mass"
    # PINO-style: add physics_weight x the generator's mean squared PDE residual of the prediction.
    physics_weight: float = Field(0.0, ge=0)
    # Band-limited training: inputs and targets low-passed to |k_i| <= band_limit before the loss.
    band_limit: int | None = Field(None, ge=1)
    log_every: int = Field(50, ge=1)
    eval_every: int = Field(250, ge=1)
    checkpoint_every: int = Field(250, ge=1)
    keep_checkpoints: int = Field(2, ge=1)

    @model_validator(mode="after")
    def _projection_defined_for_constraint(self) -> "TrainConfig":
        if self.constraint == "mass_energy" and self.projection == "probconserv":
            raise ValueError(
                "train.projection=probconserv is defined for linear constraints only;"
                " use train.projection=dppl or none with train.constraint=mass_energy"
            )
        return self


class EvalConfig(_Strict):
    """Which split to evaluate and how many plots to draw."""

    split: Literal["train", "valid", "test"] = "test"
    batch_size: int = Field(64, ge=1)
    n_plots: int = Field(3, ge=0)
    # Gaussian heads: observation-noise variance (normalised units) of the ProbConserv update.
    probconserv_noise: float = Field(1e-3, gt=0)


class ExperimentConfig(_Strict):
    """One experiment: data, model, training and evaluation, reproducible from `seed`."""

    name: str
    seed: int = 0
    run_dir: str
    data: DataConfig
    model: dict[str, Any]
    train: TrainConfig = TrainConfig()
    evaluate: EvalConfig = EvalConfig()


def load(path: str | Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read a YAML experiment config, apply ``key.sub=value`` overrides, and validate it."""
    return validate(ExperimentConfig, apply_overrides(read_yaml(path), overrides), where=str(path))


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Parse a YAML mapping from `path`, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        shipped = (
            sorted(p.name for p in Path("configs").glob("*.yaml"))
            if Path("configs").is_dir()
            else []
        )
        hint = f" Configs in ./configs: {', '.join(shipped)}." if shipped else ""
        raise ConfigError(f"config file {str(path)!r} not found.{hint}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path} must contain a YAML mapping of config keys, got {type(data).__name__}"
        )
    return data


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of `data` with each ``a.b.c=value`` override set (value parsed as YAML)."""
    data = _deep_copy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(
                f"override {item!r} must look like key.sub=value, e.g. train.steps=200"
            )
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is a value, not a section")
            node = child
        try:
            node[parts[-1]] = yaml.safe_load(raw) if raw else None
        except yaml.YAMLError:
            node[parts[-1]] = raw
    return data


def validate(model: type[BaseModel], data: dict[str, Any], where: str = "config") -> Any:
    """Validate `data` into `model`, turning pydantic's errors into one readable `ConfigError`."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(
            f"{where}: " + "; ".join(_describe(model, e) for e in err.errors())
        ) from None


def dump(cfg: BaseModel) -> str:
    """The config as YAML text that `load` reads back to an equal config."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def build(spec: dict[str, Any], where: str) -> Any:
    """Instantiate the component ``spec = {type: 'sciml.x.Y', **fields}`` with validated fields.

    `Y` must be a dataclass (flax modules are); its fields define the valid keys and their types.
    Only import paths inside `sciml.` are accepted.
    """
    cls = resolve_type(spec.get("type"), where)
    kwargs = {k: v for k, v in spec.items() if k != "type"}
    schema = component_schema(cls)
    validated = validate(schema, kwargs, where=f"{where} ({spec['type']})")
    return cls(**{k: getattr(validated, k) for k in kwargs})


def component_spec(obj: Any) -> dict[str, Any]:
    """The spec ``{type, **fields}`` that `build` turns back into `obj` (a dataclass or flax
    module defined in sciml; fields left at None are omitted, tuples become lists)."""
    cls = type(obj)
    fields = {
        f.name: list(v) if isinstance(v, tuple) else v
        for f in dataclasses.fields(obj)
        if f.init and f.name not in ("parent", "name") and (v := getattr(obj, f.name)) is not None
    }
    return {"type": f"{cls.__module__}.{cls.__name__}", **fields}


def resolve_type(path: Any, where: str) -> type:
    """Import the class named by the dotted `path`, which must lie inside the `sciml` package."""
    if not isinstance(path, str) or not path.startswith("sciml.") or path.count(".") < 2:
        raise ConfigError(
            f"{where}.type must be an import path inside sciml, e.g. sciml.operators.FNO; got {path!r}"
        )
    module_name, _, attr = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError):
        raise ConfigError(
            f"{where}.type: {path!r} does not exist in this version of sciml"
        ) from None
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise ConfigError(f"{where}.type: {path!r} is not a configurable component")
    return cls


def component_schema(cls: type) -> type[BaseModel]:
    """A strict pydantic model of the init fields of dataclass `cls` (flax's parent/name left out)."""
    hints = typing.get_type_hints(cls)
    fields = {}
    for f in dataclasses.fields(cls):
        if not f.init or f.name in ("parent", "name"):
            continue
        has_default = (
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        )
        fields[f.name] = (hints.get(f.name, Any), None if has_default else ...)
    return create_model(
        f"{cls.__name__}Config",
        __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True),
        **fields,
    )


def _describe(model: type[BaseModel], error: dict[str, Any]) -> str:
    loc = [str(p) for p in error["loc"]]
    key = ".".join(loc) or "<root>"
    if error["type"] == "extra_forbidden":
        valid = _valid_keys(model, error["loc"][:-1])
        close = difflib.get_close_matches(loc[-1], valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown key {key!r}{hint}; valid keys here: {', '.join(valid)}"
    if error["type"] == "missing":
        return f"missing required key {key!r}"
    return f"{key}: {error['msg']} (got {error.get('input')!r})"


def _valid_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    for part in loc:
        field = model.model_fields.get(part)
        ann = getattr(field, "annotation", None)
        candidates = [ann, *typing.get_args(ann)]
        sub = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
        if sub is None:
            return []
        model = sub
    return list(model.model_fields)


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data
