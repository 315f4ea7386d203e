"""The `sciml` command: generate, train, evaluate, sample, pretrained.

Every error a user can cause is printed as one line on stderr with a non-zero exit.
"""

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from sciml.errors import SciMLError

EXIT_USER_ERROR = 2


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    # orbax's event-loop thread reports an aborted read of a corrupt checkpoint as an "exception
    # ignored" after we have raised a clear error; keep it out of the user's one-line message.
    sys.unraisablehook = lambda info: logging.getLogger("sciml").debug(
        "ignored: %s", info.exc_value
    )
    try:
        return args.func(args) or 0
    except SciMLError as err:
        print(f"sciml {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(
            f"sciml {args.command}: interrupted; run the same command again to resume",
            file=sys.stderr,
        )
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sciml", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument("config", help="YAML experiment config, e.g. configs/quickstart.yaml")
        p.add_argument("overrides", nargs="*", help="dotted overrides such as train.steps=200")

    p = sub.add_parser(
        "generate", help="generate the dataset of a config (Well-schema HDF5 + stats)"
    )
    with_config(p)
    p.set_defaults(func=_generate)

    p = sub.add_parser("train", help="generate data if needed, train (resuming), evaluate, report")
    with_config(p)
    p.set_defaults(func=_train)

    p = sub.add_parser(
        "evaluate", help="evaluate a run directory or checkpoint; writes report.json + PNGs"
    )
    p.add_argument("checkpoint", help="run directory, checkpoint directory, or shipped name")
    p.add_argument("--split", default="test", choices=("train", "valid", "test"))
    p.add_argument(
        "--data", help="dataset directory to evaluate on (default: the one it was trained on)"
    )
    p.add_argument(
        "--out", help="directory for report.json and figures (default: the run directory)"
    )
    p.set_defaults(func=_evaluate)

    p = sub.add_parser(
        "sample",
        help="operators: run on dataset inputs and save the outputs (.npz); diffusion models:"
        " draw ensembles on fresh data of their task (super-resolution or forecasting),"
        " score and plot them",
    )
    p.add_argument(
        "checkpoint",
        help="run directory, checkpoint directory, shipped name, or a constrained-sampling config"
        " (configs/eci_*.yaml)",
    )
    p.add_argument("overrides", nargs="*", help="config overrides such as sampler.n_steps=100")
    p.add_argument("--n", type=int, default=8, help="inputs (operators) or trajectories")
    p.add_argument("--split", default="test", choices=("train", "valid", "test"))
    p.add_argument("--data", help="dataset directory (default: the one it was trained on)")
    p.add_argument(
        "--out",
        help="output .npz file (operators, default samples.npz) or directory (diffusion,"
        " default samples/)",
    )
    p.add_argument("--members", type=int, default=8, help="diffusion: ensemble members")
    p.add_argument("--steps", type=int, default=2, help="diffusion: sampling steps")
    add_ddim_arguments(p)
    p.add_argument(
        "--calibrated",
        action="store_true",
        help="diffusion, super-resolution, 2 steps: end noisy (eta 1) at the t_min chosen by"
        " --criterion on fresh flows of the training viscosities, interpolated to --viscosity"
        " (replaces --eta, --t-min, --noisy-end)",
    )
    p.add_argument(
        "--criterion",
        choices=["spread", "spectrum"],
        help="with --calibrated: spread/skill 1 (spread, the default) or the truth's energy"
        " spectrum above the coarse cut-off (spectrum)",
    )
    p.add_argument("--viscosity", type=float, help="diffusion: default the held-out one")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_sample)

    p = sub.add_parser("pretrained", help="list or show checkpoints shipped with sciml")
    p.add_argument("action", choices=("list", "show"))
    p.add_argument("name", nargs="?")
    p.set_defaults(func=_pretrained)
    return parser


