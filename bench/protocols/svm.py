"""The SVM protocol: a support-vector classifier on frozen global features.

Definition (also in docs/protocols.md):

1. features ``f = method.embed(x, modality)`` for every train and test shape
   (eval mode, no augmentation, dataset order);
2. optional standardisation (zero mean, unit variance per dimension) fitted on
   training features only (inside each CV fold, then on the whole train split);
3. ``sklearn.svm.SVC`` with the chosen kernel (fitted on the explicitly computed
   kernel matrix, :class:`KernelSVC`: same solution, much faster); C picked from ``c_grid`` by
   stratified k-fold cross-validation on the *train split only* (accuracy;
   ties go to the smaller C), then refitted on the whole train split;
4. metrics on the test split: ``overall_acc`` = % correct, ``mean_class_acc``
   = mean over classes of per-class recall, in %.

The kernel ``rbf`` with ``gamma="auto"`` (= 1/D) is SwitchVAE's setting
(official code: ``SVC(kernel="rbf")`` on the latent means); ``linear`` with
``c_grid=(1.0,)`` and no standardisation is the fixed-C protocol of point
cloud pretext papers (OcCo). The seed controls the CV folds and the
``label_fraction`` subset (low-shot; ParAE's semi-supervised 20% / 50% /
100%), whose train-split positions are recorded in the result
(``protocol.details.labelled_indices``; None when every shape is labelled).
"""

from __future__ import annotations

import logging
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from ssl3d.bench.features import extract_features
from ssl3d.bench.protocols.base import EvalContext, Protocol, ProtocolResult, register_protocol
from ssl3d.bench.features.splits import class_balanced_subset  # noqa: F401  (also imported from here)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SVMConfig:
    """SVM protocol settings (``--set svm.KEY=VALUE``)."""

    kernel: Literal["linear", "rbf"] = "linear"  # SVC kernel
    c_grid: tuple[float, ...] = field(default=(0.01, 0.1, 1.0, 10.0, 100.0), metadata={"range": "(0, inf)"})  # candidate C values; one value = no CV
    folds: int = field(default=5, metadata={"range": "[2, inf)"})  # stratified CV folds on the train split (reduced when a class has fewer shapes)
    gamma: Literal["scale", "auto"] = "scale"  # rbf width; "auto" = 1/D, SwitchVAE's setting
    standardize: bool = True  # zero-mean/unit-variance features, fitted on train only
    label_fraction: float = field(default=1.0, metadata={"range": "(0, 1]"})  # fraction of train labels kept per class (low-shot); >= 1 shape per class
    max_iter: int = field(default=1_000_000, metadata={"range": "[1, inf)"})  # libsvm iterations per one-vs-one pair; a fit that reaches it is recorded as not converged


def accuracy_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """``overall_acc`` and ``mean_class_acc`` in % (classes present in y_true)."""
    classes = np.unique(y_true)
    per_class = [np.mean(y_pred[y_true == c] == c) for c in classes]
    return {"overall_acc": 100.0 * float(np.mean(y_pred == y_true)), "mean_class_acc": 100.0 * float(np.mean(per_class))}


