"""Few-shot fold files: drawn once from the split contents, written as checksummed JSON, reused by every method.

A fold of an N-way K-shot task names N classes, K support shapes of each from
the train split and Q query shapes of each from the test split (Point-BERT's
few-shot setting: Q = 20). It is a pure function of

* the dataset name and the *content* of both splits (class names and every
  shape's name and label, hashed: :func:`split_digest`), and
* (N, K, Q, fold number),

through a seed derived by SHA-256 (:func:`fold_seed`) and numpy's PCG64
generator, whose streams are the same on every platform. So every method,
run and machine scores the same shapes, and the files can be compared by
their checksum.

File: ``<data root>/fewshot/<dataset>/<split digest[:12]>/<N>way-<K>shot-<Q>q/fold-<f>.json``,
sorted-key JSON holding the fold and ``sha256``, the SHA-256 of the canonical
serialisation (sorted keys, no spaces) of everything else. On read the
checksum, the fold's parameters and that every listed shape has its class's
label are verified; a file that fails is named in a warning, moved aside
(``<name>.corrupt-<time>``) and regenerated.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ssl3d.core.errors import UserError
from ssl3d.core.io import atomic_write_text, move_aside

__all__ = ["FOLD_FORMAT", "FewShotError", "eligible_classes", "fold_path", "fold_seed", "load_or_make_fold", "make_fold", "split_digest"]

log = logging.getLogger("ssl3d.fewshot")

FOLD_FORMAT = 1  # bump when the drawing rule changes: old files are then regenerated, not misread


class FewShotError(UserError, ValueError):
    """A few-shot setting the dataset cannot serve (too few classes or shapes); says what would fit."""


def _canonical(payload: Any) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("utf-8")


def split_digest(class_names: Sequence[str], train: Sequence[tuple[str, int]], test: Sequence[tuple[str, int]]) -> str:
    """SHA-256 of the class names and every (shape name, label) of the train and test splits, in order."""
    payload = {"classes": list(class_names), "train": [[str(n), int(c)] for n, c in train],
               "test": [[str(n), int(c)] for n, c in test]}
    return hashlib.sha256(_canonical(payload)).hexdigest()


def fold_seed(dataset: str, digest: str, way: int, shot: int, queries: int, fold: int) -> int:
    """The 64-bit seed of one fold: the first 8 bytes of SHA-256 over its defining values."""
    text = f"ssl3d-fewshot|v{FOLD_FORMAT}|{dataset}|{digest}|{way}|{shot}|{queries}|{fold}"
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


def eligible_classes(dataset: str, n_classes: int, train_labels: np.ndarray, test_labels: np.ndarray, way: int,
                     shot: int, queries: int) -> list[int]:
    """The classes with >= ``shot`` train and >= ``queries`` test shapes; FewShotError when fewer than ``way``."""
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    eligible = [c for c in range(n_classes) if np.sum(train_labels == c) >= shot and np.sum(test_labels == c) >= queries]
    if len(eligible) < way:
        raise FewShotError(
            f"{dataset}: {way}-way {shot}-shot with {queries} queries per class needs {way} classes with at least "
            f"{shot} train and {queries} test shapes; {len(eligible)} qualify (lower fewshot.way, fewshot.shot "
            "or fewshot.queries)")
    return eligible


def make_fold(dataset: str, digest: str, class_names: Sequence[str], train_labels: np.ndarray,
              test_labels: np.ndarray, way: int, shot: int, queries: int, fold: int) -> dict[str, Any]:
    """One fold (without its checksum): ``way`` classes among those with >= ``shot`` train and >= ``queries``
    test shapes, then ``shot`` support (train) and ``queries`` query (test) shapes of each, without replacement."""
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    eligible = eligible_classes(dataset, len(class_names), train_labels, test_labels, way, shot, queries)
    rng = np.random.default_rng(fold_seed(dataset, digest, way, shot, queries, fold))
    classes = sorted(int(c) for c in rng.choice(eligible, size=way, replace=False))
    support = [sorted(int(i) for i in rng.choice(np.flatnonzero(train_labels == c), size=shot, replace=False))
               for c in classes]
    query = [sorted(int(i) for i in rng.choice(np.flatnonzero(test_labels == c), size=queries, replace=False))
             for c in classes]
    return {"format": FOLD_FORMAT, "dataset": dataset, "split_sha256": digest, "way": way, "shot": shot,
            "queries": queries, "fold": fold, "classes": classes, "class_names": [class_names[c] for c in classes],
            "support": support, "query": query}


def fold_path(root: Path, dataset: str, digest: str, way: int, shot: int, queries: int, fold: int) -> Path:
    return Path(root) / "fewshot" / dataset / digest[:12] / f"{way}way-{shot}shot-{queries}q" / f"fold-{fold:02d}.json"


def _problem(stored: Any, expected: dict[str, Any], train_labels: np.ndarray, test_labels: np.ndarray) -> str | None:
    """Why a stored fold cannot be used, or None."""
    if not isinstance(stored, dict) or not isinstance(stored.get("sha256"), str):
        return "no sha256 checksum"
    body = {k: v for k, v in stored.items() if k != "sha256"}
    if hashlib.sha256(_canonical(body)).hexdigest() != stored["sha256"]:
        return "checksum mismatch (the file was changed or truncated)"
    for key in ("format", "dataset", "split_sha256", "way", "shot", "queries", "fold"):
        if body.get(key) != expected[key]:
            return f"{key} is {body.get(key)!r}, expected {expected[key]!r}"
    try:
        for c, sup, qry in zip(body["classes"], body["support"], body["query"], strict=True):
            if len(sup) != expected["shot"] or len(qry) != expected["queries"]:
                return "wrong number of support or query shapes"
            if np.any(train_labels[np.asarray(sup, dtype=np.int64)] != c) or \
                    np.any(test_labels[np.asarray(qry, dtype=np.int64)] != c):
                return f"shapes listed for class {c} have other labels"
        if len(body["classes"]) != expected["way"] or len(set(body["classes"])) != expected["way"]:
            return "wrong number of classes"
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        return f"malformed fold ({exc})"
    return None


def load_or_make_fold(root: Path, dataset: str, digest: str, class_names: Sequence[str], train_labels: np.ndarray,
                      test_labels: np.ndarray, way: int, shot: int, queries: int, fold: int) -> tuple[dict, Path, str]:
    """The fold from its file (checked), else drawn and written; returns (fold, path, status).

    ``status`` is ``"reused"``, ``"created"`` or ``"regenerated (<why>)"``.
    """
    path = fold_path(root, dataset, digest, way, shot, queries, fold)
    expected = make_fold(dataset, digest, class_names, train_labels, test_labels, way, shot, queries, fold)
    status = "created"
    if path.exists():
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
            problem = _problem(stored, expected, np.asarray(train_labels), np.asarray(test_labels))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            stored, problem = None, f"unreadable ({exc.__class__.__name__}: {exc})"
        if problem is None:
            fold_data = {k: v for k, v in stored.items() if k != "sha256"}
            if fold_data != expected:  # a valid file is used as it is; a different draw here is worth knowing
                log.warning("few-shot fold file %s is intact but differs from the fold this machine draws; "
                            "using the file", path)
                return fold_data, path, "reused (differs from this machine's draw)"
            return fold_data, path, "reused"
        aside = move_aside(path)
        log.warning("few-shot fold file %s is damaged: %s; moved to %s and regenerated", path, problem, aside)
        status = f"regenerated ({problem})"
    text = json.dumps({**expected, "sha256": hashlib.sha256(_canonical(expected)).hexdigest()}, sort_keys=True,
                      indent=1, ensure_ascii=True)
    atomic_write_text(path, text + "\n")
    return expected, path, status
