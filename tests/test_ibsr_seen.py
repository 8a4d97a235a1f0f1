"""The seen-gallery IBSR protocol (``ibsr-seen``, CMIC's setting): the gallery is the train split, the queries are
held-out photos of its shapes that pretraining never saw, top-k checked by hand on a fake embedding, and the
tasks run end to end on synth, on a tiny ModelNet10 tree and on a tiny Pix3D layout."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ssl3d.bench.features.splits import WithoutValidation, selection_validation
from ssl3d.bench.protocols.base import EvalContext
from ssl3d.bench.protocols.ibsr_seen import IBSRSeenConfig, IBSRSeenProtocol, PhotoQueries, per_class_subset
from ssl3d.bench.protocols.tasks import TASKS
from ssl3d.bench.report.leaderboard import packaged_reported
from ssl3d.bench.run.runner import RunSpec, execute, list_everything, validate_run
from ssl3d.core.config import ConfigError
from ssl3d.datasets import DATASETS
from ssl3d.datasets.base import hash_name
from ssl3d.datasets.modalities.builtin import HELD_OUT_PHOTOS
from ssl3d.datasets.modalities.photo import render_photo

from conftest import TINY_SYNTH
from test_real_datasets import link_raw, make_modelnet40, make_pix3d

ONE_STEP = {"train.epochs": "1", "train.batch_size": "2", "train.max_steps_per_epoch": "1"}


# -- the held-out photos: new renders of the same shapes ----------------------------------------------------------
def test_held_out_photos_are_new_renders_of_the_pretraining_shapes(tmp_path):
    cls = DATASETS.get("synth")
    cfg = cls.Config(n_classes=2, train_per_class=2, test_per_class=1, image_size=32, n_points=64, workers=1)
    data = cls("train", ("image", "mask", "held_out_photos", "held_out_masks"), cfg, tmp_path, progress=False)
    assert data.cache_path("held_out_photos") != data.cache_path("image")  # a cache of its own
    bigger = cls("train", ("held_out_photos",), cls.Config(n_classes=2, train_per_class=2, image_size=48), tmp_path,
                 prepare=False)
    assert bigger.cache_path("held_out_photos") != data.cache_path("held_out_photos")  # image_size keys it
    for i in range(len(data)):
        item = data[i]
        photos, masks = item["held_out_photos"], item["held_out_masks"]
        assert photos.shape == (HELD_OUT_PHOTOS, 3, 32, 32) and masks.shape == (HELD_OUT_PHOTOS, 32, 32)
        # the documented seed streams: [crc32(dataset), shape, 3] for image, [..., 4] for the held-out photos
        mesh, part = data.load_mesh(data.shapes[i])
        shown = render_photo(mesh, part, np.random.default_rng([hash_name("synth"), i, 3]), 32)
        stream = np.random.default_rng([hash_name("synth"), i, 4])
        held = [render_photo(mesh, part, stream, 32) for _ in range(HELD_OUT_PHOTOS)]
        np.testing.assert_array_equal((item["image"].permute(1, 2, 0) * 255).round().byte().numpy(), shown.image)
        cameras = [shown.camera]
        for k, photo in enumerate(held):
            np.testing.assert_array_equal((photos[k].permute(1, 2, 0) * 255).round().byte().numpy(), photo.image)
            np.testing.assert_array_equal(masks[k].numpy() > 0.5, photo.mask)
            # a new photo of the same shape: other pixels and another silhouette than the pretraining photo's
            assert (photos[k] - item["image"]).abs().mean() > 0.02
            assert not torch.equal(masks[k], item["mask"])
            cameras.append(photo.camera)
        gaps = [np.linalg.norm(a - b) for j, a in enumerate(cameras) for b in cameras[j + 1:]]
        assert min(gaps) > 1e-3  # four different viewpoints: no held-out photo repeats the pretraining one


def test_synth_and_modelnet_offer_held_out_photos_pix3d_does_not():
    assert {"held_out_photos", "held_out_masks"} <= DATASETS.get("synth").available_modalities
    assert {"held_out_photos", "held_out_masks"} <= DATASETS.get("modelnet10").available_modalities
    assert "held_out_photos" not in DATASETS.get("pix3d").available_modalities  # its queries are real photos


# -- query sampling -----------------------------------------------------------------------------------------------
def test_per_class_subset_by_hand():
    labels = np.array([0, 1, 0, 2, 1, 0])
    keep = per_class_subset(labels, 2, np.random.default_rng(0))
    assert sorted(labels[keep].tolist()) == [0, 0, 1, 1, 2]  # two of class 0 and 1, the one of class 2
    assert list(keep) == sorted(keep) and len(set(keep)) == 5
    np.testing.assert_array_equal(per_class_subset(labels, 0, np.random.default_rng(0)), np.arange(6))
    np.testing.assert_array_equal(per_class_subset(labels, 9, np.random.default_rng(5)), np.arange(6))


class Gallery(Dataset):
    """Shapes s0..s5 (box, box, box, bag, bag, bag); ``views`` hold the shape's position (the fake embeds it)."""

    name = "tiny"
    class_names = ("box", "bag")

    def __init__(self) -> None:
        self.labels = np.array([0, 0, 0, 1, 1, 1])

    def gallery_split(self, modalities=None):
        return None

    def shape_name(self, i: int) -> str:
        return f"s{i}"

    def __len__(self) -> int:
        return 6

    def __getitem__(self, i):
        return {"label": torch.tensor(self.labels[i]), "index": torch.tensor(i), "views": torch.tensor([float(i)])}