class KernelSVC:
    """``SVC`` (optionally after ``StandardScaler``) fitted on an explicitly computed kernel matrix.

    The decision function is that of ``make_pipeline(StandardScaler(), SVC(kernel, C, gamma))``
    (same quadratic programme, same libsvm solver); computing the Gram matrix once with BLAS and
    handing it to libsvm as ``kernel="precomputed"`` avoids libsvm's per-pair kernel evaluations,
    which dominate the fit on high-dimensional features, and lets the CV share one Gram matrix
    across the whole C grid.

    Args:
        kernel: ``"linear"`` (:math:`z^\\top z'`) or ``"rbf"`` (:math:`\\exp(-\\gamma \\lVert z - z' \\rVert^2)`).
        gamma: rbf width, ``"scale"`` (:math:`1 / (D \\operatorname{Var}[z])`) or ``"auto"`` (:math:`1/D`),
            computed on the training features as scikit-learn does.
        standardize: zero-mean / unit-variance features, fitted on the training features.
    """

    def __init__(self, kernel: str = "linear", gamma: str = "scale", standardize: bool = True) -> None:
        self.kernel, self.gamma, self.standardize = kernel, gamma, standardize

    def prepare(self, x_train: np.ndarray) -> np.ndarray:
        """Fit the scaler and the rbf width on ``x_train``; returns the training Gram matrix."""
        x = np.asarray(x_train, dtype=np.float64)
        self.scaler_ = StandardScaler().fit(x) if self.standardize else None
        self.z_train_ = self._transform(x)
        variance = self.z_train_.var()
        dim = self.z_train_.shape[1]
        self.gamma_ = 1.0 / dim if self.gamma == "auto" else 1.0 / (dim * variance) if variance > 0 else 1.0
        return self._kernel(self.z_train_)

    def gram(self, x: np.ndarray) -> np.ndarray:
        """Kernel between the rows of ``x`` and the training features: ``[len(x), n_train]``."""
        return self._kernel(self._transform(np.asarray(x, dtype=np.float64)))

    def _kernel(self, z: np.ndarray) -> np.ndarray:
        dots = z @ self.z_train_.T
        if self.kernel == "linear":
            return dots
        sq = (z * z).sum(1)[:, None] + (self.z_train_ * self.z_train_).sum(1)[None, :] - 2.0 * dots
        return np.exp(-self.gamma_ * np.maximum(sq, 0.0))

    def fit(self, x_train: np.ndarray, y_train: np.ndarray, c: float, max_iter: int = -1) -> "KernelSVC":
        with warnings.catch_warnings():  # recorded in converged_ instead of printed
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.svc_ = fit_precomputed(self.prepare(x_train), y_train, c, max_iter)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        if not hasattr(self, "svc_"):
            raise RuntimeError("KernelSVC is not fitted: call fit(x_train, y_train, c) first")
        return self.svc_.predict(self.gram(x))

    def _transform(self, x: np.ndarray) -> np.ndarray:
        return self.scaler_.transform(x) if self.scaler_ is not None else x


def fit_precomputed(gram: np.ndarray, y: np.ndarray, c: float, max_iter: int) -> SVC:
    """``SVC(kernel="precomputed")``; ``converged_`` is False when a one-vs-one pair reached ``max_iter``.

    The cap matters on nearly inseparable features (untrained image encoders): there libsvm spends up to its
    own limit of 10^7 iterations on each of the 45 pairs at large C, half an hour per fit, for a C that the
    cross-validation then rejects. Fits that converge are unchanged by it. The caller silences libsvm's
    ConvergenceWarning (once, in its own thread: warning filters are process-wide state).
    """
    svc = SVC(kernel="precomputed", C=c, max_iter=max_iter).fit(gram, y)
    svc.converged_ = max_iter < 0 or bool(np.all(np.asarray(svc.n_iter_) < max_iter))
    return svc


