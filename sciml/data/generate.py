"""Generate a dataset directory (train/valid/test Well files plus stats.yaml) from a generator.

A generator is any object with ``generate(key, n_trajectories) -> Trajectories`` (the PDE solvers
of sciml.pde provide them). Trajectories are made in chunks whose keys depend only on the seed, the
split and the chunk index, so the files are bitwise reproducible. Each split is written to a
``.partial`` file that records how many chunks it holds: an interrupted run resumes there, and the
file is renamed only when complete. An existing dataset is reused only if it was made with the same
generator spec, seed and sizes.

With `resolutions`, every chunk is also stored at coarser/finer grids (spectral resampling for
periodic axes, strided subsampling for node grids with walls) in ``<root>/res<N>/``: several
resolutions from one solve.
"""

import json
import os
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import h5py
import jax
import numpy as np
from tqdm.auto import tqdm

from sciml.data.stats import compute_stats, write_stats
from sciml.data.well import (
    SPLITS,
    Trajectories,
    init_well,
    partial_path,
    read_well,
    split_path,
    write_well_chunk,
)
from sciml.errors import DatasetError
from sciml.fields import spectral_resample


@runtime_checkable
class Generator(Protocol):
    def generate(self, key: jax.Array, n_trajectories: int) -> Trajectories: ...


def generate_dataset(
    generator: Generator,
    spec: dict[str, Any],
    root: str | Path,
    *,
    name: str,
    sizes: dict[str, int],
    seed: int,
    chunk: int = 64,
    resolutions: list[int] | None = None,
) -> Path:
    """Write `sizes[split]` trajectories per split under `root` (and each resolution); return `root`.

    Split keys are ``fold_in(key(seed), split_index)`` and chunk keys ``fold_in(split_key, i)``.
    `spec` (the generator's config) is stored in each file so that a later call can tell whether
    the files on disk are the ones it would write.
    """
    root = Path(root)
    roots = {None: root} | {n: resolution_root(root, n) for n in resolutions or []}
    provenance = {"generator": spec, "seed": seed, "chunk": chunk}
    if all(is_generated(r, name, provenance, sizes) for r in roots.values()):
        return root
    for index, split in enumerate(SPLITS):
        key = jax.random.fold_in(jax.random.key(seed), index)
        wanted = {**provenance, "split": split, "n": sizes[split]}
        paths = {res: split_path(r, split, name) for res, r in roots.items()}
        if all(p.exists() for p in paths.values()):
            continue
        _generate_split(generator, key, sizes[split], chunk, paths, wanted, f"{name} {split}")
    for r in roots.values():
        traj, _ = read_well(split_path(r, "train", name))
        write_stats(r / "stats.yaml", compute_stats(traj))
    return root


def resolution_root(root: Path, n: int) -> Path:
    """Dataset directory of the copy of `root` stored at `n` points per axis."""
    return Path(root) / f"res{n}"


def is_generated(root: Path, name: str, provenance: dict, sizes: dict[str, int]) -> bool:
    """Whether `root` holds a complete dataset with this provenance; a conflicting one is an error."""
    files = [split_path(root, split, name) for split in SPLITS]
    if not all(f.exists() for f in files) or not (root / "stats.yaml").exists():
        return False
    for split, path in zip(SPLITS, files, strict=True):
        _, attrs = read_well(path)
        stored = json.loads(attrs.get("sciml_provenance", "{}"))
        wanted = {**provenance, "split": split, "n": sizes[split]}
        if json.loads(json.dumps(wanted)) != stored:
            raise DatasetError(
                f"{root} holds a dataset made with different settings ({path.name}: {stored});"
                " delete it, or point data.path elsewhere"
            )
    return True


def _generate_split(
    generator: Generator,
    key: jax.Array,
    n: int,
    chunk: int,
    paths: dict[int | None, Path],
    provenance: dict,
    desc: str,
) -> None:
    tag = json.dumps(json.loads(json.dumps(provenance)), sort_keys=True)
    n_chunks = -(-n // chunk)
    done = min(_chunks_done(partial_path(p), tag) for p in paths.values())
    files: dict[int | None, h5py.File] = {}
    try:
        with tqdm(
            total=n, initial=min(done * chunk, n), desc=desc, unit="traj", disable=None
        ) as bar:
            for i in range(done, n_chunks):
                size = min(chunk, n - i * chunk)
                traj = generator.generate(jax.random.fold_in(key, i), size)
                for res, path in paths.items():
                    part = traj if res is None else resample_trajectories(traj, res)
                    if res not in files:
                        files[res] = _open_partial(path, part, n, tag, fresh=(done == 0))
                    f = files[res]
                    write_well_chunk(f, i * chunk, part)
                    f.attrs["sciml_chunks_done"] = i + 1
                    f.flush()
                bar.update(size)
    finally:
        for f in files.values():
            f.close()
    for path in paths.values():
        os.replace(partial_path(path), path)


def _chunks_done(partial: Path, tag: str) -> int:
    """Chunks already in a partial file written with the same provenance (0 if none or corrupt)."""
    if not partial.exists():
        return 0
    try:
        with h5py.File(partial, "r") as f:
            if f.attrs.get("sciml_provenance") == tag:
                return int(f.attrs.get("sciml_chunks_done", 0))
    except OSError:  # cut short mid-write: start the split again
        pass
    partial.unlink()
    return 0


def _open_partial(path: Path, like: Trajectories, n: int, tag: str, fresh: bool) -> h5py.File:
    partial = partial_path(path)
    if not fresh and partial.exists():
        return h5py.File(partial, "a")
    path.parent.mkdir(parents=True, exist_ok=True)
    f = h5py.File(partial, "w")
    init_well(f, f"{path.stem}", like, n, {"sciml_provenance": tag})
    f.attrs["sciml_chunks_done"] = 0
    return f


def resample_trajectories(traj: Trajectories, n: int) -> Trajectories:
    """`traj` on a grid of `n` points per axis.

    Periodic axes are resampled spectrally (`sciml.fields.spectral_resample`); wall-bounded node
    grids (first and last points on the boundary) are subsampled with stride (n_in - 1) / (n - 1).
    """
    ndim = traj.n_spatial_dims
    periodic = all(bc.upper() == "PERIODIC" for bc in traj.boundary.values())
    fields, coords = {}, {}
    for name, array in traj.fields.items():
        order = traj.tensor_order(name)
        flat = array.reshape(*array.shape[: 2 + ndim], -1)  # components on one trailing axis
        if periodic:
            out = np.asarray(spectral_resample(flat, (n,) * ndim))
        else:
            out = flat[
                (slice(None), slice(None), *[_stride(s, n) for s in flat.shape[2 : 2 + ndim]])
            ]
        fields[name] = (
            out.reshape(*out.shape[: 2 + ndim], *array.shape[2 + ndim :]) if order else out[..., 0]
        )
    for dim, c in traj.coords.items():
        if periodic:
            coords[dim] = c[0] + np.arange(n) * (len(c) * (c[1] - c[0])) / n
        else:
            coords[dim] = c[_stride(len(c), n)]
    return Trajectories(fields, traj.time, coords, traj.boundary, traj.scalars)


def _stride(n_in: int, n_out: int) -> slice:
    if (n_in - 1) % (n_out - 1):
        raise DatasetError(
            f"a wall-bounded grid of {n_in} points cannot be subsampled to {n_out}: (n_in - 1) must be"
            f" a multiple of (n_out - 1); choose resolutions such as {(n_in - 1) // 2 + 1}"
        )
    return slice(None, None, (n_in - 1) // (n_out - 1))
