"""Read the field's two common external formats into `Trajectories`: PDEBench HDF5 and FNO .mat.

PDEBench (layouts from pdebench/PDEBench: ``pdebench/data_gen/data_gen_NLE/Data_Merge.py``,
``pdebench/data_gen/gen_*.py``, ``pdebench/data_gen/src/data_io.py``,
``pdebench/models/fno/utils.py``); arrays are float32, sample axis first:

- single tensor (1D advection, Burgers, reaction-diffusion): ``tensor`` (sample, t, x) with
  ``x-coordinate`` and ``t-coordinate``; the generators save ``t-coordinate`` with n_t + 1 entries
  (``arange(n_t + 1) * dt_save``), of which the first n_t are the snapshot times.
- Darcy flow: ``tensor`` (sample, 1, x, y) steady solution, ``nu`` (sample, x, y) diffusion
  coefficient, ``x-coordinate``, ``y-coordinate``, no time.
- compressible Navier-Stokes (CFD): ``density``, ``pressure``, ``Vx`` [``Vy``, ``Vz``] each
  (sample, t, *space), ``{x,y,z}-coordinate``, ``t-coordinate``; attributes ``eta``, ``zeta``, ``M``.
- one group per seed (``0000``, ``0001``, ...; 2D diffusion-reaction, shallow water ``rdb``,
  1D diffusion-sorption): ``<seed>/data`` (t, *space, channel), ``<seed>/grid/{x,y,t}``, and the
  generator's Hydra config as YAML in the group attribute ``config``. Arrays are kept in the
  file's axis order, as PDEBench's own loaders read them (``sim_diff_react.py`` in fact fills the
  first spatial axis along y; its grid is square with equal x and y coordinates).
- incompressible Navier-Stokes (``ns_incom_*.h5``): ``velocity`` (sample, t, x, y, 2),
  ``particles`` (sample, t, x, y, 1), ``force`` (sample, x, y, 2), ``t`` (sample, t); root
  attribute ``config`` (YAML). No coordinates are stored: the generator's grid spans [0, n] in
  cells, so cell centres ``i + 0.5`` are recorded.

Boundary conditions are PERIODIC for the periodic families (advection, Burgers, 1D reaction-
diffusion, CFD files named ``periodic``, ``OTVortex``, ``Turb``; ``KH`` files are periodic in x
only), OPEN for CFD files named ``trans`` and WALL for ``reflect``, WALL for incompressible NS
(its config's zero velocity extrapolation is a no-slip wall), and OPEN wherever the file does not
say: Darcy (Dirichlet u = 0 in the generator), 2D diffusion-reaction (no-flux Neumann), shallow
water (extrapolation outflow), diffusion-sorption (Dirichlet left, Cauchy right).

FNO (Li et al. 2021; keys from zongyi-li/fourier_neural_operator ``fourier_{1,2,3}d.py``,
``data_generation/``): ``burgers_data_R10.mat`` ``a``, ``u`` (N, 8192), periodic on [0, 1), u at
t = 1; ``piececonst_r421_N1024_smooth*.mat`` ``coeff``, ``sol`` (N, 421, 421) on [0, 1]^2 with both
ends; ``ns_V1e-3_N5000_T50.mat`` ``a`` (N, 64, 64) vorticity at t = 0, ``u`` (N, 64, 64, T),
``t`` (T,), periodic on [0, 1)^2. MATLAB v7.3 files are HDF5 holding each array with its axes
reversed (column-major); v5 files are read through scipy when it is installed.
"""

import functools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np
import yaml

from sciml.data.well import Trajectories
from sciml.errors import DatasetError

