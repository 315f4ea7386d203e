"""Readers of PDEBench HDF5 and FNO .mat files, on small synthetic files built in each real layout.

Values are index-dependent (``arange``), so any axis swap or transposition changes them; the
readers copy float32 data, so comparisons are exact.
"""

import math
import sys

import h5py
import numpy as np
import pytest
import yaml

from sciml.data import read_well, write_well
from sciml.data.readers import read_fno_mat, read_pdebench
from sciml.errors import DatasetError


def _ramp(*shape, offset=0.0):
    return (np.arange(math.prod(shape), dtype=np.float32) + offset).reshape(shape)


def _cells(n, lo=0.0, hi=1.0):
    return lo + (np.arange(n) + 0.5) * (hi - lo) / n


def _write_tensor(path, n=4, n_t=5, nx=16, attrs=None):
    """Advection / Burgers / 1D reaction-diffusion, as Data_Merge.transform writes them."""
    with h5py.File(path, "w") as f:
        f.create_dataset("tensor", data=_ramp(n, n_t, nx))
        f.create_dataset("x-coordinate", data=_cells(nx))
        f.create_dataset("t-coordinate", data=np.arange(n_t + 1) * 0.01)  # n_t + 1 entries
        f.attrs.update(attrs or {})
    return path


def _write_cfd(path, shape=(3, 4, 8, 6), attrs=None):
    """CFD as Data_Merge.merge writes it: one dataset per variable, (sample, t, *space)."""
    with h5py.File(path, "w") as f:
        for i, key in enumerate(["density", "pressure", "Vx", "Vy", "Vz"][: len(shape) + 1]):
            f.create_dataset(key, data=_ramp(*shape, offset=1000.0 * i))
        for dim, n in zip("xyz", shape[2:]):
            f.create_dataset(f"{dim}-coordinate", data=_cells(n))
        f.create_dataset("t-coordinate", data=np.arange(shape[1] + 1) * 0.05)
        f.attrs.update(attrs or {})
    return path


def _write_grouped(path, n=3, n_t=5, space=(8, 6), channels=2, sim=None, varying=None):
    """Grouped files as gen_diff_react.py / gen_radial_dam_break.py write them: one group per seed."""
    with h5py.File(path, "w") as f:
        for seed in range(n):
            name = str(seed).zfill(4)
            data = _ramp(n_t, *space, channels, offset=10_000.0 * seed)
            f.create_dataset(f"{name}/data", data=data, compression="lzf")
            for dim, size in zip("xyz", space):
                f.create_dataset(f"{name}/grid/{dim}", data=_cells(size, -1.0, 1.0))
            f.create_dataset(f"{name}/grid/t", data=np.linspace(0.0, 5.0, n_t))
            config = {"sim": {**(sim or {}), "seed": seed, **(varying or {}).get(seed, {})}}
            f[name].attrs["config"] = yaml.safe_dump(config)
    return path


def test_burgers_tensor_layout(tmp_path):
    path = _write_tensor(tmp_path / "1D_Burgers_Sols_Nu0.01.hdf5")
    traj = read_pdebench(path)
    assert list(traj.fields) == ["u"] and traj.fields["u"].shape == (4, 5, 16)
    np.testing.assert_array_equal(traj.fields["u"], _ramp(4, 5, 16))
    np.testing.assert_allclose(traj.time, np.arange(5) * 0.01)  # the extra last entry dropped
    np.testing.assert_allclose(traj.coords["x"], _cells(16))
    assert traj.boundary == {"x": "PERIODIC"}
    # PDEBench's Burgers "Nu" is eps in u_t + (u^2/2)_x = (eps/pi) u_xx
    assert traj.scalars == {"epsilon": 0.01, "viscosity": 0.01 / math.pi}
    assert traj.tensor_order("u") == 0


