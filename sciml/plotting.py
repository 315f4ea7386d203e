"""PNG figures a person would rather look at than read: fields, errors, spectra, loss curves."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_prediction(
    path: str | Path,
    pred: np.ndarray,
    truth: np.ndarray,
    inputs: np.ndarray | None = None,
    title: str = "",
) -> None:
    """Prediction / truth / error of one sample, channel 0; shapes (*spatial, c), 1D or 2D."""
    pred, truth = np.asarray(pred)[..., 0], np.asarray(truth)[..., 0]
    if pred.ndim == 1:
        fig, (ax, ax_err) = plt.subplots(2, 1, figsize=(7, 5), sharex=True, height_ratios=(3, 1.2))
        x = np.arange(len(pred)) / len(pred)
        if inputs is not None:
            ax.plot(x, np.asarray(inputs)[..., 0], color="0.7", lw=1, label="input")
        ax.plot(x, truth, "k", lw=2, label="truth")
        ax.plot(x, pred, "C1--", lw=1.5, label="prediction")
        ax.legend(loc="best", fontsize=8)
        ax_err.plot(x, pred - truth, "C3", lw=1)
        ax_err.set_ylabel("error")
        ax_err.set_xlabel("x")
    elif pred.ndim == 2:
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
        lim = np.abs(truth).max()
        for ax, data, name in zip(
            axes, (pred, truth, pred - truth), ("prediction", "truth", "error"), strict=True
        ):
            im = ax.imshow(
                data.T,
                origin="lower",
                cmap="RdBu_r",
                vmin=-lim if name != "error" else None,
                vmax=lim if name != "error" else None,
            )
            ax.set_title(name)
            fig.colorbar(im, ax=ax, shrink=0.8)
    else:
        raise ValueError(f"plot_prediction draws 1D or 2D fields, got spatial shape {pred.shape}")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_spectra(
    path: str | Path, spectra: dict[str, tuple[np.ndarray, np.ndarray]], title: str = ""
) -> None:
    """Energy spectra E(k) on log-log axes, one line per entry of `spectra` (label -> (k, E))."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, (k, energy) in spectra.items():
        ax.loglog(k[1:], np.maximum(energy[1:], 1e-30), label=label)
    ax.set_xlabel("wavenumber k")
    ax.set_ylabel("E(k)")
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_training_curves(path: str | Path, records: list[dict]) -> None:
    """Training loss and validation relative L2 against step, from metrics.jsonl records."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, style in (("loss", "C0"), ("valid_rel_l2", "C1o-")):
        pts = [(r["step"], r[key]) for r in records if key in r]
        if pts:
            steps, values = zip(*pts, strict=True)
            ax.semilogy(steps, values, style, label=key, ms=3)
    ax.set_xlabel("step")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_resolution_sweep(
    path: str | Path, errors: dict[int, float], trained_at: int | None = None, title: str = ""
) -> None:
    """Relative L2 error against evaluation resolution (log-log), marking the training resolution."""
    fig, ax = plt.subplots(figsize=(6, 4))
    res = sorted(errors)
    ax.loglog(res, [errors[r] for r in res], "o-")
    if trained_at is not None:
        ax.axvline(trained_at, color="0.6", ls="--", label=f"native grid ({trained_at})")
        ax.legend()
    ax.set_xscale("log", base=2)
    ax.set_xlabel("evaluation resolution (points per axis)")
    ax.set_ylabel("relative L2")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_spectral_error_ratio(
    path: str | Path,
    ratios: dict[int, tuple[np.ndarray, np.ndarray]],
    train_nyquist: int | None = None,
    title: str = "",
) -> None:
    """Error-to-truth energy ratio per square shell (log scale), one line per evaluation grid."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for n in sorted(ratios):
        k, ratio = ratios[n]
        ax.semilogy(k[1:], np.maximum(ratio[1:], 1e-12), label=f"{n} points")
    if train_nyquist is not None:
        ax.axvline(train_nyquist, color="0.6", ls="--", label="training Nyquist")
    ax.set_xlabel("wavenumber k = max |k_i|")
    ax.set_ylabel("E_error(k) / E_truth(k)")
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_predictive_interval(
    path: str | Path,
    mean: np.ndarray,
    std: np.ndarray,
    truth: np.ndarray,
    inputs: np.ndarray | None = None,
    title: str = "",
    z: float = 1.6448536269514722,
) -> None:
    """A 1D predictive mean with its central interval ``mean +- z std`` (90% by default) and the truth.

    Args:
        mean, std, truth: one sample, shapes (n, c) or (n,); channel 0 is drawn.
        inputs: the model's input of the same sample (drawn in grey), or None.
        z: the standard normal quantile of the interval's upper end.
    """
    mean, std, truth = (np.asarray(a).reshape(np.shape(a)[0], -1)[:, 0] for a in (mean, std, truth))
    x = (np.arange(len(mean)) + 0.5) / len(mean)
    fig, (ax, ax_std) = plt.subplots(2, 1, figsize=(7, 5), sharex=True, height_ratios=(3, 1.2))
    if inputs is not None:
        ax.plot(
            x, np.asarray(inputs).reshape(len(mean), -1)[:, 0], color="0.7", lw=1, label="input"
        )
    coverage = np.mean(np.abs(truth - mean) <= z * std)
    ax.fill_between(
        x,
        mean - z * std,
        mean + z * std,
        color="C1",
        alpha=0.3,
        lw=0,
        label=f"interval ({coverage:.0%} of the truth inside)",
    )
    ax.plot(x, truth, "k", lw=2, label="truth")
    ax.plot(x, mean, "C1--", lw=1.5, label="predictive mean")
    ax.legend(loc="best", fontsize=8)
    ax_std.plot(x, np.abs(mean - truth), "C3", lw=1, label="|error|")
    ax_std.plot(x, std, "C0", lw=1, label="std")
    ax_std.set_yscale("log")
    ax_std.legend(loc="best", fontsize=8)
    ax_std.set_xlabel("x")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_ensemble(
    path: str | Path,
    members: np.ndarray,
    truth: np.ndarray,
    base: np.ndarray | None = None,
    title: str = "",
) -> None:
    """Truth, base (e.g. the interpolated coarse field), two members, the ensemble mean and the
    ensemble standard deviation of one 2D sample, channel 0; members (m, x, y, c), truth (x, y, c).
    """
    members, truth = np.asarray(members)[..., 0], np.asarray(truth)[..., 0]
    panels = {"truth": truth}
    if base is not None:
        panels["base"] = np.asarray(base)[..., 0]
    panels.update({f"member {i}": members[i] for i in range(min(2, len(members)))})
    panels["ensemble mean"] = members.mean(0)
    std = members.std(0, ddof=1) if len(members) > 1 else np.zeros_like(truth)
    lim = np.abs(truth).max()
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(3.2 * (len(panels) + 1), 3.4))
    for ax, (name, data) in zip(axes, panels.items(), strict=False):
        ax.imshow(data.T, origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(name)
        ax.set_axis_off()
    im = axes[-1].imshow(std.T, origin="lower", cmap="magma")
    axes[-1].set_title(f"ensemble std ({len(members)} members)")
    axes[-1].set_axis_off()
    fig.colorbar(im, ax=axes[-1], shrink=0.8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_pull_histogram(path: str | Path, pull: np.ndarray, title: str = "") -> None:
    """Histogram of pulls ``(ensemble mean - truth) / ensemble std`` against N(0, 1)."""
    pull = np.asarray(pull).ravel()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    edges = np.linspace(-6, 6, 121)
    ax.hist(np.clip(pull, -6, 6), bins=edges, density=True, color="C0", alpha=0.7, label="pull")
    ax.plot(edges, np.exp(-(edges**2) / 2) / np.sqrt(2 * np.pi), "k", label="N(0, 1)")
    ax.set_xlabel("(mean - truth) / std")
    ax.set_title(title or f"pull: mean {pull.mean():.2f}, std {pull.std():.2f}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_constrained_samples(
    path: str | Path, samples: np.ndarray, truth: np.ndarray, title: str = ""
) -> None:
    """Three samples, then the pixelwise mean and standard deviation of the samples above those
    of the ground truth; samples (n, *2D, c) and truth (m, *2D, c), channel 0, axes (t, x)."""
    samples, truth = np.asarray(samples)[..., 0], np.asarray(truth)[..., 0]
    lim = np.abs(truth).max()
    fig, axes = plt.subplots(2, 5, figsize=(16, 6.4))
    panels = [(f"sample {i}", samples[i], "RdBu_r") for i in range(3)]
    panels += [("sample mean", samples.mean(0), "RdBu_r"), ("sample std", samples.std(0), "magma")]
    panels += [(None, None, None)] * 3
    panels += [("truth mean", truth.mean(0), "RdBu_r"), ("truth std", truth.std(0), "magma")]
    std_max = max(samples.std(0).max(), truth.std(0).max())
    for ax, (name, data, cmap) in zip(axes.ravel(), panels, strict=True):
        if data is None:
            ax.set_axis_off()
            continue
        if cmap == "magma":
            im = ax.imshow(data.T, origin="lower", cmap=cmap, vmin=0, vmax=std_max, aspect="auto")
        else:
            im = ax.imshow(data.T, origin="lower", cmap=cmap, vmin=-lim, vmax=lim, aspect="auto")
        ax.set_title(name)
        ax.set_xlabel("t")
        fig.colorbar(im, ax=ax, shrink=0.8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