BOUNDARY_TYPES = ("PERIODIC", "WALL", "OPEN")
_SPACE = ("x", "y", "z")
# PDE parameters in PDEBench file names and attributes -> our scalar names.
_PARAMETERS = {"nu": "nu", "beta": "beta", "rho": "rho", "eta": "eta", "zeta": "zeta"}
_PARAMETERS |= {"m": "mach", "re": "reynolds"}
_NAMED_BOUNDARY = {"periodic": "PERIODIC", "trans": "OPEN", "reflect": "WALL"}
_GROUP_CHANNELS = {"diff-react": ("u", "v"), "rdb": ("h",), "diff-sorp": ("u",)}
_CONFIG_SKIP = {"seed", "n", "t", "tdim", "xdim", "ydim", "zdim", "n_time_steps", "T_end"}
_MAT_NUMERIC = {"double", "single", "logical"} | {
    f"{s}int{b}" for s in ("", "u") for b in (8, 16, 32, 64)
}

Loader = Callable[[], np.ndarray]


def read_pdebench(
    path: str | Path, fields: Sequence[str] | None = None, max_samples: int | None = None
) -> Trajectories:
    """Read a PDEBench HDF5 file (any layout above) into `Trajectories`.

    Fields: ``u`` for single-tensor files (plus ``nu`` for Darcy, both with one time step at
    t = 0); ``density``, ``pressure`` and the vector ``velocity`` (components Vx, Vy, Vz) for CFD;
    one scalar field per channel for grouped files (``u``, ``v`` diffusion-reaction; ``h`` shallow
    water; ``u`` diffusion-sorption; ``c0``, ``c1``, ... otherwise); ``velocity``, ``particles``
    and ``force`` (repeated over time, a read-only view) for incompressible NS.

    Scalars come from root attributes and file-name tokens (``Nu0.01``, ``beta0.4``, ``Rho1.0``,
    ``Eta1.e-8``, ``Zeta0.1``, ``M0.1``, ``Re1e3``; attributes win, names are truncated) and the
    numeric simulation settings of grouped files' configs. For Burgers, PDEBench's "Nu" is the
    eps of u_t + (u^2/2)_x = (eps/pi) u_xx: recorded as ``epsilon`` and ``viscosity`` = eps/pi.

    Args:
        path: the ``.hdf5`` / ``.h5`` file.
        fields: names to read (default all); the others are never loaded.
        max_samples: read only the first this many samples (seeds in sorted order).

    Returns:
        Trajectories with fields (sample, time, *space[, component]) and coordinates x[, y, z].

    Raises:
        DatasetError: missing or unreadable file, unknown layout, missing dataset, unknown field.
    """
    path = Path(path)
    n = _sample_limit(max_samples)
    if not path.is_file():
        raise DatasetError(f"{path} not found; download it with pdebench/data_download")
    try:
        with h5py.File(path, "r") as f:
            keys = set(f.keys())
            if "tensor" in keys:
                layout = _tensor_layout(f, path, n)
            elif {"density", "pressure", "Vx"} <= keys:
                layout = _cfd_layout(f, path, n)
            elif {"velocity", "particles", "t"} <= keys:
                layout = _ns_incomp_layout(f, path, n)
            elif any(isinstance(f[k], h5py.Group) and "data" in f[k] for k in keys):
                layout = _grouped_layout(f, path, n)
            else:
                raise DatasetError(
                    f"{path} has no PDEBench layout (root keys {sorted(keys)}): expected a"
                    " 'tensor' dataset, CFD datasets 'density'/'pressure'/'Vx', incompressible-NS"
                    " 'velocity'/'particles'/'t', or one group per seed holding 'data'"
                )
            loaders, time, coords, boundary, scalars = layout
            return Trajectories(_select(loaders, fields, path), time, coords, boundary, scalars)
    except OSError as err:
        raise DatasetError(
            f"{path} is not a readable HDF5 file ({err}); download it again"
        ) from None


