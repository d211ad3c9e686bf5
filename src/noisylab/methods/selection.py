"""DivideMix's sample selection: a two-component Gaussian mixture on per-sample losses."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture


def normalise_losses(losses: np.ndarray) -> np.ndarray:
    """Min-max normalisation to [0, 1] (all zeros when every loss is the same), as DivideMix does."""
    x = np.asarray(losses, dtype=np.float64)
    span = x.max() - x.min() if x.size else 0.0
    return (x - x.min()) / span if span > 0 else np.zeros_like(x)


def clean_probability(losses: np.ndarray, max_iter: int = 10, tol: float = 1e-2, reg_covar: float = 5e-4,
                      seed: int = 0, normalise: bool = True) -> np.ndarray:
    """Posterior probability that each sample belongs to the low-loss ("clean") component.

    Losses are min-max normalised first (as DivideMix does), so the regularised covariance means the
    same for every loss scale; `normalise=False` fits them as given (DivideMix's average of the last
    epochs' normalised losses, `LossHistory`). The settings are DivideMix's: few EM steps and a loose
    tolerance are enough for a 1-D two-component fit and keep it cheap at 50k+ samples.
    """
    x = np.asarray(losses, dtype=np.float64).reshape(-1, 1)
    if normalise:
        x = normalise_losses(x)
    gmm = GaussianMixture(n_components=2, max_iter=max_iter, tol=tol, reg_covar=reg_covar, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter=10 is the method's setting, not a failure
        gmm.fit(x)
    clean = int(np.argmin(gmm.means_.ravel()))
    return gmm.predict_proba(x)[:, clean]


def selection_report(selected: np.ndarray, is_clean: np.ndarray | None, losses: np.ndarray) -> dict[str, float]:
    """Size of the selected set and, where the true labels are known, its precision and recall against
    the truly clean samples; `loss_threshold` is the largest loss still selected (the GMM's cut)."""
    report = {"selected_fraction": float(selected.mean()) if len(selected) else 0.0,
              "loss_threshold": float(losses[selected].max()) if selected.any() else float("nan")}
    if is_clean is not None:
        hits = float((selected & is_clean).sum())
        report["precision"] = hits / max(int(selected.sum()), 1)
        report["recall"] = hits / max(int(is_clean.sum()), 1)
    return report


class LossHistory:
    """The last `length` epochs' min-max normalised per-sample losses of one network; `add` returns their
    mean, the input of the GMM (DivideMix averages the last 5 epochs at 90% noise; `length=1` is the
    current epoch's normalised losses alone).

    Rows are indexed by sample index (`num_samples` of them); samples outside `index` keep 0. The state is
    a plain tensor (`state`), so a checkpoint can hold it and a resumed run fits the same GMM.
    """

    def __init__(self, length: int, num_samples: int) -> None:
        if length < 1:
            raise ValueError(f"method.loss_history must be >= 1, got {length}")
        self.length = int(length)
        self.num_samples = int(num_samples)
        self.rows = torch.zeros(0, self.num_samples)

    def add(self, index: np.ndarray, losses: np.ndarray) -> np.ndarray:
        """Record this epoch's losses of the samples `index`; the mean over the kept epochs, at `index`."""
        row = torch.zeros(1, self.num_samples)
        row[0, torch.as_tensor(index)] = torch.from_numpy(normalise_losses(losses)).float()
        self.rows = torch.cat([self.rows, row])[-self.length:]
        return self.rows[:, torch.as_tensor(index)].double().mean(0).numpy()

    @property
    def state(self) -> torch.Tensor:
        return self.rows.clone()

    def load(self, rows: torch.Tensor) -> None:
        rows = torch.as_tensor(rows, dtype=torch.float32).cpu()
        if rows.ndim != 2 or rows.shape[1] != self.num_samples:
            raise ValueError(f"the checkpoint's loss history has shape {tuple(rows.shape)}, this run has "
                             f"{self.num_samples} training samples")
        self.rows = rows[-self.length:].clone()
