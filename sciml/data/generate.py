"""Generate a dataset directory (train/valid/test Well files plus stats.yaml) from a generator.

A generator is any object with ``generate(key, n_trajectories) -> Trajectories`` (the PDE solvers
of sciml.pde provide them). Each split file is written atomically; an existing dataset is reused
only if it was made by the same generator spec, seed and sizes.
"""

import json
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import jax
import numpy as np
from tqdm.auto import tqdm

from sciml.data.stats import compute_stats, write_stats
from sciml.data.well import SPLITS, Trajectories, read_well, split_path, write_well
from sciml.errors import DatasetError


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
) -> Path:
    """Write `sizes[split]` trajectories per split under `root`; return `root`.

    Split keys are ``fold_in(key(seed), split_index)``; trajectories are generated in chunks of
    `chunk` with a progress bar. `spec` (the generator's config) is stored in each file so a later
    call can tell whether the files on disk are the ones it would write.
    """
    root = Path(root)
    provenance = {"generator": spec, "seed": seed}
    if is_generated(root, name, provenance, sizes):
        return root
    stats = None
    for index, split in enumerate(SPLITS):
        key = jax.random.fold_in(jax.random.key(seed), index)
        traj = _generate_chunked(generator, key, sizes[split], chunk, f"{name} {split}")
        attrs = {"sciml_provenance": json.dumps({**provenance, "split": split, "n": sizes[split]})}
        write_well(split_path(root, split, name), name, traj, attrs)
        if split == "train":
            stats = compute_stats(traj)
    write_stats(root / "stats.yaml", stats)
    return root


def is_generated(root: Path, name: str, provenance: dict, sizes: dict[str, int]) -> bool:
    """Whether `root` holds a complete dataset with this provenance; a conflicting one is an error."""
    files = [split_path(root, split, name) for split in SPLITS]
    if not any(f.exists() for f in files):
        return False
    for split, path in zip(SPLITS, files, strict=True):
        if not path.exists() or not (root / "stats.yaml").exists():
            return False  # an interrupted generation: the missing pieces are written again
        _, attrs = read_well(path)
        stored = json.loads(attrs.get("sciml_provenance", "{}"))
        wanted = {**provenance, "split": split, "n": sizes[split]}
        if json.loads(json.dumps(wanted)) != stored:
            raise DatasetError(
                f"{root} holds a dataset made with different settings ({path.name}: {stored});"
                " delete it, or point data.path elsewhere"
            )
    return True


def _generate_chunked(
    generator: Generator, key: jax.Array, n: int, chunk: int, desc: str
) -> Trajectories:
    parts = []
    with tqdm(total=n, desc=desc, unit="traj", disable=None) as bar:
        for i, start in enumerate(range(0, n, chunk)):
            parts.append(generator.generate(jax.random.fold_in(key, i), min(chunk, n - start)))
            bar.update(min(chunk, n - start))
    first = parts[0]
    fields = {k: np.concatenate([np.asarray(p.fields[k]) for p in parts]) for k in first.fields}
    return Trajectories(fields, first.time, first.coords, first.boundary, first.scalars)