def read_fno_mat(
    path: str | Path,
    input_key: str | None,
    output_key: str,
    *,
    time_key: str | None = None,
    steady: bool = False,
    field: str | None = None,
    t_final: float = 1.0,
    length: float = 1.0,
    boundary: str = "PERIODIC",
    scalars: Mapping[str, float] | None = None,
    max_samples: int | None = None,
) -> Trajectories:
    """Read an FNO-style ``.mat`` file (input and output arrays, sample axis first) into `Trajectories`.

    Time-dependent (default): `input_key` holds the state at t = 0, (N, *space), and `output_key`
    the state at one later time, (N, *space), or at T times, time last (N, *space, T); they become
    one field (`field`, default `output_key`) shaped (N, 1 + T, *space). Times come from
    `time_key` (prefixed by 0 for the input), else are uniform, ending at `t_final`. With
    `input_key` None the output alone, (N, *space, T), is read. Steady (`steady=True`, e.g.
    Darcy): input and output are separate fields named by their keys, shaped (N, 1, *space) at
    t = 0 (`field` is unused). Coordinates are ``i * length / n`` when periodic (FNO's Burgers and
    NS grids on [0, 1)), else ``linspace(0, length, n)`` (its Darcy grid, both ends included).
    Scalars are `scalars` plus ``viscosity`` from a file-name token ``V<number>`` (``ns_V1e-3_...``).

    Example::

        ns = read_fno_mat("ns_V1e-3_N5000_T50.mat", "a", "u", time_key="t", field="vorticity")
        darcy = read_fno_mat(
            "piececonst_r421_N1024_smooth1.mat", "coeff", "sol", steady=True, boundary="OPEN"
        )

    Raises:
        DatasetError: missing or non-MAT file, v5 file without scipy, missing key, non-numeric
            variable, or arrays whose shapes disagree.
    """
    path = Path(path)
    n = _sample_limit(max_samples)
    if boundary not in BOUNDARY_TYPES:
        raise DatasetError(f"boundary {boundary!r} is not one of {BOUNDARY_TYPES}")
    if steady and input_key is None:
        raise DatasetError("a steady problem needs input_key (the coefficient field)")
    keys = [k for k in (input_key, output_key) if k is not None]
    arrays = _load_mat(path, keys, [time_key] if time_key else [], n)
    out = arrays[output_key]
    if input_key is None:
        if out.ndim < 3:
            raise DatasetError(
                f"{path}: {output_key!r} has shape {out.shape}; without input_key it must be"
                " (sample, *space, time)"
            )
        space, series = out.shape[1:-1], np.moveaxis(out, -1, 1)
    else:
        a = arrays[input_key]
        space = a.shape[1:]
        if out.shape[1 : 1 + len(space)] != space or out.ndim not in (a.ndim, a.ndim + 1):
            raise DatasetError(
                f"{path}: {input_key!r} {a.shape} and {output_key!r} {out.shape} do not share a"
                " grid; pass the right keys (the output may add one trailing time axis)"
            )
        if steady and out.ndim != a.ndim:
            raise DatasetError(f"{path}: steady output {output_key!r} has a time axis")
        out = out[:, None] if out.ndim == a.ndim else np.moveaxis(out, -1, 1)
        series = np.concatenate([a[:, None], out], axis=1)
    coords = _mat_coords(space, length, boundary)
    bcs = dict.fromkeys(coords, boundary)
    if steady:
        fields = {input_key: series[:, :1], output_key: series[:, 1:]}
        return Trajectories(fields, np.zeros(1), coords, bcs, _mat_scalars(path, scalars))
    n_out = series.shape[1] - (input_key is not None)
    if time_key is not None:
        t = arrays[time_key].ravel()
        if t.size != n_out:
            raise DatasetError(f"{path}: {time_key!r} has {t.size} times, {output_key!r} {n_out}")
        time = t if input_key is None else np.concatenate([[0.0], t])
    else:
        time = np.linspace(0.0, t_final, n_out + 1)
        time = time[1:] if input_key is None else time
    if np.any(np.diff(time) <= 0):
        raise DatasetError(f"{path}: times {time} do not increase; check time_key")
    fields = {field or output_key: series}
    return Trajectories(fields, time, coords, bcs, _mat_scalars(path, scalars))


def _sample_limit(max_samples: int | None) -> int | None:
    if max_samples is not None and max_samples < 1:
        raise DatasetError(f"max_samples must be at least 1 (got {max_samples}), or None for all")
    return max_samples