@pytest.mark.parametrize(
    ("name", "attrs", "scalars"),
    [
        ("1D_Advection_Sols_beta0.4.hdf5", {}, {"beta": 0.4}),
        ("ReacDiff_Nu0.5_Rho1.0.hdf5", {"Nu": 0.5, "rho": 1.0}, {"nu": 0.5, "rho": 1.0}),
        # attributes are exact; names are truncated (str(eps)[:5]), so attributes win
        ("1D_Burgers_Sols_Nu0.001.hdf5", {"Nu": 0.0012345}, {"epsilon": 0.0012345}),
        ("tensor_without_parameters.hdf5", {"note": "text"}, {}),
    ],
)
def test_tensor_scalars_from_names_and_attributes(tmp_path, name, attrs, scalars):
    traj = read_pdebench(_write_tensor(tmp_path / name, attrs=attrs))
    assert {k: traj.scalars[k] for k in scalars} == scalars
    assert set(traj.scalars) - set(scalars) <= {"viscosity"}


def test_max_samples_and_unknown_field(tmp_path):
    path = _write_tensor(tmp_path / "1D_Advection_Sols_beta0.1.hdf5")
    assert read_pdebench(path, fields="u", max_samples=2).fields["u"].shape == (2, 5, 16)
    with pytest.raises(
        DatasetError, match=r"field 'pressure' is missing; fields in this file: \['u'\]"
    ):
        read_pdebench(path, fields=["pressure"])
    with pytest.raises(DatasetError, match="max_samples must be at least 1"):
        read_pdebench(path, max_samples=0)


def test_darcy_steady_layout(tmp_path):
    path = tmp_path / "2D_DarcyFlow_beta1.0_Train.hdf5"
    with h5py.File(path, "w") as f:  # Data_Merge: tensor (N, 1, x, y), nu (N, x, y), no time
        f.create_dataset("tensor", data=_ramp(3, 1, 8, 6))
        f.create_dataset("nu", data=_ramp(3, 8, 6, offset=-50.0))
        f.create_dataset("x-coordinate", data=_cells(8))
        f.create_dataset("y-coordinate", data=_cells(6))
        f.attrs["beta"] = 1.0
    traj = read_pdebench(path)
    assert traj.fields["u"].shape == traj.fields["nu"].shape == (3, 1, 8, 6)
    np.testing.assert_array_equal(traj.fields["nu"][:, 0], _ramp(3, 8, 6, offset=-50.0))
    np.testing.assert_array_equal(traj.time, [0.0])
    assert traj.boundary == {"x": "OPEN", "y": "OPEN"} and traj.scalars == {"beta": 1.0}


def test_cfd_velocity_is_one_vector_field(tmp_path):
    name = "2D_CFD_Rand_M0.1_Eta0.01_Zeta0.01_periodic_128_Train.hdf5"
    path = _write_cfd(tmp_path / name, attrs={"eta": 0.01, "zeta": 0.01, "M": 0.1})
    traj = read_pdebench(path)
    assert sorted(traj.fields) == ["density", "pressure", "velocity"]
    velocity = traj.fields["velocity"]
    assert velocity.shape == (3, 4, 8, 6, 2) and traj.tensor_order("velocity") == 1
    np.testing.assert_array_equal(velocity[..., 0], _ramp(3, 4, 8, 6, offset=2000.0))  # Vx
    np.testing.assert_array_equal(velocity[..., 1], _ramp(3, 4, 8, 6, offset=3000.0))  # Vy
    np.testing.assert_array_equal(traj.fields["pressure"], _ramp(3, 4, 8, 6, offset=1000.0))
    assert traj.tensor_order("density") == 0 and list(traj.coords) == ["x", "y"]
    np.testing.assert_allclose(traj.time, np.arange(4) * 0.05)
    assert traj.boundary == {"x": "PERIODIC", "y": "PERIODIC"}
    assert traj.scalars == {"mach": 0.1, "eta": 0.01, "zeta": 0.01}
    only = read_pdebench(path, fields=["velocity"], max_samples=1)
    assert list(only.fields) == ["velocity"] and only.fields["velocity"].shape == (1, 4, 8, 6, 2)


