"""The SVM protocol against a direct scikit-learn computation."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from ssl3d.bench.protocols.svm import KernelSVC, SVMConfig, SVMProtocol, accuracy_metrics, class_balanced_subset


def _blobs(seed: int, n_per_class: int, n_classes: int = 3, dim: int = 8, spread: float = 2.5):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1.0, size=(n_classes, dim))
    y = np.repeat(np.arange(n_classes), n_per_class)
    x = centres[y] + rng.normal(0, spread / np.sqrt(dim), size=(len(y), dim))
    return x.astype(np.float32), y


def test_accuracy_metrics_hand_example():
    y_true = np.array([0, 0, 0, 0, 1, 1])
    y_pred = np.array([0, 0, 0, 1, 1, 0])
    m = accuracy_metrics(y_true, y_pred)
    assert m["overall_acc"] == pytest.approx(100 * 4 / 6)
    assert m["mean_class_acc"] == pytest.approx(100 * (3 / 4 + 1 / 2) / 2)


def test_matches_sklearn_grid_search():
    x_train, y_train = _blobs(0, 30)
    x_test, y_test = _blobs(1, 15)
    cfg = SVMConfig(c_grid=(0.01, 0.1, 1.0, 10.0), folds=4)
    ours = SVMProtocol(cfg).evaluate_features(x_train, y_train, x_test, y_test, seed=3)

    # the same protocol written directly with scikit-learn's GridSearchCV
    pipe = make_pipeline(StandardScaler(), SVC(kernel="linear"))
    search = GridSearchCV(pipe, {"svc__C": [0.01, 0.1, 1.0, 10.0]},
                          cv=StratifiedKFold(4, shuffle=True, random_state=3), scoring="accuracy")
    search.fit(x_train, y_train)
    cv_means = dict(zip(search.cv_results_["param_svc__C"], search.cv_results_["mean_test_score"]))
    for c, acc in ours.details["cv_acc_by_C"].items():
        assert acc == pytest.approx(100 * cv_means[float(c)])
    best = max(sorted(cv_means), key=lambda c: (cv_means[c], -c))
    assert ours.details["chosen_C"] == best
    direct = make_pipeline(StandardScaler(), SVC(kernel="linear", C=best)).fit(x_train, y_train)
    assert ours.metrics["overall_acc"] == pytest.approx(100 * np.mean(direct.predict(x_test) == y_test))


@pytest.mark.parametrize("threads", [2, 3])
def test_cross_validation_on_threads_gives_the_one_thread_result(threads):
    # the CV fits run on torch's threads, a group of folds at a time: 3 threads over 4 folds leaves a short group
    x_train, y_train = _blobs(2, 30)
    x_test, y_test = _blobs(3, 15)
    x_train = x_train + np.random.default_rng(0).normal(scale=2.0, size=x_train.shape)  # overlapping classes
    cfg = SVMConfig(c_grid=(0.01, 0.1, 1.0, 10.0, 100.0), folds=4)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone = SVMProtocol(cfg).evaluate_features(x_train, y_train, x_test, y_test, seed=3)
        torch.set_num_threads(threads)
        pooled = SVMProtocol(cfg).evaluate_features(x_train, y_train, x_test, y_test, seed=3)
    finally:
        torch.set_num_threads(before)
    assert pooled.details == alone.details and pooled.metrics == alone.metrics
    assert len(set(alone.details["cv_acc_by_C"].values())) > 1  # the grid is not a tie everywhere


def test_a_failing_cv_fit_raises_and_leaves_the_warning_filters_as_they_were(monkeypatch):
    from ssl3d.bench.protocols import svm as svm_mod

    real = svm_mod.fit_precomputed

    def failing(gram, y, c, max_iter):
        if c == 10.0:
            raise MemoryError("libsvm ran out of memory")
        return real(gram, y, c, max_iter)

    monkeypatch.setattr(svm_mod, "fit_precomputed", failing)
    x_train, y_train = _blobs(0, 30)
    filters = list(warnings.filters)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with pytest.raises(MemoryError, match="libsvm"):
            svm_mod.fit_svm(x_train, y_train, SVMConfig(c_grid=(0.1, 10.0), folds=3), seed=0)
    finally:
        torch.set_num_threads(before)
    assert warnings.filters == filters


def test_fixed_c_rbf_auto_gamma_matches_plain_svc():
    x_train, y_train = _blobs(4, 20)
    x_test, y_test = _blobs(5, 10)
    cfg = SVMConfig(kernel="rbf", gamma="auto", c_grid=(1.0,), standardize=False)
    ours = SVMProtocol(cfg).evaluate_features(x_train, y_train, x_test, y_test, seed=0)
    direct = SVC(kernel="rbf", gamma=1.0 / x_train.shape[1], C=1.0).fit(x_train, y_train)
    assert ours.metrics["overall_acc"] == pytest.approx(100 * np.mean(direct.predict(x_test) == y_test))
    assert ours.details["cv_folds"] == 0 and ours.details["chosen_C"] == 1.0


def test_label_fraction_keeps_each_class():
    y = np.repeat(np.arange(4), 10)
    keep = class_balanced_subset(y, 0.2, np.random.default_rng(0))
    assert np.bincount(y[keep]).tolist() == [2, 2, 2, 2]
    assert np.array_equal(keep, class_balanced_subset(y, 0.2, np.random.default_rng(0)))
    assert np.bincount(y[class_balanced_subset(y, 0.01, np.random.default_rng(0))]).tolist() == [1, 1, 1, 1]
    with pytest.raises(ValueError, match="label_fraction"):
        class_balanced_subset(y, 0.0, np.random.default_rng(0))


def test_separable_features_score_perfectly_and_noise_scores_chance():
    x_train, y_train = _blobs(7, 20, spread=0.01)
    x_test, y_test = _blobs(7, 20, spread=0.01)
    assert SVMProtocol().evaluate_features(x_train, y_train, x_test, y_test, 0).metrics["overall_acc"] == 100.0
    rng = np.random.default_rng(0)
    noise = SVMProtocol().evaluate_features(rng.normal(size=(300, 8)), np.repeat(np.arange(3), 100),
                                            rng.normal(size=(300, 8)), np.repeat(np.arange(3), 100), 0)
    assert noise.metrics["overall_acc"] < 50


@pytest.mark.parametrize("gamma", ["scale", "auto"])
def test_rbf_grid_search_on_the_kernel_matrix_matches_sklearn(gamma):
    x_train, y_train = _blobs(6, 25, n_classes=4, dim=16)
    x_test, y_test = _blobs(7, 12, n_classes=4, dim=16)
    grid = (0.1, 1.0, 10.0)
    ours = SVMProtocol(SVMConfig(kernel="rbf", gamma=gamma, c_grid=grid, folds=3)).evaluate_features(
        x_train, y_train, x_test, y_test, seed=5)
    pipe = make_pipeline(StandardScaler(), SVC(kernel="rbf", gamma=gamma))
    search = GridSearchCV(pipe, {"svc__C": list(grid)}, cv=StratifiedKFold(3, shuffle=True, random_state=5),
                          scoring="accuracy").fit(x_train, y_train)
    for c, acc in zip(search.cv_results_["param_svc__C"], search.cv_results_["mean_test_score"]):
        assert ours.details["cv_acc_by_C"][repr(float(c))] == pytest.approx(100 * acc)
    direct = make_pipeline(StandardScaler(), SVC(kernel="rbf", gamma=gamma, C=ours.details["chosen_C"]))
    direct.fit(x_train, y_train)
    assert ours.metrics["overall_acc"] == pytest.approx(100 * np.mean(direct.predict(x_test) == y_test))


def test_unfitted_kernel_svc_says_so():
    with pytest.raises(RuntimeError, match="not fitted"):
        KernelSVC().predict(np.zeros((2, 3)))


def test_a_fit_that_reaches_max_iter_is_recorded_and_converged_fits_are_unchanged(caplog):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 6)), np.repeat(np.arange(3), 20)  # labels unrelated to the features
    capped = SVMProtocol(SVMConfig(max_iter=3)).evaluate_features(x, y, x[:9], y[:9], seed=0)
    assert set(capped.details["cv_fits_at_max_iter"]) == {"0.01", "0.1", "1.0", "10.0", "100.0"}
    assert capped.details["final_fit_converged"] is False
    assert "reached svm.max_iter=3 iterations" in caplog.text
    # a generous cap changes nothing: same choice of C and the same predictions as libsvm without a cap
    default = SVMProtocol(SVMConfig()).evaluate_features(x, y, x[:9], y[:9], seed=0)
    uncapped = SVMProtocol(SVMConfig(max_iter=10**9)).evaluate_features(x, y, x[:9], y[:9], seed=0)
    assert default.details["cv_fits_at_max_iter"] == {} and default.details["final_fit_converged"] is True
    assert default.metrics == uncapped.metrics and default.details["chosen_C"] == uncapped.details["chosen_C"]