def _select(
    loaders: dict[str, Loader], wanted: Sequence[str] | None, path: Path
) -> dict[str, np.ndarray]:
    wanted = list(loaders) if wanted is None else [wanted] if isinstance(wanted, str) else wanted
    for name in wanted:
        if name not in loaders:
            raise DatasetError(
                f"{path}: field {name!r} is missing; fields in this file: {sorted(loaders)}"
                " (set data.fields accordingly)"
            )
    return {name: loaders[name]() for name in wanted}


def _dataset(group: h5py.Group, key: str, path: Path) -> h5py.Dataset:
    if key not in group or not isinstance(group[key], h5py.Dataset):
        raise DatasetError(
            f"{path}: dataset {group.name.rstrip('/')}/{key} is missing; the file is incomplete"
            " or not the PDEBench file it is named after, download it again"
        )
    return group[key]


def _coordinates(
    group: h5py.Group, names: Sequence[str], shape: tuple[int, ...], path: Path
) -> dict[str, np.ndarray]:
    coords = {}
    for dim, key, n in zip(_SPACE, names, shape, strict=False):
        coord = _dataset(group, key, path)[()].ravel()
        if coord.size != n:
            raise DatasetError(f"{path}: {key} has {coord.size} points, the data {n} along {dim}")
        coords[dim] = coord
    return coords


def _times(group: h5py.Group, key: str, n_t: int, path: Path) -> np.ndarray:
    """The n_t snapshot times; PDEBench stores n_t + 1 (the last is never reached)."""
    if key not in group and n_t == 1:
        return np.zeros(1)
    t = _dataset(group, key, path)[()].ravel()
    if t.size not in (n_t, n_t + 1):
        raise DatasetError(f"{path}: {key} has {t.size} entries for {n_t} snapshots")
    return t[:n_t]


def _tensor_layout(f: h5py.File, path: Path, n: int | None) -> tuple:
    tensor = _dataset(f, "tensor", path)
    space = tensor.shape[2:]
    coords = _coordinates(f, [f"{d}-coordinate" for d in _SPACE], space, path)
    loaders = {"u": lambda: tensor[:n]}
    darcy = "nu" in f
    if darcy:
        nu = _dataset(f, "nu", path)
        if nu.shape[1:] != space or tensor.shape[1] != 1:
            raise DatasetError(f"{path}: Darcy 'nu' {nu.shape} and 'tensor' {tensor.shape} differ")
        loaders["nu"] = lambda: nu[:n][:, None]
    time = _times(f, "t-coordinate", tensor.shape[1], path)
    boundary = _boundary(path, len(space), "OPEN" if darcy else "PERIODIC")
    return loaders, time, coords, boundary, _scalars(path, f.attrs)


def _cfd_layout(f: h5py.File, path: Path, n: int | None) -> tuple:
    density = _dataset(f, "density", path)
    space = density.shape[2:]
    components = [f"V{d}" for d in _SPACE[: len(space)]]
    for key in ("pressure", *components):
        if _dataset(f, key, path).shape != density.shape:
            raise DatasetError(f"{path}: {key} {f[key].shape} differs from density {density.shape}")
    loaders = {
        "density": lambda: density[:n],
        "pressure": lambda: f["pressure"][:n],
        "velocity": lambda: np.stack([f[c][:n] for c in components], axis=-1),
    }
    coords = _coordinates(f, [f"{d}-coordinate" for d in _SPACE], space, path)
    time = _times(f, "t-coordinate", density.shape[1], path)
    stem = path.stem
    if stem.startswith("KH"):  # Kelvin-Helmholtz: periodic in x, transmissive in y and z
        default = ("PERIODIC", "OPEN", "OPEN")
    else:
        default = "PERIODIC" if stem.startswith(("OTVortex", "Turb")) else "OPEN"
    return loaders, time, coords, _boundary(path, len(space), default), _scalars(path, f.attrs)