def _generate(args) -> None:
    from sciml import config
    from sciml.experiment import prepare_data

    raw = config.read_yaml(args.config)
    if raw.get("task") == "neurde":  # the teacher trajectory that `train` then reuses
        from sciml.pde.lbm import generate_neurde_teacher

        path, generated = generate_neurde_teacher(_neurde_config(raw, args.overrides))
        print(f"teacher {'written to' if generated else 'already at'} {path}")
        return
    cfg = config.load(args.config, args.overrides)
    print(f"dataset ready at {prepare_data(cfg)}")


def _train(args) -> None:
    from sciml import config

    raw = config.read_yaml(args.config)
    if raw.get("task") == "neurde":  # a solver-in-the-loop experiment, not an operator one
        from sciml.pde.lbm import train_neurde

        cfg = _neurde_config(raw, args.overrides)
        report = train_neurde(cfg)
        print(f"{report['name']}: {json.dumps(report['evaluation'])}; report in {cfg['run_dir']}")
        return
    from sciml.experiment import train

    run_dir = train(config.load(args.config, args.overrides))
    report = json.loads((run_dir / "report.json").read_text())
    print(_summary(report, run_dir))


def _neurde_config(raw: dict, overrides: list[str]) -> dict:
    from sciml import config

    return config.apply_overrides({k: v for k, v in raw.items() if k != "task"}, overrides)


def _evaluate(args) -> None:
    from sciml.experiment import write_report

    out = Path(args.out or args.checkpoint)
    if not args.out and not Path(args.checkpoint).is_dir():
        raise SciMLError("--out is required when evaluating a shipped checkpoint by name")
    report = write_report(out, split=args.split, checkpoint=args.checkpoint, data_root=args.data)
    print(_summary(report, out))


