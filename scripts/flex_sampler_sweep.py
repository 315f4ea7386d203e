"""DDIM settings of the shipped FLEX super-resolution checkpoint, measured on fresh flows.

Inference only (no training): for each `ddim` setting (eta, t_min, denoise_last) and step count,
draws `--members` members per snapshot of `--trajectories` fresh trajectories per viscosity and
prints one JSON table: RFNE of one draw and of the ensemble mean, the band spectrum error above the
coarse cut-off (member 0, as `ensemble_metrics`, and its mean over members), spread/skill, pull
std and CRPS, next to bicubic; plus the band spectrum error of the energy spectra (shell ratios
per wavenumber) and the same error between two independent truth sets of the same size at the
same viscosity (the metric's sampling noise, the tolerance for "matches the spectrum").

"calibrated": 2 calls ending noisy (eta 1) at a t_min chosen per training viscosity, on fresh
trajectories, as the one whose ensembles have spread/skill closest to 1 ("spread") or whose draws
have the truth's band spectrum ("spectrum") (`calibrate_noisy_end`), interpolated linearly in
log(nu) to the evaluated viscosity (`noisy_end_options`); the evaluated viscosities (default the
held-out one) are never used to choose it. Every draw is projected onto the modes the solver
keeps (`residual_model`, band-limited) except in the row marked "not band-limited".

Usage: python scripts/flex_sampler_sweep.py [--trajectories 8] [--members 8] [--quick]
    [--viscosities NU ...]
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np

from sciml import pretrained
from sciml.diffusion.evaluation import deterministic_metrics, ensemble_metrics, spectrum_error
from sciml.diffusion.superres import (
    calibrate_noisy_end,
    conditioning,
    generate_vorticity,
    noisy_end_options,
    residual_model,
    sample_superres,
    task_from_metadata,
)
from sciml.fields import energy_spectrum

# (label, n_steps, ddim options)
SETTINGS = [
    ("ddim", 2, {}),
    ("noisy end t_min=0.15 eta=1", 2, {"eta": 1.0, "t_min": 0.15, "denoise_last": False}),
    ("ddim", 16, {}),
    ("noisy end t_min=0.15 eta=1", 16, {"eta": 1.0, "t_min": 0.15, "denoise_last": False}),
]
CRITERIA = ("spread", "spectrum")


def truth_noise(key, task, nu, scale, trajectories, band, draws=200):
    """Band spectrum errors between disjoint random sets of `trajectories` fresh trajectories."""
    w = generate_vorticity(key, task, nu, 4 * trajectories) / scale
    w = w.reshape(4 * trajectories, -1, *w.shape[1:])
    rng = np.random.default_rng(0)
    errors = []
    for _ in range(draws):
        p = rng.permutation(len(w))
        a = w[p[:trajectories]].reshape(-1, *w.shape[2:])
        b = w[p[trajectories : 2 * trajectories]].reshape(-1, *w.shape[2:])
        errors.append(spectrum_error(a, b, **band)["rel"])
    errors = np.asarray(errors)
    return {
        "mean": float(errors.mean()),
        "median": float(np.median(errors)),
        "p90": float(np.percentile(errors, 90)),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="flex_superres_kolmogorov")
    parser.add_argument("--viscosities", type=float, nargs="+", help="default: the held-out")
    parser.add_argument("--trajectories", type=int, default=8)
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="2-step settings only")
    parser.add_argument(
        "--calibration-trajectories", type=int, default=2, help="per training viscosity"
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    model, params, meta = pretrained.load(args.checkpoint)
    task = task_from_metadata(meta)
    scale = float(meta["data"]["std"][0])
    band = task.band
    residual = residual_model(task)
    key = jax.random.key(args.seed)
    out: dict = {"band": band, "members": args.members, "trajectories": args.trajectories}
    levels, out["calibration"] = {}, {}
    for criterion in CRITERIA:
        levels[criterion], scores = calibrate_noisy_end(
            model,
            params,
            task,
            scale,
            jax.random.fold_in(key, 1000),
            trajectories=args.calibration_trajectories,
            n_members=args.members,
            criterion=criterion,
        )
        out["calibration"][criterion] = {
            f"nu={nu:g}": {"t_min": levels[criterion][nu], "scores": scores[nu]} for nu in scores
        }
    print("calibration", json.dumps(out["calibration"]), flush=True)
    unprojected = residual_model(task, band_limited=False)
    for i, nu in enumerate(args.viscosities or task.test_viscosities):
        k_data, k_noise, k_sample = jax.random.split(jax.random.fold_in(key, i), 3)
        x = generate_vorticity(k_data, task, nu, args.trajectories) / scale
        cond = conditioning(x, np.full((len(x),), nu), task)
        base = residual.base_fn(cond)
        _, e_truth = energy_spectrum(x, 2)
        shells = slice(band["k_min"] + 1, band["k_max"] + 1)

        def ratios(field, e_truth=e_truth, shells=shells):
            return np.round(energy_spectrum(np.asarray(field), 2)[1][shells] / e_truth[shells], 3)

        row = {
            "truth_vs_truth": truth_noise(k_noise, task, nu, scale, args.trajectories, band),
            "bicubic": deterministic_metrics(base, x, **band) | {"ratios": ratios(base).tolist()},
        }
        print(
            f"nu={nu:g}", json.dumps({k: row[k] for k in ("truth_vs_truth", "bicubic")}), flush=True
        )
        rows = [(*setting, residual) for setting in SETTINGS]
        for criterion in CRITERIA:
            options = noisy_end_options(levels[criterion], nu)
            label = f"calibrated ({criterion}) noisy end t_min={options['t_min']:.3f} eta=1"
            rows.append((label, 2, options, residual))
            if criterion == "spread":
                rows.append((f"{label}, not band-limited", 2, options, unprojected))
        for label, n_steps, options, sampled_residual in rows:
            if args.quick and n_steps != 2:
                continue
            start = time.perf_counter()
            samples = sample_superres(
                model,
                params,
                cond,
                k_sample,
                residual=sampled_residual,
                n_steps=n_steps,
                n_members=args.members,
                ddim_options=options,
            )
            metrics = ensemble_metrics(samples, x, **band)
            members = [spectrum_error(s, x, **band)["rel"] for s in samples]
            keep = ("rfne", "mean_rfne", "spectrum_rel", "spread_skill", "pull_std", "crps")
            row[f"{label}, {n_steps} steps"] = {k: metrics[k] for k in keep} | {
                "spectrum_rel_members": float(np.mean(members)),
                "ratios": ratios(samples[0]).tolist(),
                "seconds": time.perf_counter() - start,
            }
            print(label, n_steps, json.dumps(row[f"{label}, {n_steps} steps"]), flush=True)
        out[f"nu={nu:g}"] = row
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