def fit_svm(x_train: np.ndarray, y_train: np.ndarray, config: SVMConfig, seed: int) -> tuple[KernelSVC, dict]:
    """Select C by stratified CV on the training set and refit on all of it; returns (model, details)."""
    grid = sorted(config.c_grid)
    if not grid:
        raise ValueError("svm.c_grid is empty")
    folds = min(config.folds, int(np.bincount(y_train)[np.unique(y_train)].min()))  # every fold needs every class
    cv_scores: dict[str, float] = {}
    capped: dict[str, int] = {}  # C -> CV fits that reached max_iter
    if len(grid) > 1 and folds >= 2:
        accs: dict[float, list[float]] = {c: [] for c in grid}
        splits = list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(x_train, y_train))
        workers = max(1, min(torch.get_num_threads(), len(grid) * folds))
        # libsvm releases the GIL: the fits run on every thread torch may use (numbers unchanged: each fit is
        # deterministic and kept in fold order). Folds go `workers` at a time, which bounds the Gram matrices
        # held at once (each about (0.8 n)^2 float64 values), and each group starts with its largest C, the
        # slowest fits, so the threads finish together. The ConvergenceWarning filter is set once, here:
        # warning filters are process-wide state, and the fits' non-convergence is recorded in `capped`.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            pool = ThreadPoolExecutor(workers)
            try:
                for start in range(0, len(splits), workers):
                    group = splits[start:start + workers]
                    grams = []
                    for tr, va in group:  # the scaler is fitted on the training fold only; one Gram serves every C
                        fold = KernelSVC(config.kernel, config.gamma, config.standardize)
                        grams.append((fold.prepare(x_train[tr]), fold.gram(x_train[va])))
                    jobs = {(i, c): pool.submit(fit_precomputed, grams[i][0], y_train[tr], c, config.max_iter)
                            for c in reversed(grid) for i, (tr, _) in enumerate(group)}
                    for i, (_, va) in enumerate(group):
                        for c in grid:
                            svc = jobs[(i, c)].result()
                            accs[c].append(float(np.mean(svc.predict(grams[i][1]) == y_train[va])))
                            if not svc.converged_:
                                capped[repr(c)] = capped.get(repr(c), 0) + 1
            finally:  # a failed fit or an interrupt does not wait for the queued fits
                pool.shutdown(wait=True, cancel_futures=True)
        cv_scores = {repr(c): 100.0 * float(np.mean(accs[c])) for c in grid}
        best_c = max(grid, key=lambda c: (cv_scores[repr(c)], -c))  # ties -> smaller C
    else:
        best_c = grid[0]
    model = KernelSVC(config.kernel, config.gamma, config.standardize).fit(x_train, y_train, best_c, config.max_iter)
    if not model.svc_.converged_:
        log.warning("svm: the final fit (C=%s) reached svm.max_iter=%d iterations before converging", best_c,
                    config.max_iter)
    return model, {"chosen_C": best_c, "cv_acc_by_C": cv_scores, "cv_folds": folds if cv_scores else 0,
                   "cv_fits_at_max_iter": capped, "final_fit_converged": bool(model.svc_.converged_)}


@register_protocol("svm")
class SVMProtocol(Protocol):
    """Linear / RBF SVM classification on frozen global features (see module docstring)."""

    name = "svm"
    Config = SVMConfig

    def evaluate(self, method, train_data, test_data, modality: str, ctx: EvalContext) -> ProtocolResult:
        x_train, y_train = extract_features(method, train_data, modality, batch_size=ctx.batch_size,
                                            progress=ctx.progress, desc=f"embed train ({modality})")
        x_test, y_test = extract_features(method, test_data, modality, batch_size=ctx.batch_size,
                                          progress=ctx.progress, desc=f"embed test ({modality})")
        result = self.evaluate_features(x_train, y_train, x_test, y_test, ctx.seed)
        result.artifacts = {"test_embeddings": x_test, "test_labels": y_test,
                            "class_names": np.array(getattr(test_data, "class_names", ()))}
        return result

    def evaluate_features(self, x_train, y_train, x_test, y_test, seed: int) -> ProtocolResult:
        """The protocol on precomputed features (also used by tests)."""
        cfg = self.config
        rng = np.random.default_rng(seed)
        labelled = None  # None: every training shape is labelled
        if cfg.label_fraction < 1.0:
            keep = class_balanced_subset(y_train, cfg.label_fraction, rng)
            x_train, y_train = x_train[keep], y_train[keep]
            labelled = keep.tolist()  # positions in the train split, so the subset can be audited and redrawn
        model, details = fit_svm(x_train, y_train, cfg, seed)
        metrics = accuracy_metrics(y_test, model.predict(x_test))
        details.update(n_train=int(len(y_train)), n_test=int(len(y_test)), feature_dim=int(x_train.shape[1]),
                       kernel=cfg.kernel, label_fraction=cfg.label_fraction, labelled_indices=labelled)
        return ProtocolResult(metrics, details)