def test_cfd_1d_transmissive_names_give_open_boundary_and_scalars(tmp_path):
    path = _write_cfd(
        tmp_path / "1D_CFD_Rand_Eta1.e-8_Zeta1.e-8_trans_Train.hdf5", shape=(2, 3, 10)
    )
    traj = read_pdebench(path)
    assert traj.fields["velocity"].shape == (2, 3, 10, 1)
    assert traj.boundary == {"x": "OPEN"} and traj.scalars == {"eta": 1e-8, "zeta": 1e-8}


@pytest.mark.parametrize(
    ("name", "channels", "names"),
    [
        ("2D_diff-react_NA_NA.h5", 2, ["u", "v"]),
        ("2D_rdb_NA_NA.h5", 1, ["h"]),
        ("some_other_grouped.h5", 3, ["c0", "c1", "c2"]),
    ],
)
def test_grouped_layout_channels_become_scalar_fields(tmp_path, name, channels, names):
    sim = {"Du": 1e-3, "Dv": 5e-3, "k": 5e-3, "xdim": 8, "tdim": 5}
    varying = {1: {"dam_radius": 0.4}, 0: {"dam_radius": 0.6}, 2: {"dam_radius": 0.5}}
    path = _write_grouped(tmp_path / name, channels=channels, sim=sim, varying=varying)
    traj = read_pdebench(path, max_samples=2)
    assert list(traj.fields) == names
    expected = np.stack([_ramp(5, 8, 6, channels, offset=10_000.0 * s) for s in range(2)])
    for c, field in enumerate(names):
        np.testing.assert_array_equal(traj.fields[field], expected[..., c])
    np.testing.assert_allclose(traj.coords["y"], _cells(6, -1.0, 1.0))
    np.testing.assert_allclose(traj.time, np.linspace(0.0, 5.0, 5))
    assert traj.boundary == {"x": "OPEN", "y": "OPEN"}
    # constant simulation settings are kept; the seed, grid sizes and per-seed draws are not
    assert traj.scalars == {"Du": 1e-3, "Dv": 5e-3, "k": 5e-3}


def test_grouped_1d_diffusion_sorption(tmp_path):
    path = _write_grouped(tmp_path / "1D_diff-sorp_NA_NA.h5", space=(12,), channels=1)
    traj = read_pdebench(path)
    assert list(traj.fields) == ["u"] and traj.fields["u"].shape == (3, 5, 12)
    assert list(traj.coords) == ["x"]


def test_incompressible_ns_layout(tmp_path):
    path = tmp_path / "ns_incom_inhom_2d_512-0.h5"
    with h5py.File(path, "w") as f:  # data_io.h5_for: (batch, t, x, y, v), force (batch, x, y, 2)
        f.create_dataset("velocity", data=_ramp(2, 4, 8, 6, 2))
        f.create_dataset("particles", data=_ramp(2, 4, 8, 6, 1, offset=7.0))
        f.create_dataset("force", data=_ramp(2, 8, 6, 2, offset=-3.0))
        f.create_dataset("t", data=np.tile(np.arange(1, 5) * 5e-3, (2, 1)))
        f.attrs["config"] = yaml.safe_dump({"NU": 0.01, "velocity_extrapolation": "ZERO"})
        f.attrs["latestIndex"] = 3
    traj = read_pdebench(path)
    assert traj.fields["velocity"].shape == traj.fields["force"].shape == (2, 4, 8, 6, 2)
    np.testing.assert_array_equal(
        traj.fields["particles"], _ramp(2, 4, 8, 6, 1, offset=7.0)[..., 0]
    )
    np.testing.assert_array_equal(traj.fields["force"][:, 2], _ramp(2, 8, 6, 2, offset=-3.0))
    np.testing.assert_allclose(traj.time, np.arange(1, 5) * 5e-3)
    np.testing.assert_allclose(traj.coords["x"], np.arange(8) + 0.5)
    assert traj.boundary == {"x": "WALL", "y": "WALL"} and traj.scalars == {"viscosity": 0.01}


