"""Read and write HDF5 datasets in The Well's schema.

A dataset is a directory: ``data/{train,valid,test}/<name>.hdf5`` plus ``stats.yaml``. Each file has
root attributes, ``dimensions/`` (time and coordinates), ``boundary_conditions/``, ``scalars/`` (PDE
parameters) and ``t0_fields/``, ``t1_fields/``, ``t2_fields/`` holding scalar, vector and tensor
fields shaped (trajectory, time, *space, [components]) in float32.
"""

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from sciml.errors import DatasetError

SPLITS = ("train", "valid", "test")
_FIELD_GROUPS = ("t0_fields", "t1_fields", "t2_fields")


@dataclasses.dataclass(frozen=True)
class Trajectories:
    """Solutions of one PDE family, as a generator returns them and a Well file stores them.

    Attributes:
        fields: name -> array (trajectory, time, *space, *components); the tensor order of a field
            is ``array.ndim - 2 - len(coords)`` (0 scalar, 1 vector, 2 tensor).
        time: (time,) simulation times.
        coords: spatial dimension name -> (n,) coordinates, in array-axis order.
        boundary: dimension name -> boundary-condition type ("PERIODIC", "WALL", "OPEN").
        scalars: PDE parameters (viscosity, ...): a float if shared, else a (trajectory,) array.
    """

    fields: dict[str, np.ndarray]
    time: np.ndarray
    coords: dict[str, np.ndarray]
    boundary: dict[str, str]
    scalars: dict[str, float | np.ndarray] = dataclasses.field(default_factory=dict)

    @property
    def n_spatial_dims(self) -> int:
        return len(self.coords)

    def tensor_order(self, name: str) -> int:
        return self.fields[name].ndim - 2 - self.n_spatial_dims


def split_path(root: str | Path, split: str, name: str) -> Path:
    """Path of the HDF5 file of `split` in the dataset directory `root`."""
    return Path(root) / "data" / split / f"{name}.hdf5"


def write_well(
    path: str | Path, name: str, traj: Trajectories, attrs: dict[str, Any] | None = None
) -> None:
    """Write `traj` to the Well-schema file `path` atomically (a temporary file, then a rename).

    `attrs` are extra root attributes (values JSON-encoded unless str/number).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    with h5py.File(tmp, "w") as f:
        init_well(f, name, traj, len(next(iter(traj.fields.values()))), attrs)
        write_well_chunk(f, 0, traj)
    os.replace(tmp, path)


def partial_path(path: Path) -> Path:
    """Where a file is written before it is complete (renamed to `path` when done)."""
    return path.with_name(path.name + ".partial")


def init_well(
    f: h5py.File, name: str, like: Trajectories, n_total: int, attrs: dict[str, Any] | None = None
) -> None:
    """Write the root attributes, dimensions, boundary conditions and empty field datasets.

    Field datasets get room for `n_total` trajectories shaped like those of `like`; scalars that
    vary per trajectory (arrays in ``like.scalars``) get a (n_total,) dataset.
    """
    f.attrs["dataset_name"] = name
    f.attrs["n_spatial_dims"] = like.n_spatial_dims
    f.attrs["n_trajectories"] = n_total
    f.attrs["grid_type"] = "cartesian"
    f.attrs["simulation_parameters"] = list(like.scalars)
    for key, value in like.scalars.items():
        if np.ndim(value) == 0:
            f.attrs[key] = value
    for key, value in (attrs or {}).items():
        f.attrs[key] = value if isinstance(value, str | int | float) else json.dumps(value)

    dims = f.create_group("dimensions")
    dims.attrs["spatial_dims"] = list(like.coords)
    _dataset(dims, "time", like.time, sample_varying=False, time_varying=False)
    for dim, coord in like.coords.items():
        _dataset(dims, dim, coord, sample_varying=False, time_varying=False)

    bcs = f.create_group("boundary_conditions")
    for dim, bc_type in like.boundary.items():
        group = bcs.create_group(f"{dim}_{bc_type.lower()}")
        group.attrs.update(
            associated_dims=[dim],
            associated_fields=[],
            bc_type=bc_type.upper(),
            sample_varying=False,
            time_varying=False,
        )
        mask = np.zeros(len(like.coords[dim]), dtype=bool)
        mask[[0, -1]] = True
        group.create_dataset("mask", data=mask)

    scalars = f.create_group("scalars")
    scalars.attrs["field_names"] = list(like.scalars)
    for key, value in like.scalars.items():
        if np.ndim(value) == 0:
            _dataset(scalars, key, np.asarray(value), sample_varying=False, time_varying=False)
        else:
            ds = scalars.create_dataset(key, shape=(n_total,), dtype=np.float64)
            ds.attrs.update(sample_varying=True, time_varying=False)

    groups = {g: f.create_group(g) for g in _FIELD_GROUPS}
    for group in groups.values():
        group.attrs["field_names"] = []
    for field, array in like.fields.items():
        group = groups[_FIELD_GROUPS[like.tensor_order(field)]]
        group.attrs["field_names"] = [*group.attrs["field_names"], field]
        ds = group.create_dataset(field, shape=(n_total, *array.shape[1:]), dtype=np.float32)
        ds.attrs.update(sample_varying=True, time_varying=True)
        ds.attrs["dim_varying"] = [True] * like.n_spatial_dims


def write_well_chunk(f: h5py.File, start: int, traj: Trajectories) -> None:
    """Store trajectories ``start .. start + len(traj)`` of a file made by `init_well`."""
    for field, array in traj.fields.items():
        group = _FIELD_GROUPS[traj.tensor_order(field)]
        f[group][field][start : start + len(array)] = array.astype(np.float32)
    for key, value in traj.scalars.items():
        if np.ndim(value):
            f["scalars"][key][start : start + len(value)] = value


def _dataset(group: h5py.Group, name: str, data: np.ndarray, **flags: bool) -> h5py.Dataset:
    ds = group.create_dataset(name, data=data)
    ds.attrs.update(flags)
    return ds


def read_well(
    path: str | Path, fields: list[str] | None = None
) -> tuple[Trajectories, dict[str, Any]]:
    """Read a Well-schema file into `Trajectories` (only `fields` if given) and its root attributes.

    Raises:
        DatasetError: the file is missing, corrupt, truncated, lacks a group or a requested field,
            or holds fields whose shapes disagree with its dimensions.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(
            f"dataset file {path} not found; generate it with `sciml generate <config>`"
        )
    try:
        with h5py.File(path, "r") as f:
            return _read_open_file(f, path, fields)
    except OSError as err:
        raise DatasetError(
            f"{path} is corrupt or truncated ({err}); delete it and generate the dataset again"
        ) from None


