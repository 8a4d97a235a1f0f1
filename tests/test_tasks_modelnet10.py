"""The ModelNet10 tasks: declared like their synth counterparts, listed with the methods that run them, run end
to end on a tiny OFF-layout ModelNet10 tree, and pretrain on its train split without reading labels (CMIC's
category loss excepted)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from ssl3d.bench.run.runner import RunSpec, execute, list_everything, validate_run
from ssl3d.bench.sweep.suite import plan_suite
from ssl3d.bench.protocols.tasks import TASKS
from ssl3d.methods import METHODS, RunContext

from conftest import REPO_ROOT
from test_real_datasets import link_raw, make_modelnet40

#: each ModelNet10 task and the synth task it mirrors (same protocol, same protocol options, same modalities)
MIRRORS = {"modelnet10-svm": "synth-svm", "modelnet10-retrieval": "synth-retrieval",
           "modelnet10-recon": "synth-recon", "modelnet10-ibsr": "synth-ibsr"}

# Tiny settings that leave each method's own view/voxel/image sizes alone (user --set would override them).
TINY = {"data.categories": "chair,toilet", "data.n_points": "64", "data.workers": "1"}
ONE_STEP = {"train.epochs": "1", "train.batch_size": "2", "train.max_steps_per_epoch": "1"}

#: the methods whose pretraining uses category labels: CMIC's category loss (beta1 > 0), as its paper does
LABEL_READERS = {"cmic", "cmic-hsv", "cmic-noaug", "cmic-triplet"}


@pytest.fixture(scope="module")
def modelnet10_root(tmp_path_factory) -> Path:
    """A data root whose ModelNet10 is the tiny OFF tree of test_real_datasets (chair and toilet: 2 + 2 train
    shapes and a corrupt toilet, 1 + 1 test), shared by this module's tests so its caches are built once."""
    tmp = tmp_path_factory.mktemp("mn10")
    root = tmp / "data"
    shutil.move(make_modelnet40(tmp / "src"), link_raw(root, "modelnet10") / "ModelNet10")
    return root


def test_modelnet10_tasks_mirror_the_synth_tasks():
    for name, synth in MIRRORS.items():
        task, twin = TASKS.get(name), TASKS.get(synth)
        assert (task.dataset, task.protocol) == ("modelnet10", twin.protocol)
        assert task.protocol_options == twin.protocol_options, name
        assert set(task.modalities) == set(twin.modalities), name
    # modelnet10-svm fixes no data setting: its rows keep the data key they had before image was added
    assert TASKS.get("modelnet10-svm").data_options == {}
    assert TASKS.get("modelnet10-svm").modalities[:3] == ("voxels", "views", "points")  # the default modality is kept
    assert TASKS.get("modelnet10-recon").data_options == {"voxel_resolution": 32}


def test_list_and_suite_show_who_runs_the_modelnet10_tasks():
    tasks = list_everything()["tasks"]
    assert set(MIRRORS) <= set(tasks)
    assert tasks["modelnet10-svm"]["unsupported"] == {} and tasks["modelnet10-retrieval"]["unsupported"] == {}
    assert tasks["modelnet10-svm"]["supported"]["cmic"] == ["views", "image"]
    assert tasks["modelnet10-recon"]["supported"] == {
        "image-vae": ["views"], "switch-btcvae": ["voxels", "views"], "switchvae": ["voxels", "views"],
        "switchvae-nocontrast": ["voxels", "views"], "voxel-vae": ["voxels"]}
    cmics = sorted(m for m in METHODS.names() if m.startswith("cmic"))
    assert sorted(tasks["modelnet10-ibsr"]["supported"]) == ["cm", "cmcv", *cmics, "random-view-cnn"]  # its photos
    planned, skipped = plan_suite("*", "modelnet10-[sri]*")  # the four mirrors of synth (the real suite's tasks)
    assert {p.task for p in planned} == set(MIRRORS) | {"modelnet10-ibsr-seen"}  # the glob also matches it
    assert {p.task for p in plan_suite("random-pointnet", "modelnet10-*")[0]} == set(MIRRORS) - {
        "modelnet10-recon", "modelnet10-ibsr"} | {"modelnet10-cls", "modelnet10-fewshot"}
    assert ("voxel-vae", "modelnet10-ibsr", "voxel-vae embeds voxels; modelnet10-ibsr needs one of image") in skipped
    assert {(p.method, p.modality) for p in planned if p.task == "modelnet10-retrieval" and p.method == "cmcv"} == {
        ("cmcv", "points"), ("cmcv", "views"), ("cmcv", "image")}