def add_ddim_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the DDIM sampler options --eta, --t-min and --noisy-end (read by `ddim_options`)."""
    parser.add_argument(
        "--eta", type=float, default=0.0, help="diffusion: DDIM stochasticity (0: deterministic)"
    )
    parser.add_argument(
        "--t-min", type=float, default=0.0, help="diffusion: end of the DDIM time grid (0..1)"
    )
    parser.add_argument(
        "--noisy-end",
        action="store_true",
        help="diffusion: return the noisy sample at --t-min (> 0) rescaled by 1/alpha, not the"
        " last denoised estimate (adds ensemble spread and small-scale energy)",
    )


def ddim_options(args: argparse.Namespace) -> dict[str, Any]:
    """The `ddim` keywords of parsed `add_ddim_arguments` options, validated."""
    if args.eta < 0 or not 0 <= args.t_min < 1 or (args.noisy_end and args.t_min == 0):
        raise SciMLError("--eta must be >= 0 and --t-min in [0, 1), > 0 with --noisy-end")
    return {"eta": args.eta, "t_min": args.t_min, "denoise_last": not args.noisy_end}


def _sample(args) -> None:
    import numpy as np

    from sciml import pretrained

    if args.checkpoint.endswith((".yaml", ".yml")):
        return _sample_constrained(args)
    if args.overrides:
        raise SciMLError(f"overrides {args.overrides} apply to sampling configs, not checkpoints")
    if pretrained.show(args.checkpoint)["model"]["type"].startswith("sciml.diffusion."):
        return _sample_ensembles(args)
    from sciml.experiment import predict_split

    inputs, outputs, targets = predict_split(args.checkpoint, args.split, args.n, args.data)
    out = Path(args.out or "samples.npz")
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez(tmp, inputs=inputs, outputs=outputs, targets=targets)
    tmp.replace(out)
    print(f"wrote {len(outputs)} outputs of shape {outputs.shape[1:]} to {out}")


def _sample_ensembles(args) -> None:
    import jax

    from sciml import pretrained
    from sciml.diffusion import forecast, superres
    from sciml.diffusion.kolmogorov import task_kind

    if args.members < 2 or args.steps < 1 or args.n < 1:
        raise SciMLError("--members must be >= 2, --steps and --n >= 1")
    options = ddim_options(args)
    if args.calibrated and (args.eta or args.t_min or args.noisy_end or args.steps != 2):
        raise SciMLError("--calibrated sets eta, t-min and the noisy end for --steps 2: drop those")
    model, params, meta = pretrained.load(args.checkpoint)
    tasks = {"superres": superres.sample_report, "forecast": forecast.sample_report}
    kind = task_kind(meta)
    if kind not in tasks:
        raise SciMLError(f"cannot sample a {kind!r} task; sampling knows {sorted(tasks)}")
    if args.criterion and not args.calibrated:
        raise SciMLError("--criterion chooses how --calibrated calibrates: add --calibrated")
    calibrated = {}
    if args.calibrated:
        calibrated = {"calibrated": True, "criterion": args.criterion or "spread"}
    if calibrated and kind != "superres":
        raise SciMLError(f"--calibrated is for super-resolution checkpoints, this is {kind!r}")
    out = Path(args.out or "samples")
    try:
        report = tasks[kind](
            model,
            params,
            meta,
            out,
            jax.random.key(args.seed),
            n_trajectories=args.n,
            n_members=args.members,
            n_steps=args.steps,
            viscosity=args.viscosity,
            ddim_options=options,
            **calibrated,
        )
    except ValueError as err:
        raise SciMLError(str(err)) from None
    name = report["baseline"]
    ours, base = report["metrics"][f"flex_{args.steps}"], report["metrics"][name]
    print(
        f"{report['n_conditions']} conditions x {args.members} members at nu = {report['viscosity']:g}:"
        f" RFNE FLEX-{args.steps} {ours['rfne']:.4f} (ensemble mean {ours['mean_rfne']:.4f}) vs {name}"
        f" {base['rfne']:.4f}, CRPS {ours['crps']:.4f}, spread/skill {ours['spread_skill']:.2f},"
        f" band spectrum error {ours['spectrum_rel']:.3f} vs {base['spectrum_rel']:.3f};"
        f" samples, figures and report.json in {out}"
    )


def _sample_constrained(args) -> None:
    from sciml import config, pretrained
    from sciml.diffusion.constrained import ConstrainedSamplingConfig, sample_constrained

    raw = config.apply_overrides(config.read_yaml(args.checkpoint), args.overrides)
    if raw.pop("task", None) != "constrained_sampling":
        raise SciMLError(f"{args.checkpoint} is not a sampling config (task: constrained_sampling)")
    cfg = config.validate(ConstrainedSamplingConfig, raw, where=args.checkpoint)
    model, params, meta = pretrained.load(cfg.checkpoint)
    try:
        report = sample_constrained(model, params, meta, cfg)
    except ValueError as err:
        raise SciMLError(str(err)) from None
    lines = [
        f"{label}: MMSE {m['mmse']:.3g}, SMSE {m['smse']:.3g}, constraint error {m['ce']:.3g}"
        for label, m in report["metrics"].items()
    ]
    print(f"{cfg.name} ({cfg.n_samples} samples): " + "; ".join(lines) + f"; written to {cfg.out}")


def _pretrained(args) -> None:
    from sciml import pretrained

    if args.action == "list":
        names = pretrained.available()
        print("\n".join(names) if names else "no pretrained checkpoints shipped")
        return
    if not args.name:
        raise SciMLError("`sciml pretrained show` needs a name; see `sciml pretrained list`")
    meta = pretrained.show(args.name)
    print(
        json.dumps(
            {k: meta[k] for k in ("model", "data", "metrics", "step", "sciml_version")}, indent=2
        )
    )


def _summary(report: dict, run_dir: Path) -> str:
    m = report["metrics"]
    return (
        f"{report['name']}: {report['split']} relative L2 = {m['rel_l2']:.4f}, nRMSE = {m['nrmse']:.4f},"
        f" VRMSE = {m['vrmse']:.4f} over {report['n_samples']} samples; report: {run_dir / 'report.json'}"
    )


if __name__ == "__main__":
    sys.exit(main())