def _scalar(value: np.ndarray | np.generic) -> float | np.ndarray:
    return float(value) if np.ndim(value) == 0 else np.asarray(value)


def _read_open_file(
    f: h5py.File, path: Path, wanted: list[str] | None
) -> tuple[Trajectories, dict]:
    for group in ("dimensions", "boundary_conditions", "scalars", *_FIELD_GROUPS):
        if group not in f:
            raise DatasetError(f"{path} is not a Well-schema file: group {group!r} is missing")
    dims = f["dimensions"]
    spatial = [str(d) for d in dims.attrs.get("spatial_dims", [])]
    for dim in ("time", *spatial):
        if dim not in dims:
            raise DatasetError(f"{path}: dimensions/{dim} is missing")
    coords = {d: dims[d][()] for d in spatial}
    time = dims["time"][()]

    available = {
        str(name): group
        for group in _FIELD_GROUPS
        for name in f[group].attrs.get("field_names", [])
    }
    wanted = list(available) if wanted is None else wanted
    fields = {}
    for name in wanted:
        if name not in available:
            raise DatasetError(
                f"{path}: field {name!r} is missing; fields in this file: {sorted(available)}"
                " (set data.fields accordingly)"
            )
        array = f[available[name]][name][()]
        order = _FIELD_GROUPS.index(available[name])
        expected = (len(time), *(len(c) for c in coords.values()), *([len(spatial)] * order))
        if array.shape[1:] != expected:
            raise DatasetError(
                f"{path}: field {name!r} has shape {array.shape[1:]} per trajectory, but the file's"
                f" dimensions imply {expected}; the file is inconsistent, regenerate it"
            )
        fields[name] = array
    boundary = {
        str(g.attrs["associated_dims"][0]): str(g.attrs["bc_type"])
        for g in f["boundary_conditions"].values()
    }
    scalars = {
        str(k): _scalar(f["scalars"][k][()]) for k in f["scalars"].attrs.get("field_names", [])
    }
    attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in f.attrs.items()}
    return Trajectories(fields, time, coords, boundary, scalars), attrs