def _ns_incomp_layout(f: h5py.File, path: Path, n: int | None) -> tuple:
    velocity, particles = f["velocity"], _dataset(f, "particles", path)
    force = _dataset(f, "force", path)
    n_t = velocity.shape[1]
    latest = int(f.attrs.get("latestIndex", n_t - 1))
    n_t = latest + 1 if 0 <= latest < n_t else n_t  # a run stopped early leaves frames unwritten
    t = f["t"][:n, :n_t]
    if not np.allclose(t, t[:1]):
        raise DatasetError(f"{path}: samples have different times; read them one at a time")
    space = velocity.shape[2:-1]
    config = _config(f.attrs)
    loaders = {
        "velocity": lambda: velocity[:n, :n_t],
        "particles": lambda: particles[:n, :n_t, ..., 0],
        "force": lambda: np.broadcast_to(force[:n][:, None], (len(t), n_t, *force.shape[1:])),
    }
    coords = {d: np.arange(size) + 0.5 for d, size in zip(_SPACE, space, strict=False)}
    wall = {"ZERO": "WALL", "PERIODIC": "PERIODIC"}
    boundary = wall.get(str(config.get("velocity_extrapolation", "")).upper(), "OPEN")
    scalars = _scalars(path, f.attrs)
    if isinstance(config.get("NU"), int | float):
        scalars["viscosity"] = float(config["NU"])
    return loaders, t[0], coords, dict.fromkeys(coords, boundary), scalars


def _grouped_layout(f: h5py.File, path: Path, n: int | None) -> tuple:
    seeds = sorted(k for k in f if isinstance(f[k], h5py.Group) and "data" in f[k])[:n]
    first = f[seeds[0]]
    shape = first["data"].shape
    for seed in seeds:
        if f[seed]["data"].shape != shape:
            raise DatasetError(f"{path}: seed {seed} has data {f[seed]['data'].shape}, not {shape}")
    space = shape[1:-1]
    grid = f[seeds[0]].get("grid", first)
    coords = _coordinates(grid, _SPACE, space, path)
    time = _times(grid, "t", shape[0], path)

    @functools.cache
    def stacked() -> np.ndarray:
        return np.stack([f[seed]["data"][()] for seed in seeds])

    family = next((k for k in _GROUP_CHANNELS if k in path.stem), None)
    names = _GROUP_CHANNELS.get(family, ("u",) if shape[-1] == 1 else ())
    names = names if len(names) == shape[-1] else tuple(f"c{i}" for i in range(shape[-1]))
    loaders = {
        name: functools.partial(lambda c: stacked()[..., c], c) for c, name in enumerate(names)
    }
    scalars = _scalars(path, f.attrs)
    scalars |= _constant_settings([_config(f[seed].attrs).get("sim", {}) for seed in seeds])
    return loaders, time, coords, _boundary(path, len(space), "OPEN"), scalars


def _boundary(path: Path, n_space: int, default: str | Sequence[str]) -> dict[str, str]:
    tokens = path.stem.lower().split("_")
    named = next((bc for token, bc in _NAMED_BOUNDARY.items() if token in tokens), None)
    types = [named or (default if isinstance(default, str) else default[i]) for i in range(n_space)]
    return dict(zip(_SPACE, types, strict=False))


def _scalars(path: Path, attrs: Mapping) -> dict[str, float]:
    """PDE parameters from file-name tokens, then root attributes (exact, so they win)."""
    found = {}
    for token in path.stem.split("_"):
        match = re.fullmatch(r"([A-Za-z]+)([0-9][0-9.eE+-]*)", token)
        if match is None or match[1].lower() not in _PARAMETERS:
            continue
        if re.match(r"0[0-9]", match[2]):
            continue  # "M01" in KH_M01_dk1 means 0.1: too ambiguous to parse
        try:
            found[_PARAMETERS[match[1].lower()]] = float(match[2])
        except ValueError:
            continue
    for key, value in attrs.items():
        numeric = isinstance(value, int | float | np.integer | np.floating)
        if key.lower() in _PARAMETERS and numeric and not isinstance(value, bool | np.bool_):
            found[_PARAMETERS[key.lower()]] = float(value)
    if "burgers" in path.stem.lower() and "nu" in found:
        found["epsilon"] = found.pop("nu")
        found["viscosity"] = found["epsilon"] / math.pi
    return found