def test_the_task_table_of_protocols_md_is_the_registry():
    text = (REPO_ROOT / "docs" / "protocols.md").read_text(encoding="utf-8")
    table = text[text.index("## Tasks\n"):text.index("## Which methods run a task")]
    rows = [[cell.strip().strip("`") for cell in line.strip("|").split("|")]
            for line in table.splitlines() if line.startswith("| `")]
    documented = {name: (dataset, protocol, modalities, fixed) for name, dataset, protocol, modalities, fixed in rows}
    built_in = (REPO_ROOT / "bench" / "protocols" / "tasks.py").read_text(encoding="utf-8")
    assert set(documented) == {n for n in TASKS.names() if f'"{n}"' in built_in}
    for name, row in documented.items():
        task = TASKS.get(name)
        fixed = [f"{k} {v}" for k, v in task.data_options.items()]
        fixed += [f"{task.protocol}.{k} {v}" for k, v in task.protocol_options.items()]
        datasets = "`, else `".join(r.dataset for r in task.candidates())  # the releases it reads, in order
        assert row == (datasets, task.protocol, ", ".join(task.modalities), ", ".join(fixed)), name


def _run(root: Path, tmp_path: Path, method: str, task: str, modality: str | None = None, **overrides: str) -> dict:
    return execute(RunSpec(method=method, task=task, modality=modality, overrides={**TINY, **overrides},
                           data_root=str(root), results_dir=str(tmp_path / "res"), progress=False))


def test_each_modelnet10_task_runs_on_a_tiny_off_tree(modelnet10_root, tmp_path):
    svm = _run(modelnet10_root, tmp_path, "random-pointnet", "modelnet10-svm")
    assert (svm["modality"], svm["pretrain_data"]) == ("points", "modelnet10")
    # the truncated toilet_0009.off is skipped: 2 + 2 training shapes, 1 + 1 test shapes
    assert (svm["protocol"]["details"]["n_train"], svm["protocol"]["details"]["n_test"]) == (4, 2)

    recon = _run(modelnet10_root, tmp_path, "voxel-vae", "modelnet10-recon", **ONE_STEP)
    assert recon["modality"] == "voxels" and recon["config"]["data"]["voxel_resolution"] == 32
    assert recon["protocol"]["details"]["n_test"] == 2 and recon["pretraining"]["steps"] == 1
    assert recon["config"]["pretrain_data_config"]["voxel_resolution"] == 32  # pretrained on the same grids
    assert 0 <= recon["metrics"]["iou"] <= 100 and 0 < recon["metrics"]["accuracy"] <= 100

    # 2D -> 3D as on synth: rendered views query the point-cloud gallery (the query's own shape stays in it)
    retrieval = _run(modelnet10_root, tmp_path, "cmcv", "modelnet10-retrieval", "points",
                     **ONE_STEP, **{"retrieval.query_modality": "views"})
    details = retrieval["protocol"]["details"]
    assert (details["query_modality"], details["gallery_modality"], details["n_queries"], details["n_gallery"]) == (
        "views", "points", 2, 2)
    assert retrieval["metrics"]["top5_acc"] == 100.0  # both gallery shapes are within the top 5, one is relevant

    ibsr = _run(modelnet10_root, tmp_path, "cmic", "modelnet10-ibsr", **ONE_STEP)
    assert ibsr["modality"] == "image" and ibsr["protocol"]["details"]["scoring"] == "query-conditioned"
    assert ibsr["protocol"]["details"]["n_queries"] == 2 and ibsr["metrics"]["top10_acc"] == 100.0


class LabelFree(Dataset):
    """The runner's pretraining split with ``label`` removed from every item and nothing else exposed: a method
    (or its pair sampler) that reads a label fails with ``KeyError: 'label'``."""

    def __init__(self, data: Dataset) -> None:
        self._data = data

    def __len__(self) -> int:
        return len(self._data)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self._data[index].items() if k != "label"}


def _task_for(method_cls) -> str:
    return "modelnet10-svm" if method_cls.embed_modalities else "modelnet10-recon"


def test_pretraining_on_modelnet10_reads_no_labels_except_cmics_category_loss(modelnet10_root):
    reads_labels = set()
    pretraining = [name for name in METHODS.names() if METHODS.get(name).pretrain_modalities]
    assert LABEL_READERS < set(pretraining) and "cmic-noncat" in pretraining
    for name in pretraining:
        plan = validate_run(RunSpec(method=name, task=_task_for(METHODS.get(name)), overrides={**TINY, **ONE_STEP},
                                    data_root=str(modelnet10_root), progress=False))
        # the runner's pretraining data: the ModelNet10 train split
        assert (plan.pre_name, plan.pre_data.split, plan.pre_data.name) == ("modelnet10", "train", "modelnet10")
        plan.pre_data.prepare()
        try:
            plan.method.pretrain(LabelFree(plan.pre_data), RunContext(seed=0, progress=False))
        except KeyError as exc:
            assert exc.args == ("label",), f"{name}: {exc!r}"
            reads_labels.add(name)
        else:
            assert plan.method.pretrain_info["steps"] == 1, name
    assert reads_labels == LABEL_READERS
