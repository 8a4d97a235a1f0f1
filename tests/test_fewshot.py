"""Few-shot: fold files (deterministic, checksummed, disjoint, repaired when damaged), NCM, fold statistics."""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
import pytest
from scipy import stats

from ssl3d.bench.protocols import EvalContext
from ssl3d.bench.protocols.fewshot import FewShotConfig, FewShotProtocol, ncm_predict
from ssl3d.bench.protocols.svm import SVMConfig
from ssl3d.bench.protocols.fewshot_folds import FewShotError, fold_path, load_or_make_fold, split_digest
from ssl3d.bench.run.runner import RunSpec, execute

from conftest import TINY_SYNTH
from test_classification import Blobs, _method

NAMES = [f"c{i}" for i in range(6)]
TRAIN = np.repeat(np.arange(6), 12)
TEST = np.repeat(np.arange(6), 5)
DIGEST = split_digest(NAMES, [(f"train_{i:03d}", c) for i, c in enumerate(TRAIN)],
                      [(f"test_{i:03d}", c) for i, c in enumerate(TEST)])


def _fold(root, fold=0, way=3, shot=4, queries=5):
    return load_or_make_fold(root, "toy", DIGEST, NAMES, TRAIN, TEST, way, shot, queries, fold)


def test_fold_files_are_identical_across_runs_and_machines(tmp_path):
    a, path_a, status_a = _fold(tmp_path / "a")
    b, path_b, status_b = _fold(tmp_path / "b")
    assert status_a == status_b == "created" and path_a.read_bytes() == path_b.read_bytes()
    assert path_a == fold_path(tmp_path / "a", "toy", DIGEST, 3, 4, 5, 0)
    # golden values: the same bytes on every platform (SHA-256 seeding + numpy's PCG64); a change here means
    # the draw changed, and stored fold files (which are reused as they are) no longer match a fresh draw
    assert DIGEST == "2ccdbcbd58a1b4443f607fb2d51172b53130c16e08ec3186e1dfb8fcb51b29dc"
    assert json.loads(path_a.read_text())["sha256"] == "81bd9beca7e7a0f94a2ee5e8388e6ec544da8e94071792ce380ffe600697f9cf"
    assert hashlib.sha256(path_a.read_bytes()).hexdigest() == (
        "a62c5ed89d42cdc02e50553aa3508efa0e00ed75f4ed097e690e9e4a5ed06d67")
    again, _, status = _fold(tmp_path / "a")
    assert status == "reused" and again == a
    assert _fold(tmp_path / "a", fold=1)[0]["support"] != a["support"]  # folds differ


def test_support_and_query_are_disjoint_and_labelled_by_their_class(tmp_path):
    for f in range(5):
        fold, _, _ = _fold(tmp_path, fold=f, way=4, shot=6, queries=5)
        assert len(set(fold["classes"])) == 4
        support = [i for per in fold["support"] for i in per]
        query = [i for per in fold["query"] for i in per]
        assert len(set(support)) == 4 * 6 and len(set(query)) == 4 * 5  # no shape twice
        support_names = {f"train_{i:03d}" for i in support}
        assert not support_names & {f"test_{i:03d}" for i in query}  # support from train, queries from test
        for c, sup, qry in zip(fold["classes"], fold["support"], fold["query"]):
            assert set(TRAIN[sup]) == {c} and set(TEST[qry]) == {c}


