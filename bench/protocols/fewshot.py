r"""The few-shot protocol: N-way K-shot classification on frozen global features, over fixed folds.

Definition (also in docs/protocols.md, with how it differs from Point-BERT / Point-MAE):

1. **folds** (:mod:`~ssl3d.bench.protocols.fewshot_folds`): ``folds`` files, each
   ``way`` classes, ``shot`` support shapes per class from the train split and
   ``queries`` query shapes per class from the test split (Point-BERT's setting:
   10 folds, 20 queries; way 5 or 10, shot 10 or 20), drawn deterministically
   from the split contents and stored with a checksum under the data root, so
   every method is scored on the same shapes;
2. **features** ``f = method.embed(x, modality)`` of every support and query
   shape (eval mode, no augmentation);
3. **classifiers**, fitted per fold on its support shapes only:

   * ``svm``: the ``svm`` protocol's classifier (:class:`~ssl3d.bench.protocols.svm.SVMConfig`,
     nested as ``fewshot.svm.*``: linear by default, features standardised on the support set,
     C chosen from ``c_grid`` by stratified CV on the support set, ``folds`` reduced to ``shot``
     when fewer; seeded by the run seed and the fold);
   * ``ncm``: nearest class mean after centring on the support mean and L2
     normalisation (SimpleShot's CL2N, Wang et al. 2019, Sec. 3), Euclidean distance;
   * ``finetune`` (only with ``finetune_epochs > 0``): a copy of the encoder and a
     linear head fine-tuned on the support shapes for a fixed number of epochs
     (:mod:`~ssl3d.bench.protocols.fewshot_finetune`);

4. **metrics**: per fold, accuracy on its ``way * queries`` query shapes; the
   run reports the mean over folds (``svm_acc``, ``ncm_acc``), their standard
   deviation over folds (``*_std``, ddof 1) and the half-width of the Student-t
   95% confidence interval of the mean over folds (``*_ci95``). The leaderboard
   then averages runs over seeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssl3d.bench.features import extract_features
from ssl3d.bench.protocols.base import EvalContext, Protocol, ProtocolResult, register_protocol
from ssl3d.bench.protocols.fewshot_finetune import finetune_fold
from ssl3d.bench.protocols.fewshot_folds import eligible_classes, load_or_make_fold, split_digest
from ssl3d.bench.features.splits import SplitView, stream_seed
from ssl3d.bench.protocols.svm import SVMConfig, fit_svm
from ssl3d.core.config import ConfigError
from ssl3d.core.stats import ci95_halfwidth

__all__ = ["FewShotConfig", "FewShotProtocol", "ncm_predict"]


@dataclass(frozen=True)
class FewShotConfig:
    """Few-shot protocol settings (``--set fewshot.KEY=VALUE``)."""

    way: int = field(default=5, metadata={"range": "[2, inf)"})  # N classes per fold (Point-BERT: 5 or 10)
    shot: int = field(default=10, metadata={"range": "[1, inf)"})  # K support shapes per class, from the train split (Point-BERT: 10 or 20)
    queries: int = field(default=20, metadata={"range": "[1, inf)"})  # query shapes per class, from the test split (Point-BERT: 20)
    folds: int = field(default=10, metadata={"range": "[1, inf)"})  # folds (fold files 0..folds-1; Point-BERT: 10)
    svm: SVMConfig = field(default_factory=SVMConfig)  # the svm classifier, fitted on each fold's support set (its CV folds at most `shot`; label_fraction must stay 1: the support set is the labelled set)
    finetune_epochs: int = field(default=0, metadata={"range": "[0, inf)"})  # > 0: also fine-tune encoder + linear head on each fold's support shapes for this many epochs, fixed in advance (finetune_acc); 0 = off
    finetune_lr: float = field(default=5e-4, metadata={"range": "(0, inf)"})  # fine-tuned head: AdamW learning rate, cosine schedule


def ncm_predict(support: np.ndarray, support_labels: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Nearest class mean, CL2N: centre on the support mean, L2-normalise, nearest centroid (Euclidean)."""
    support, query = np.asarray(support, dtype=np.float64), np.asarray(query, dtype=np.float64)
    centre = support.mean(axis=0)

    def cl2n(x: np.ndarray) -> np.ndarray:
        x = x - centre
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    classes = np.unique(support_labels)
    s = cl2n(support)
    means = np.stack([s[support_labels == c].mean(axis=0) for c in classes])
    q = cl2n(query)
    dist = (q * q).sum(1)[:, None] + (means * means).sum(1)[None, :] - 2.0 * q @ means.T
    return classes[np.argmin(dist, axis=1)]  # ties: the smaller class id


