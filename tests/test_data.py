import h5py
import jax
import numpy as np
import pytest

from sciml.data import (
    SPLITS,
    Trajectories,
    WindowDataset,
    batch_indices,
    compute_stats,
    generate_dataset,
    read_stats,
    read_well,
    resolution_root,
    shard_batch,
    split_path,
    write_well,
)
from sciml.errors import DatasetError
from sciml.fields import spectral_resample
from sciml.pde import SpectralDataset
from sciml.train import make_mesh


def _trajectories(n_traj=3, n_time=6, nx=8, ny=4, seed=0):
    rng = np.random.default_rng(seed)
    return Trajectories(
        fields={
            "density": rng.normal(size=(n_traj, n_time, nx, ny)).astype(np.float32),
            "velocity": rng.normal(size=(n_traj, n_time, nx, ny, 2)).astype(np.float32),
        },
        time=np.linspace(0, 1, n_time),
        coords={"x": np.arange(nx) / nx, "y": np.arange(ny) / ny},
        boundary={"x": "PERIODIC", "y": "WALL"},
        scalars={"viscosity": 0.01},
    )


def test_well_round_trip_and_schema(tmp_path):
    traj = _trajectories()
    path = tmp_path / "a.hdf5"
    write_well(path, "demo", traj, attrs={"note": {"k": 1}})
    back, attrs = read_well(path)
    for name in traj.fields:
        np.testing.assert_array_equal(back.fields[name], traj.fields[name])
    assert back.boundary == traj.boundary and back.scalars == traj.scalars
    assert attrs["dataset_name"] == "demo" and attrs["n_spatial_dims"] == 2
    with h5py.File(path) as f:  # The Well's layout: tensor order decides the group
        assert list(f["t0_fields"].attrs["field_names"]) == ["density"]
        assert list(f["t1_fields"].attrs["field_names"]) == ["velocity"]
        assert list(f["t2_fields"].attrs["field_names"]) == []
        assert f["boundary_conditions/x_periodic"].attrs["bc_type"] == "PERIODIC"
        assert f["t0_fields/density"].dtype == np.float32


def test_missing_field_names_the_available_ones(tmp_path):
    write_well(tmp_path / "a.hdf5", "demo", _trajectories())
    with pytest.raises(
        DatasetError,
        match=r"field 'pressure' is missing; fields in this file: \['density', 'velocity'\]",
    ):
        read_well(tmp_path / "a.hdf5", ["pressure"])


def test_missing_group_and_truncated_file_are_detected(tmp_path):
    path = tmp_path / "a.hdf5"
    write_well(path, "demo", _trajectories())
    with h5py.File(path, "a") as f:
        del f["scalars"]
    with pytest.raises(DatasetError, match="group 'scalars' is missing"):
        read_well(path)
    write_well(path, "demo", _trajectories())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="corrupt or truncated"):
        read_well(path)


def test_inconsistent_field_shape_is_detected(tmp_path):
    path = tmp_path / "a.hdf5"
    write_well(path, "demo", _trajectories())
    with h5py.File(path, "a") as f:
        del f["t0_fields/density"]
        f["t0_fields"].create_dataset("density", data=np.zeros((3, 6, 7, 4), np.float32))
    with pytest.raises(DatasetError, match=r"field 'density' has shape \(6, 7, 4\)"):
        read_well(path)


def test_stats_per_field_and_component():
    traj = _trajectories()
    stats = compute_stats(traj)
    assert np.isclose(stats["mean"]["density"], traj.fields["density"].mean(), rtol=1e-6)
    assert np.allclose(
        stats["std"]["velocity"], traj.fields["velocity"].reshape(-1, 2).std(0), rtol=1e-6
    )
    delta = np.diff(traj.fields["density"], axis=1)
    assert np.isclose(
        stats["rms_delta"]["density"], np.sqrt((delta.astype(np.float64) ** 2).mean()), rtol=1e-6
    )


def test_windows_pick_the_right_frames():
    traj = _trajectories(n_traj=2, n_time=7)
    ds = WindowDataset(
        traj, fields=["density", "velocity"], input_steps=2, output_steps=1, dt_stride=2
    )
    assert ds.windows_per_traj == 7 - 4 and len(ds) == 6 and ds.channels == 3
    x, y = ds[4]  # trajectory 1, start 1: inputs t = 1, 3; target t = 5
    rho, vel = traj.fields["density"][1], traj.fields["velocity"][1]
    np.testing.assert_array_equal(x[..., 0], rho[1])
    np.testing.assert_array_equal(x[..., 1:3], vel[1])
    np.testing.assert_array_equal(x[..., 3], rho[3])
    np.testing.assert_array_equal(y[..., 0], rho[5])