def _config(attrs: Mapping) -> dict:
    text = attrs.get("config")
    if text is None:
        return {}
    try:
        config = yaml.safe_load(text.decode() if isinstance(text, bytes) else str(text))
    except yaml.YAMLError:
        return {}
    return config if isinstance(config, dict) else {}


def _constant_settings(settings: list[dict]) -> dict[str, float]:
    """Numeric simulation settings equal across all samples (per-seed draws are left out)."""
    first = settings[0] if settings and isinstance(settings[0], dict) else {}
    return {
        str(k): float(v)
        for k, v in first.items()
        if isinstance(v, int | float)
        and not isinstance(v, bool)
        and k not in _CONFIG_SKIP
        and all(isinstance(s, dict) and s.get(k) == v for s in settings)
    }


def _load_mat(
    path: Path, sampled: list[str], whole: list[str], n: int | None
) -> dict[str, np.ndarray]:
    """Variables of a MATLAB file in MATLAB's axis order; `sampled` ones cut to `n` samples."""
    if not path.is_file():
        raise DatasetError(f"{path} not found; download the FNO data set it belongs to")
    if h5py.is_hdf5(path):
        try:
            with h5py.File(path, "r") as f:
                return {
                    k: _mat_variable(f, k, path, n if k in sampled else None)
                    for k in sampled + whole
                }
        except OSError as err:
            raise DatasetError(
                f"{path} is corrupt or truncated ({err}); download it again"
            ) from None
    with open(path, "rb") as file:
        header = file.read(116)
    if not header.startswith(b"MATLAB 5.0 MAT-file"):
        raise DatasetError(f"{path} is not a MATLAB v5 or v7.3 (HDF5) .mat file")
    try:
        import scipy.io
    except ImportError:
        raise DatasetError(
            f"{path} is a MATLAB v5 .mat file, which h5py cannot read; re-save it as v7.3"
            " (MATLAB: save(name, '-v7.3', ...)) or install scipy"
        ) from None
    data = scipy.io.loadmat(path, variable_names=sampled + whole)
    for key in sampled + whole:
        if key not in data:
            names = [name for name, _, _ in scipy.io.whosmat(path)]
            raise DatasetError(f"{path}: variable {key!r} is missing; variables: {sorted(names)}")
    return {k: data[k][:n] if k in sampled else data[k] for k in sampled + whole}


def _mat_variable(f: h5py.File, key: str, path: Path, n: int | None) -> np.ndarray:
    if key not in f or not isinstance(f[key], h5py.Dataset):
        names = sorted(k for k in f if not k.startswith("#"))
        raise DatasetError(f"{path}: variable {key!r} is missing; variables: {names}")
    ds = f[key]
    kind = ds.attrs.get("MATLAB_class", b"double")
    kind = kind.decode() if isinstance(kind, bytes) else str(kind)
    if kind not in _MAT_NUMERIC or ds.dtype.names is not None:
        raise DatasetError(
            f"{path}: {key!r} is a MATLAB {kind} array; only real numeric arrays are read"
        )
    # MATLAB is column-major: HDF5 holds the array with reversed axes, the sample axis last.
    return np.transpose(ds[..., :n] if n is not None else ds[()])


def _mat_coords(space: tuple[int, ...], length: float, boundary: str) -> dict[str, np.ndarray]:
    if boundary == "PERIODIC":
        return {d: np.arange(s) * (length / s) for d, s in zip(_SPACE, space, strict=False)}
    return {d: np.linspace(0.0, length, s) for d, s in zip(_SPACE, space, strict=False)}


def _mat_scalars(path: Path, given: Mapping[str, float] | None) -> dict[str, float]:
    found = {}
    for token in path.stem.split("_"):
        match = re.fullmatch(r"V([0-9][0-9.eE+-]*)", token)
        if match:
            try:
                found["viscosity"] = float(match[1])
            except ValueError:
                pass
    return found | dict(given or {})