def _summary(values: list[float]) -> tuple[float, float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else float("nan"), ci95_halfwidth(arr)


@register_protocol("fewshot")
class FewShotProtocol(Protocol):
    """N-way K-shot classification on frozen features over checksummed fold files (see module docstring)."""

    name = "fewshot"
    Config = FewShotConfig
    needs = "embed"

    def __init__(self, config: FewShotConfig | None = None) -> None:
        super().__init__(config)
        if self.config.svm.label_fraction != 1.0:
            raise ConfigError(f"--set fewshot.svm.label_fraction={self.config.svm.label_fraction}: the few-shot "
                              "support set is the labelled set; leave it at 1 (fewshot.shot sets how many labels)")

    def check_data(self, train_data, test_data) -> None:
        """Before any pretraining: the indexed splits hold enough classes for this setting (the cache may later
        skip a damaged shape, which the fold drawing then reports the same way)."""
        cfg: FewShotConfig = self.config
        labels = [np.array([s.label for s in data.shapes], dtype=np.int64) for data in (train_data, test_data)]
        eligible_classes(train_data.name, len(train_data.class_names), *labels, cfg.way, cfg.shot, cfg.queries)

    def folds(self, train_data, test_data, root: Path | None = None) -> tuple[list[dict], list[dict[str, str]], str]:
        """The fold files of this setting for these splits (created when missing); (folds, file records, digest)."""
        cfg: FewShotConfig = self.config
        class_names = list(train_data.class_names)
        train_labels, test_labels = np.asarray(train_data.labels), np.asarray(test_data.labels)
        digest = split_digest(class_names, [(train_data.shape_name(i), c) for i, c in enumerate(train_labels)],
                              [(test_data.shape_name(i), c) for i, c in enumerate(test_labels)])
        root = Path(root) if root is not None else Path(train_data.root)
        folds, records = [], []
        for f in range(cfg.folds):
            fold, path, status = load_or_make_fold(root, train_data.name, digest, class_names, train_labels,
                                                   test_labels, cfg.way, cfg.shot, cfg.queries, f)
            folds.append(fold)
            records.append({"file": str(path.relative_to(root)), "status": status})
        return folds, records, digest

    def evaluate(self, method, train_data, test_data, modality: str, ctx: EvalContext) -> ProtocolResult:
        cfg: FewShotConfig = self.config
        folds, records, digest = self.folds(train_data, test_data)
        # only the shapes some fold uses are embedded
        train_used = np.unique(np.concatenate([np.ravel(f["support"]) for f in folds])).astype(np.int64)
        test_used = np.unique(np.concatenate([np.ravel(f["query"]) for f in folds])).astype(np.int64)
        kw = {"batch_size": ctx.batch_size, "progress": ctx.progress}
        x_train, _ = extract_features(method, SplitView(train_data, train_used, "support"), modality,
                                      desc=f"embed support ({modality})", **kw)
        x_test, _ = extract_features(method, SplitView(test_data, test_used, "query"), modality,
                                     desc=f"embed queries ({modality})", **kw)
        row_train = {int(i): r for r, i in enumerate(train_used)}
        row_test = {int(i): r for r, i in enumerate(test_used)}
        svm_cfg = cfg.svm
        accs: dict[str, list[float]] = {"svm": [], "ncm": []} | ({"finetune": []} if cfg.finetune_epochs else {})
        chosen_c = []
        for f, fold in enumerate(folds):
            ys = np.repeat(np.arange(cfg.way), cfg.shot)  # fold-local labels: position of the class in the fold
            yq = np.repeat(np.arange(cfg.way), cfg.queries)
            xs = x_train[[row_train[i] for per_class in fold["support"] for i in per_class]]
            xq = x_test[[row_test[i] for per_class in fold["query"] for i in per_class]]
            # fit_svm cuts the CV folds to the shots per class and skips CV below 2 (then C = the grid's smallest)
            model, info = fit_svm(xs, ys, svm_cfg, stream_seed(ctx.seed, f))
            svm_pred = model.predict(xq)
            chosen_c.append(info["chosen_C"])
            accs["svm"].append(100.0 * float(np.mean(svm_pred == yq)))
            accs["ncm"].append(100.0 * float(np.mean(ncm_predict(xs, ys, xq) == yq)))
            if cfg.finetune_epochs:
                accs["finetune"].append(finetune_fold(method, train_data, test_data, fold, modality,
                                                      epochs=cfg.finetune_epochs, lr=cfg.finetune_lr, seed=ctx.seed,
                                                      fold_index=f, device=torch.device(ctx.device)))
        metrics: dict[str, float] = {}
        for name, values in accs.items():
            mean, std, ci = _summary(values)
            metrics[f"{name}_acc"] = mean
            if len(values) > 1:  # a spread over one fold is undefined
                metrics.update({f"{name}_acc_std": std, f"{name}_acc_ci95": ci})
        details: dict[str, Any] = {
            "way": cfg.way, "shot": cfg.shot, "queries": cfg.queries, "folds": cfg.folds, "split_sha256": digest,
            "fold_files": records, "svm_acc_by_fold": [round(v, 4) for v in accs["svm"]],
            "ncm_acc_by_fold": [round(v, 4) for v in accs["ncm"]], "svm_chosen_C_by_fold": chosen_c,
            "finetune_acc_by_fold": [round(v, 4) for v in accs.get("finetune", [])],
            "feature_dim": int(x_train.shape[1]), "n_support_shapes": int(len(train_used)),
            "n_query_shapes": int(len(test_used)),
        }
        return ProtocolResult(metrics, details)