class HeldOut(Dataset):
    """The same shapes in reverse order; photo k of shape s is [target, s]: photos 0 and 1 show s, photo 2 the
    shape at s's place in the other class (a miss, of the other category)."""

    def __init__(self) -> None:
        self.order = [5, 4, 3, 2, 1, 0]
        self.labels = Gallery().labels[self.order]

    def shape_name(self, i: int) -> str:
        return f"s{self.order[i]}"

    def __len__(self) -> int:
        return 6

    def __getitem__(self, i):
        s = self.order[i]
        photos = torch.tensor([[s, s], [s, s], [(s + 3) % 6, s]], dtype=torch.float32)
        return {"label": torch.tensor(self.labels[i]), "held_out_photos": photos, "held_out_masks": torch.ones(3, 1)}


class OneHot:
    """Plain embeddings: a photo as the one-hot of its target, a shape as its own; records the queried shapes."""

    name = "one-hot"
    query_conditioned = False
    embed_modalities = frozenset({"image", "views"})

    def __init__(self) -> None:
        self.queried: list[int] = []

    def embed(self, batch, modality):
        if modality == "image":
            self.queried += batch["image"][:, 1].long().tolist()
        return F.one_hot(batch[modality][:, 0].long(), 6).float()


def _evaluate(seed: int = 0, **config):
    protocol = IBSRSeenProtocol(IBSRSeenConfig(shape_distances=False, ks=(1, 6), **config))
    held_out = HeldOut()
    protocol.held_out_photos = lambda train_data, progress, prepare=True: held_out
    method = OneHot()
    result = protocol.evaluate(method, Gallery(), None, "image", EvalContext(seed=seed, progress=False))
    return result, method


def test_top_k_on_a_fake_embedding_by_hand():
    result, method = _evaluate(queries_per_class=0)
    m = result.metrics
    # 4 seen shapes x 3 photos: photos 0 and 1 find their shape, photo 2 a shape of the other category
    assert result.details["n_queries"] == 12 and result.details["n_query_shapes"] == 4
    assert m["top1_acc"] == pytest.approx(200 / 3) and m["category_acc"] == pytest.approx(200 / 3)
    assert m["top6_acc"] == 100.0  # the whole gallery
    assert m["top1_acc:box"] == pytest.approx(200 / 3) and m["top1_acc:bag"] == pytest.approx(200 / 3)
    assert result.details["n_gallery"] == 6  # the withheld shapes stay in the gallery
    # the queried shapes: each seen shape three times, never one a label reader's pretraining withheld
    withheld = set(WithoutValidation(Gallery(), 0).withheld.tolist())
    assert len(withheld) == 2 and withheld.isdisjoint(method.queried)
    assert sorted(method.queried) == sorted(3 * sorted(set(range(6)) - withheld))
    assert m == _evaluate(queries_per_class=0)[0].metrics  # the same queries for every method of a seed
    two_photos = _evaluate(queries_per_class=0, photos_per_shape=2)[0]
    assert two_photos.metrics["top1_acc"] == 100.0 and two_photos.details["n_queries"] == 8


