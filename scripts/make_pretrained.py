"""Train the quickstart and export its best checkpoint into the package as a shipped checkpoint.

Usage: python scripts/make_pretrained.py [config] [overrides...]
Writes sciml/checkpoints/burgers1d_fno_quickstart (parameters only, ~2 MB).
"""

import shutil
import sys
from pathlib import Path

from sciml import config, pretrained
from sciml.experiment import train

NAME = "burgers1d_fno_quickstart"


def main() -> None:
    args = sys.argv[1:] or ["configs/quickstart.yaml"]
    cfg = config.load(args[0], args[1:])
    run_dir = train(cfg)
    destination = pretrained.SHIPPED / NAME
    shutil.rmtree(destination, ignore_errors=True)
    pretrained.export(run_dir, destination)
    size = sum(f.stat().st_size for f in Path(destination).rglob("*") if f.is_file())
    print(f"exported {run_dir} to {destination} ({size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