@pytest.mark.parametrize("damage", ["truncate", "edit", "garbage"])
def test_damaged_fold_file_is_named_and_regenerated(tmp_path, caplog, damage):
    _, path, _ = _fold(tmp_path)
    original = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(original[: len(original) // 2])
    elif damage == "edit":  # valid JSON, one support shape swapped, checksum left as it was
        stored = json.loads(original)
        stored["support"][0][0] += 1
        path.write_text(json.dumps(stored))
    else:
        path.write_bytes(b"\x00\xff not json")
    with caplog.at_level(logging.WARNING, logger="ssl3d.fewshot"):
        _, again, status = _fold(tmp_path)
    assert status.startswith("regenerated") and again.read_bytes() == original
    assert str(path) in caplog.text and "damaged" in caplog.text
    assert len(list(path.parent.glob(f"{path.name}.corrupt-*"))) == 1  # kept aside for inspection


def test_fold_for_another_setting_is_not_reused(tmp_path):
    _, path, _ = _fold(tmp_path)
    other = fold_path(tmp_path, "toy", DIGEST, 3, 5, 5, 0)
    other.parent.mkdir(parents=True)
    other.write_bytes(path.read_bytes())  # a 4-shot file where a 5-shot one belongs
    fold, _, status = _fold(tmp_path, shot=5)
    assert "shot is 4, expected 5" in status and all(len(s) == 5 for s in fold["support"])


def test_too_few_classes_is_a_clear_error(tmp_path):
    with pytest.raises(FewShotError, match="qualify"):
        _fold(tmp_path, way=3, shot=4, queries=6)  # only 5 test shapes per class


def test_ncm_by_hand():
    support = np.array([[2.0, 0.0], [4.0, 0.0], [0.0, 3.0], [0.0, 1.0]])
    labels = np.array([0, 0, 1, 1])
    # centre (1.5, 1): class 0 -> unit vectors of (0.5, -1), (2.5, -1); class 1 -> of (-1.5, 2), (-1.5, 0)
    query = np.array([[3.0, 0.2], [0.1, 2.0], [1.5, 1.0 - 1e-3]])
    assert ncm_predict(support, labels, query).tolist() == [0, 1, 0]
    u = lambda v: np.asarray(v) / np.linalg.norm(v)  # noqa: E731
    m0, m1 = (u([0.5, -1]) + u([2.5, -1])) / 2, (u([-1.5, 2]) + u([-1.5, 0])) / 2
    q = u([3.0 - 1.5, 0.2 - 1.0])
    assert np.linalg.norm(q - m0) < np.linalg.norm(q - m1)


def test_protocol_reports_mean_std_and_ci_over_folds(tmp_path):
    train = Blobs(np.repeat(np.arange(4), 8), "train")
    test = Blobs(np.repeat(np.arange(4), 4), "test")
    train.root = test.root = tmp_path
    proto = FewShotProtocol(FewShotConfig(way=3, shot=3, queries=4, folds=4, svm=SVMConfig(c_grid=(0.1, 1.0), folds=3)))
    result = proto.evaluate(_method(), train, test, "points", EvalContext(seed=0, progress=False))
    for name in ("svm", "ncm"):
        folds = np.array(result.details[f"{name}_acc_by_fold"])
        assert result.metrics[f"{name}_acc"] == pytest.approx(folds.mean(), abs=1e-3)
        assert result.metrics[f"{name}_acc_std"] == pytest.approx(folds.std(ddof=1), abs=1e-3)
        half = stats.t.ppf(0.975, 3) * folds.std(ddof=1) / 2
        assert result.metrics[f"{name}_acc_ci95"] == pytest.approx(half, abs=1e-3)
    assert [r["status"] for r in result.details["fold_files"]] == ["created"] * 4
    rerun = proto.evaluate(_method(), train, test, "points", EvalContext(seed=0, progress=False))
    assert [r["status"] for r in rerun.details["fold_files"]] == ["reused"] * 4 and rerun.metrics == result.metrics


def test_synth_fewshot_run_end_to_end(tmp_path):
    overrides = {**TINY_SYNTH, "fewshot.way": "3", "fewshot.shot": "2", "fewshot.queries": "3", "fewshot.folds": "3"}
    result = execute(RunSpec(method="random-pointnet", task="synth-fewshot", overrides=overrides, progress=False,
                             results_dir=str(tmp_path)))
    assert set(result["metrics"]) == {f"{n}_acc{s}" for n in ("svm", "ncm") for s in ("", "_std", "_ci95")}
    files = [r["file"] for r in result["protocol"]["details"]["fold_files"]]
    assert files[0].startswith("fewshot/synth/") and files[0].endswith("3way-2shot-3q/fold-00.json")


def test_fine_tuned_head_is_reported_beside_the_frozen_classifiers_and_repeatable(tmp_path):
    overrides = {**TINY_SYNTH, "fewshot.way": "3", "fewshot.shot": "2", "fewshot.queries": "3", "fewshot.folds": "2",
                 "fewshot.finetune_epochs": "2"}
    runs = [execute(RunSpec(method="random-pointnet", task="synth-fewshot", overrides=overrides, progress=False,
                            results_dir=str(tmp_path / f"r{i}"), data_root=str(tmp_path / "data"))) for i in range(2)]
    metrics, details = runs[0]["metrics"], runs[0]["protocol"]["details"]
    assert {"svm_acc", "ncm_acc", "finetune_acc", "finetune_acc_std", "finetune_acc_ci95"} <= set(metrics)
    by_fold = details["finetune_acc_by_fold"]
    assert len(by_fold) == 2 and all(0 <= v <= 100 for v in by_fold)
    assert metrics["finetune_acc"] == pytest.approx(np.mean(by_fold), abs=1e-3)
    assert runs[1]["metrics"] == metrics  # every random choice derives from the seed and the fold



def test_the_svm_classifier_is_the_svm_protocols_nested_config():
    """`--set fewshot.svm.KEY` reaches the same SVMConfig as `svm.KEY` (kernel included); label_fraction is refused."""
    from ssl3d.bench.protocols.tasks import get_task
    from ssl3d.core.config import ConfigError

    proto = FewShotProtocol.for_task(get_task("synth-fewshot"), {"svm.kernel": "rbf", "svm.c_grid": "1"})
    assert proto.config.svm == SVMConfig(kernel="rbf", c_grid=(1.0,))
    with pytest.raises(ConfigError, match=r"fewshot.svm.label_fraction=0.5"):
        FewShotProtocol.for_task(get_task("synth-fewshot"), {"svm.label_fraction": "0.5"})