def test_queries_per_class_draws_seen_shapes_of_each_class():
    result, method = _evaluate(queries_per_class=1, seed=3)
    withheld = set(selection_validation(Gallery().labels, 3).tolist())
    shapes = set(method.queried)
    assert len(shapes) == 2 and {s // 3 for s in shapes} == {0, 1} and shapes.isdisjoint(withheld)
    assert result.details["n_queries"] == 6 and result.metrics["top1_acc"] == pytest.approx(200 / 3)


def test_photo_queries_are_the_held_out_photos_in_order():
    queries = PhotoQueries(HeldOut(), np.array([1, 4]), 3)  # shapes s4 and s1
    items = [queries[j] for j in range(len(queries))]
    assert [it["image"].tolist() for it in items] == [[4, 4], [4, 4], [1, 4], [1, 1], [1, 1], [4, 1]]
    assert [int(it["index"]) for it in items] == list(range(6)) and [int(it["label"]) for it in items] == [1] * 3 + [0] * 3


def test_config_errors():
    with pytest.raises(ConfigError, match="unseen galleries are ibsr's"):
        IBSRSeenProtocol(IBSRSeenConfig(gallery_dataset="synth"))
    with pytest.raises(ConfigError, match="photos_per_shape=4 is out of range"):
        IBSRSeenProtocol.for_task(TASKS.get("synth-ibsr-seen"), {"photos_per_shape": "4"})
    h5 = type("Split", (), {"name": "modelnet40-h5", "config": None, "root": None})()
    with pytest.raises(ConfigError, match="cannot render held-out photos"):
        IBSRSeenProtocol().held_out_photos(h5, progress=False)
    with pytest.raises(ValueError, match="evaluates image"):
        IBSRSeenProtocol().evaluate(OneHot(), Gallery(), None, "views", EvalContext(progress=False))


# -- the tasks ----------------------------------------------------------------------------------------------------
def test_tasks_and_who_runs_them():
    for name, dataset in (("synth-ibsr-seen", "synth"), ("modelnet10-ibsr-seen", "modelnet10"),
                          ("pix3d-ibsr-seen", "pix3d")):
        task = TASKS.get(name)
        assert (task.dataset, task.protocol, task.modalities) == (dataset, "ibsr-seen", ("image",))
    listed = list_everything()["tasks"]
    assert listed["synth-ibsr-seen"]["supported"] == listed["synth-ibsr"]["supported"]


def test_synth_task_end_to_end(tmp_path):
    result = execute(RunSpec(method="cmic", task="synth-ibsr-seen", overrides={**TINY_SYNTH, **ONE_STEP},
                             data_root=str(tmp_path / "data"), results_dir=str(tmp_path / "res"), progress=False))
    details, m = result["protocol"]["details"], result["metrics"]
    # 4 classes x 6 training shapes, one of each class withheld: 5 query shapes per class x 3 photos
    assert (details["n_gallery"], details["n_query_shapes"], details["n_queries"]) == (24, 20, 60)
    assert details["scoring"] == "query-conditioned"
    assert {"top1_acc", "top5_acc", "top10_acc", "category_acc", "hau", "iou", "top1_acc:chair"} <= set(m)
    assert 0 <= m["top1_acc"] <= m["top5_acc"] <= m["top10_acc"] <= 100
    processed = tmp_path / "data" / "synth" / "processed"
    assert len(list(processed.glob("train-held_out_photos-*.h5"))) == 1  # rendered for the train split only
    assert not list(processed.glob("test-held_out_photos-*.h5"))


def test_modelnet10_task_runs_on_a_tiny_off_tree(tmp_path):
    root = tmp_path / "data"
    shutil.move(make_modelnet40(tmp_path / "src"), link_raw(root, "modelnet10") / "ModelNet10")
    result = execute(RunSpec(method="cmic", task="modelnet10-ibsr-seen", data_root=str(root),
                             results_dir=str(tmp_path / "res"), progress=False,
                             overrides={"data.categories": "chair,toilet", "data.n_points": "64", "data.workers": "1",
                                        **ONE_STEP}))
    details = result["protocol"]["details"]
    # 2 + 2 readable training shapes (a toilet is corrupt), one of each class withheld: 2 query shapes x 3 photos
    assert (details["n_gallery"], details["n_query_shapes"], details["n_queries"]) == (4, 2, 6)


def test_pix3d_queries_are_test_photos_of_shapes_with_training_photos(tmp_path):
    base, truth = make_pix3d(link_raw(tmp_path, "pix3d"))
    photo = {shape: sorted(img for img, s in truth.items() if s == shape) for shape in set(truth.values())}
    # A and B (two photos) and C have training photos, B's third and both of D's kept photos are test photos:
    # whichever bed and chair photo the validation carve withholds, A, B and C stay seen, D is not
    train = photo["bed/IKEA_A"] + photo["bed/IKEA_B"][:2] + photo["chair/IKEA_C"]
    test = photo["bed/IKEA_B"][2:] + photo["chair/IKEA_D"]
    (tmp_path / "train.txt").write_text("\n".join(train))
    (tmp_path / "test.txt").write_text("\n".join(test))
    cls = DATASETS.get("pix3d")
    cfg = cls.Config(image_size=16, view_size=16, workers=1, train_list=str(tmp_path / "train.txt"),
                     test_list=str(tmp_path / "test.txt"))
    splits = [cls(split, ("image", "mask", "views"), cfg, tmp_path, progress=False) for split in ("train", "test")]

    class Constant(OneHot):  # every score ties: the gallery order decides (bed A, bed B, chair C, chair D)
        def embed(self, batch, modality):
            return torch.ones(len(batch["label"]), 2)

    protocol = IBSRSeenProtocol(IBSRSeenConfig(shape_distances=False, ks=(1, 2)))
    result = protocol.evaluate(Constant(), *splits, "image", EvalContext(progress=False))
    assert (result.details["n_queries"], result.details["n_dropped_queries"], result.details["n_gallery"]) == (1, 2, 4)
    assert result.details["n_seen_shapes"] == 3
    # the one query shows bed B, ranked second after bed A
    assert (result.metrics["top1_acc"], result.metrics["top2_acc"], result.metrics["category_acc"]) == (0.0, 100.0, 100.0)
    plan = validate_run(RunSpec(method="cmic", task="pix3d-ibsr-seen", data_root=str(tmp_path),
                                results_dir=str(tmp_path / "res"), progress=False))
    assert plan.protocol.name == "ibsr-seen"  # validates (check_data included) on the Pix3D layout


# -- reported beside CMIC's numbers --------------------------------------------------------------------------------
def test_stand_in_rows_copy_cmics_printed_pix3d_cells():
    table = pd.read_csv(io.StringIO(packaged_reported().read_text(encoding="utf-8")), keep_default_na=False)
    stand_ins = table[table["task"] == "modelnet10-ibsr-seen"]
    assert len(stand_ins) == 25 and set(stand_ins["paper"]) == {"cmic"}
    assert stand_ins["notes"].str.startswith("stand-in:").all()
    assert stand_ins["setting"].str.startswith("pretrained on Pix3D").all()  # shown beside ours by the leaderboard
    printed = table[(table["task"] == "pix3d-ibsr") & (table["setting"] == "")]
    for row in stand_ins.itertuples(index=False):
        source = printed[(printed["table"] == row.table) & (printed["method"] == row.method)
                         & (printed["metric"] == row.metric)]
        assert len(source) == 1 and float(source["value"].iloc[0]) == float(row.value), row
    assert float(stand_ins[(stand_ins["method"] == "cmic") & (stand_ins["metric"] == "top1_acc")]["value"].iloc[0]) == 78.9