def test_pdebench_errors_name_the_problem(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        read_pdebench(tmp_path / "absent.hdf5")
    (tmp_path / "text.hdf5").write_text("not hdf5")
    with pytest.raises(DatasetError, match="not a readable HDF5 file"):
        read_pdebench(tmp_path / "text.hdf5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_dataset("foo", data=np.zeros(3))
    with pytest.raises(DatasetError, match=r"no PDEBench layout \(root keys \['foo'\]\)"):
        read_pdebench(tmp_path / "other.h5")
    with h5py.File(tmp_path / "no_x.hdf5", "w") as f:
        f.create_dataset("tensor", data=np.zeros((2, 3, 4)))
        f.create_dataset("t-coordinate", data=np.zeros(4))
    with pytest.raises(DatasetError, match="dataset /x-coordinate is missing"):
        read_pdebench(tmp_path / "no_x.hdf5")
    path = _write_cfd(tmp_path / "cfd_periodic.hdf5")
    with h5py.File(path, "a") as f:
        del f["Vy"]
    with pytest.raises(DatasetError, match="dataset /Vy is missing"):
        read_pdebench(path)


def test_pdebench_round_trip_through_well(tmp_path):
    name = "2D_CFD_Rand_M1.0_Eta0.1_Zeta0.1_periodic_128_Train.hdf5"
    traj = read_pdebench(_write_cfd(tmp_path / name, attrs={"eta": 0.1, "zeta": 0.1, "M": 1.0}))
    write_well(tmp_path / "well.hdf5", "cfd", traj)
    back, attrs = read_well(tmp_path / "well.hdf5")
    for field, array in traj.fields.items():
        np.testing.assert_array_equal(back.fields[field], array)
    np.testing.assert_allclose(back.time, traj.time)
    assert back.boundary == traj.boundary and back.scalars == traj.scalars
    assert back.tensor_order("velocity") == 1 and attrs["n_spatial_dims"] == 2


# --- FNO .mat files -----------------------------------------------------------------------------

_MAT73_HEADER = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."


def _write_mat73(path, variables):
    """A MATLAB v7.3 file: HDF5 behind a 512-byte header, each array stored column-major."""
    with h5py.File(path, "w", userblock_size=512) as f:
        for key, value in variables.items():
            ds = f.create_dataset(key, data=np.asarray(value).T)  # MATLAB's axes reversed
            ds.attrs["MATLAB_class"] = np.bytes_("double")
    header = _MAT73_HEADER.ljust(116) + bytes(8) + b"\x00\x02IM"
    with open(path, "r+b") as file:
        file.write(header.ljust(512, b"\x00"))
    return path


def test_fno_burgers_initial_state_and_solution(tmp_path):
    a, u = _ramp(3, 16, offset=0.5), _ramp(3, 16, offset=-100.0)
    path = _write_mat73(tmp_path / "burgers_data_R10.mat", {"a": a, "u": u})
    with h5py.File(path) as f:
        assert f["u"].shape == (16, 3)  # as MATLAB stores an (N, 16) array
    traj = read_fno_mat(path, "a", "u")
    assert traj.fields["u"].shape == (3, 2, 16)
    np.testing.assert_array_equal(traj.fields["u"][:, 0], a)
    np.testing.assert_array_equal(traj.fields["u"][:, 1], u)
    np.testing.assert_allclose(traj.time, [0.0, 1.0])
    np.testing.assert_allclose(traj.coords["x"], np.arange(16) / 16)  # periodic [0, 1)
    assert traj.boundary == {"x": "PERIODIC"} and traj.scalars == {}


def test_fno_darcy_steady_non_square(tmp_path):
    coeff, sol = _ramp(3, 9, 7), _ramp(3, 9, 7, offset=0.25)
    path = _write_mat73(
        tmp_path / "piececonst_r421_N1024_smooth1.mat", {"coeff": coeff, "sol": sol}
    )
    traj = read_fno_mat(path, "coeff", "sol", steady=True, boundary="OPEN", max_samples=2)
    assert traj.fields["coeff"].shape == traj.fields["sol"].shape == (2, 1, 9, 7)
    np.testing.assert_array_equal(traj.fields["sol"][:, 0], sol[:2])
    np.testing.assert_allclose(traj.coords["x"], np.linspace(0, 1, 9))  # both ends included
    np.testing.assert_allclose(traj.coords["y"], np.linspace(0, 1, 7))
    assert traj.boundary == {"x": "OPEN", "y": "OPEN"}
    np.testing.assert_array_equal(traj.time, [0.0])


def test_fno_navier_stokes_time_last_with_time_vector(tmp_path):
    a, u = _ramp(3, 8, 6), _ramp(3, 8, 6, 4, offset=1000.0)
    t = np.arange(1, 5, dtype=np.float64)[None, :]  # MATLAB row vector 1 x T
    path = _write_mat73(tmp_path / "ns_V1e-3_N3_T4.mat", {"a": a, "u": u, "t": t})
    traj = read_fno_mat(path, "a", "u", time_key="t", field="vorticity")
    w = traj.fields["vorticity"]
    assert w.shape == (3, 5, 8, 6)
    np.testing.assert_array_equal(w[:, 0], a)
    np.testing.assert_array_equal(w[:, 1:], np.moveaxis(u, -1, 1))
    np.testing.assert_allclose(traj.time, [0.0, 1.0, 2.0, 3.0, 4.0])
    assert traj.scalars == {"viscosity": 1e-3}
    only_u = read_fno_mat(path, None, "u", t_final=4.0, max_samples=1)
    assert only_u.fields["u"].shape == (1, 4, 8, 6)
    np.testing.assert_allclose(only_u.time, [1.0, 2.0, 3.0, 4.0])


def test_fno_v5_file_through_scipy_or_a_clear_error(tmp_path, monkeypatch):
    scipy_io = pytest.importorskip("scipy.io")
    path = tmp_path / "burgers_v5.mat"
    a, u = _ramp(2, 8), _ramp(2, 8, offset=9.0)
    scipy_io.savemat(path, {"a": a, "u": u})
    np.testing.assert_array_equal(read_fno_mat(path, "a", "u").fields["u"][:, 1], u)
    with pytest.raises(DatasetError, match=r"variable 'b' is missing; variables: \['a', 'u'\]"):
        read_fno_mat(path, "b", "u")
    monkeypatch.setitem(sys.modules, "scipy.io", None)  # as if scipy were not installed
    with pytest.raises(DatasetError, match=r"re-save it as v7.3 .* or install scipy"):
        read_fno_mat(path, "a", "u")


def test_fno_errors_name_the_problem(tmp_path):
    path = _write_mat73(tmp_path / "data.mat", {"a": _ramp(2, 8), "u": _ramp(2, 6)})
    with pytest.raises(DatasetError, match=r"variable 'x' is missing; variables: \['a', 'u'\]"):
        read_fno_mat(path, "x", "u")
    with pytest.raises(DatasetError, match="do not share a grid"):
        read_fno_mat(path, "a", "u")
    with pytest.raises(DatasetError, match="boundary 'DIRICHLET' is not one of"):
        read_fno_mat(path, "a", "a", boundary="DIRICHLET")
    (tmp_path / "plain.mat").write_bytes(b"\x00" * 200)
    with pytest.raises(DatasetError, match="not a MATLAB v5 or v7.3"):
        read_fno_mat(tmp_path / "plain.mat", "a", "u")
    with pytest.raises(DatasetError, match="not found"):
        read_fno_mat(tmp_path / "absent.mat", "a", "u")