def test_normalisation_round_trips():
    traj = _trajectories()
    ds = WindowDataset(traj, stats=compute_stats(traj))
    x, y = ds.get_batch(np.arange(len(ds)))
    assert abs(ds.frames[..., 0].mean()) < 1e-5 and np.isclose(
        ds.frames[..., 0].std(), 1, atol=1e-5
    )
    np.testing.assert_allclose(
        ds.denormalize(y)[..., 0], traj.fields["density"][:, 1:].reshape(-1, 8, 4), atol=1e-5
    )


def test_too_long_window_is_a_clear_error():
    with pytest.raises(DatasetError, match="lower data.input_steps"):
        WindowDataset(_trajectories(n_time=3), input_steps=3, output_steps=1)


def test_batches_are_a_pure_function_of_seed_and_step():
    a = [batch_indices(20, 6, seed=3, step=s) for s in range(9)]
    b = [batch_indices(20, 6, seed=3, step=s) for s in range(9)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    epoch = np.concatenate(a[:3])  # 3 batches per epoch: no repeats inside an epoch
    assert len(set(epoch.tolist())) == 18
    assert not np.array_equal(a[0], a[3])  # a new permutation each epoch
    with pytest.raises(DatasetError, match="exceeds the 20 training samples"):
        batch_indices(20, 32, seed=0, step=0)


def test_shard_batch_splits_over_devices_and_rejects_uneven_batches():
    mesh = make_mesh()
    x = np.arange(16 * 3, dtype=np.float32).reshape(16, 3)
    (sharded,) = shard_batch((x,), mesh)
    assert len(sharded.addressable_shards) == jax.device_count() == 8
    np.testing.assert_array_equal(np.asarray(sharded), x)
    with pytest.raises(DatasetError, match="multiple of 8"):
        shard_batch((x[:12],), mesh)


class _CountingGenerator:
    """A trivial generator: trajectory i of a call holds the constant drawn from the key."""

    calls = 0

    def generate(self, key, n):
        type(self).calls += 1
        values = np.asarray(jax.random.uniform(key, (n, 1, 1)))
        u = np.broadcast_to(values, (n, 2, 4)).copy()
        return Trajectories({"u": u}, np.arange(2.0), {"x": np.arange(4) / 4}, {"x": "PERIODIC"})


def test_generation_is_reused_resumed_and_guarded(tmp_path):
    sizes = {"train": 5, "valid": 2, "test": 2}
    spec = {"type": "demo", "a": 1}
    gen = _CountingGenerator()
    generate_dataset(gen, spec, tmp_path, name="demo", sizes=sizes, seed=0, chunk=2)
    first = {s: read_well(split_path(tmp_path, s, "demo"))[0].fields["u"] for s in SPLITS}
    assert read_stats(tmp_path / "stats.yaml")["mean"]["u"] == pytest.approx(first["train"].mean())
    calls = gen.calls
    generate_dataset(gen, spec, tmp_path, name="demo", sizes=sizes, seed=0, chunk=2)
    assert gen.calls == calls  # complete and matching: reused, nothing regenerated

    split_path(tmp_path, "test", "demo").unlink()  # as if interrupted before the last split
    generate_dataset(gen, spec, tmp_path, name="demo", sizes=sizes, seed=0, chunk=2)
    again = {s: read_well(split_path(tmp_path, s, "demo"))[0].fields["u"] for s in SPLITS}
    assert all(np.array_equal(first[s], again[s]) for s in SPLITS)  # bitwise reproducible

    with pytest.raises(DatasetError, match="made with different settings"):
        generate_dataset(gen, spec, tmp_path, name="demo", sizes=sizes, seed=1, chunk=2)


class _FailingGenerator(_CountingGenerator):
    """Raises on its `fail_at`-th call, as an interrupted run would stop."""

    def __init__(self, fail_at):
        self.fail_at, self.n_calls = fail_at, 0

    def generate(self, key, n):
        self.n_calls += 1
        if self.n_calls == self.fail_at:
            raise KeyboardInterrupt
        return super().generate(key, n)


def test_interrupted_generation_resumes_to_identical_files(tmp_path):
    sizes = {"train": 9, "valid": 2, "test": 2}
    spec = {"type": "demo"}
    generate_dataset(
        _CountingGenerator(), spec, tmp_path / "a", name="d", sizes=sizes, seed=0, chunk=2
    )
    with pytest.raises(KeyboardInterrupt):  # stops inside the train split, after 3 of 5 chunks
        generate_dataset(
            _FailingGenerator(4), spec, tmp_path / "b", name="d", sizes=sizes, seed=0, chunk=2
        )
    partial = split_path(tmp_path / "b", "train", "d").with_name("d.hdf5.partial")
    assert partial.exists() and not split_path(tmp_path / "b", "train", "d").exists()
    with h5py.File(partial) as f:
        assert f.attrs["sciml_chunks_done"] == 3
    resumed = _FailingGenerator(fail_at=-1)
    generate_dataset(resumed, spec, tmp_path / "b", name="d", sizes=sizes, seed=0, chunk=2)
    assert resumed.n_calls == 2 + 1 + 1  # the 2 missing train chunks, then valid and test
    for split in SPLITS:
        a = read_well(split_path(tmp_path / "a", split, "d"))[0].fields["u"]
        b = read_well(split_path(tmp_path / "b", split, "d"))[0].fields["u"]
        assert np.array_equal(a, b)


def test_a_corrupt_partial_file_is_discarded(tmp_path):
    sizes = {"train": 4, "valid": 2, "test": 2}
    path = split_path(tmp_path, "train", "d")
    path.parent.mkdir(parents=True)
    path.with_name("d.hdf5.partial").write_bytes(b"\x89HDF\r\n garbage")
    generate_dataset(
        _CountingGenerator(), {"t": 1}, tmp_path, name="d", sizes=sizes, seed=0, chunk=2
    )
    assert read_well(path)[0].fields["u"].shape == (4, 2, 4)


def test_several_resolutions_from_one_solve(tmp_path):
    gen = SpectralDataset(
        equation={
            "type": "sciml.pde.Burgers",
            "shape": [64],
            "length": 1.0,
            "dt": 0.01,
            "viscosity": 0.1,
        },
        initial_condition={"kind": "grf", "sigma": 25.0, "tau": 5.0, "alpha": 2.0},
        t_final=0.2,
        n_snapshots=3,
    )
    sizes = {"train": 3, "valid": 2, "test": 2}
    generate_dataset(gen, {"g": 1}, tmp_path, name="b", sizes=sizes, seed=0, resolutions=[32, 16])
    fine = read_well(split_path(tmp_path, "test", "b"))[0]
    for n in (32, 16):
        coarse, _ = read_well(split_path(resolution_root(tmp_path, n), "test", "b"))
        assert coarse.fields["u"].shape == (2, 3, n) and np.allclose(
            coarse.coords["x"], np.arange(n) / n
        )
        # Each stored coarse grid is the spectral resampling of the same fine solve.
        expected = np.asarray(spectral_resample(fine.fields["u"][..., None], n))[..., 0]
        np.testing.assert_allclose(coarse.fields["u"], expected, atol=1e-6)
        assert (resolution_root(tmp_path, n) / "stats.yaml").exists()


def test_per_trajectory_scalars_round_trip(tmp_path):
    traj = _trajectories(n_traj=3)
    traj = Trajectories(
        traj.fields,
        traj.time,
        traj.coords,
        traj.boundary,
        {"nu": np.array([0.1, 0.2, 0.3]), "c": 2.0},
    )
    write_well(tmp_path / "a.hdf5", "demo", traj)
    back, attrs = read_well(tmp_path / "a.hdf5")
    np.testing.assert_array_equal(back.scalars["nu"], [0.1, 0.2, 0.3])
    assert back.scalars["c"] == 2.0 and attrs["c"] == 2.0
    with h5py.File(tmp_path / "a.hdf5") as f:
        assert (
            f["scalars/nu"].attrs["sample_varying"] and not f["scalars/c"].attrs["sample_varying"]
        )


def test_field_to_field_windows():
    traj = _trajectories(n_traj=2, n_time=3)
    stats = compute_stats(traj)
    ds = WindowDataset(traj, fields=["velocity"], target_fields=["density"], stats=stats)
    assert len(ds) == 6 and ds.channels == 2
    x, y = ds.get_batch(np.array([4]))  # trajectory 1, time 1
    np.testing.assert_allclose(ds.denormalize_input(x)[0], traj.fields["velocity"][1, 1], atol=1e-5)
    np.testing.assert_allclose(
        ds.denormalize(y)[0, ..., 0], traj.fields["density"][1, 1], atol=1e-5
    )
    with pytest.raises(DatasetError, match="field 'p' is not in the dataset"):
        WindowDataset(traj, fields=["velocity"], target_fields=["p"])
