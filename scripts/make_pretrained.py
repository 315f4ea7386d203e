"""Train the configs behind the shipped checkpoints and export them into the package.

Usage: python scripts/make_pretrained.py [NAME ...]   (default: all of `SHIPPED`)
Each NAME trains its config (resuming a finished run costs nothing) and writes
sciml/checkpoints/NAME (parameters and metadata only, a few MB).
"""

import shutil
import subprocess
import sys
from pathlib import Path

from sciml import config, pretrained
from sciml.experiment import train
from sciml.pde.lbm import train_neurde

# name: (config, overrides)
SHIPPED = {
    "burgers1d_fno_quickstart": ("configs/quickstart.yaml", []),
    # Multi-resolution training (README table): most samples coarse, a few at the finest grid.
    "burgers1d_fno_multires": (
        "configs/burgers1d.yaml",
        [
            "data.train_mix={256: 0.1, 128: 0.2, 64: 0.3, 32: 0.4}",
            "data.path=data/burgers1d_multires",
            "run_dir=runs/burgers1d_multires",
        ],
    ),
    "darcy2d_fno_multires": (
        "configs/darcy2d.yaml",
        [
            "data.generator.n_solve=253",
            "data.generator.resolution=64",
            "data.resolutions=[22]",
            "data.n_valid=50",
            "data.n_test=100",
            "data.path=data/darcy64",
            "data.train_mix={64: 0.3, 22: 0.7}",
            "model.modes=8",  # 4 MB of parameters; the 22-point grid holds 11 modes anyway
            "run_dir=runs/darcy2d_multires",
        ],
    ),
    "pme_dppl_fno": ("configs/probharde2e_pme.yaml", []),
    "neurde_sod2": ("configs/neurde_sod2.yaml", []),  # trained by sciml.pde.lbm.train_neurde
    # Scripts, not configs: the FFM prior of the ECI Stokes reproduction (48^2) and FLEX
    # super-resolution (tiny FLEX, 64^2 Kolmogorov flow).
    "ffm_stokes": ("scripts/eci_stokes.py", ["--run-dir", "runs/ffm_stokes_pretrained"]),
    "flex_superres_kolmogorov": (
        "scripts/flex_superres.py",
        ["--run-dir", "runs/flex_superres_pretrained"],
    ),
}


def main() -> None:
    for name in sys.argv[1:] or SHIPPED:
        path, overrides = SHIPPED[name]
        if path.endswith(".py"):
            subprocess.run([sys.executable, path, *overrides], check=True)
            run_dir = Path(overrides[overrides.index("--run-dir") + 1])
            _export(name, run_dir)
            continue
        raw = config.read_yaml(path)
        if raw.pop("task", None) == "neurde":
            cfg = config.apply_overrides(raw, overrides)
            train_neurde(cfg)
            run_dir = Path(cfg["run_dir"])
        else:
            run_dir = train(config.load(path, overrides))
        _export(name, run_dir)


def _export(name: str, run_dir: Path) -> None:
    destination = pretrained.SHIPPED / name
    shutil.rmtree(destination, ignore_errors=True)
    pretrained.export(run_dir, destination)
    size = sum(f.stat().st_size for f in Path(destination).rglob("*") if f.is_file())
    print(f"exported {run_dir} to {destination} ({size / 1e6:.1f} MB)", flush=True)


if __name__ == "__main__":
    main()
