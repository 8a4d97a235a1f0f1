"""Published checkpoints under the suite's protocols (``--set method.init_checkpoint=PATH``).

The files are written in the official key layouts by the inverse mappers (methods/point_mae_keys.py,
methods/crosspoint_keys.py). Checked: a file loads into the networks it came from, bit for bit; bad files and
unsupported methods are refused before anything is written; the file's digest, not its path, is the
checkpoint's identity in result.json, the pretraining cache key and the leaderboard's cells.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from ssl3d.bench.report.leaderboard import summarize
from ssl3d.bench.run.init_checkpoint import method_from_preset, record_checkpoint
from ssl3d.bench.run.pretrain_cache import pretrain_key
from ssl3d.bench.run.results import ResultStore
from ssl3d.bench.run.runner import RunSpec, execute
from ssl3d.core.config import ConfigError
from ssl3d.core.errors import UserError
from ssl3d.methods.base import Method
from ssl3d.methods.checkpoint import PublishedCheckpointError, load_checkpoint
from ssl3d.methods.config import weights_config
from ssl3d.methods.crosspoint import CrossPoint
from ssl3d.methods.crosspoint_keys import to_official_point_state
from ssl3d.methods.point_mae import PointMAE
from ssl3d.methods.point_mae_keys import ours_to_official
from ssl3d.methods.testing import fake_batch

from conftest import BENCH, TINY_SYNTH, subprocess_env, tiny_set_args


def _built(cls: type[Method], seed: int, **overrides) -> Method:
    method = cls.from_preset("quick", overrides)
    torch.manual_seed(seed)
    method.model = method.build_model()
    return method


def _official_point_mae(path: Path, source: Method, edit=None) -> Path:
    """``source``'s weights as Point-MAE's pretrain.pth: under ``base_model``, saved from nn.DataParallel."""
    official = ours_to_official(source.model.state_dict())
    official = edit(official) if edit else official
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"base_model": {f"module.{k}": v for k, v in official.items()}, "epoch": 300,
                "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3}]}}, path)
    return path


def _from_file(cls: type[Method], path: Path, **overrides) -> Method:
    """A method started from ``path`` and not trained (``train.epochs=0``): the file's weights as they are."""
    return cls.from_preset("quick", {"init_checkpoint": str(path), "train.epochs": "0", **overrides}).pretrain([])


def _spec(tmp_path: Path, checkpoint: Path | str, method: str = "point-mae", **overrides) -> RunSpec:
    sets = {**TINY_SYNTH, "method.init_checkpoint": str(checkpoint), "train.epochs": "0", **overrides}
    return RunSpec(method=method, task="synth-svm", overrides=sets, progress=False,
                   data_root=str(tmp_path / "data"), results_dir=str(tmp_path / "results"))


# -- (i) a file in the official layout is the network it came from ---------------------------------------------------
def test_an_official_point_mae_file_embeds_like_the_network_it_came_from(tmp_path):
    source = _built(PointMAE, seed=3)
    path = _official_point_mae(tmp_path / "pretrain.pth", source)
    method = _from_file(PointMAE, path)
    batch = fake_batch(source, 3, small=True)
    assert torch.equal(method.embed(batch, "points"), source.embed(batch, "points"))
    seeded = PointMAE.from_preset("quick", {"train.epochs": "0"}).pretrain([])
    assert not torch.equal(seeded.embed(batch, "points"), source.embed(batch, "points"))  # the file changed them
    assert method.pretrain_info["init_checkpoint"] == {"path": str(path),
                                                       "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    assert "published checkpoint" in method.pretrain_info["note"]


def test_a_released_crosspoint_point_model_embeds_like_ours_and_leaves_the_image_branch_seeded(tmp_path):
    source = _built(CrossPoint, seed=4)
    with torch.no_grad():  # running statistics other than 0 / 1, so the BatchNorm buffers are checked too
        for name, buffer in source.model.named_buffers():
            if "running" in name:
                buffer.copy_(torch.rand_like(buffer) + 0.5)
    path = tmp_path / "dgcnn_cls_best.pth"
    torch.save(to_official_point_state(source.model.state_dict()), path)
    method = _from_file(CrossPoint, path)
    batch = fake_batch(source, 3, small=True)
    assert torch.equal(method.embed(batch, "points"), source.embed(batch, "points"))
    seeded = CrossPoint.from_preset("quick", {"train.epochs": "0"}).pretrain([])
    for name, tensor in seeded.model.image.state_dict().items():
        assert torch.equal(method.model.image.state_dict()[name], tensor), name


def test_training_continues_from_the_checkpoint(tmp_path):
    """``train.epochs=1`` at learning rate 0: every parameter of the cached pretraining is still the file's."""
    source = _built(PointMAE, seed=5)
    path = _official_point_mae(tmp_path / "ckpt" / "pretrain.pth", source)
    result = execute(_spec(tmp_path, path, **{"train.epochs": "1", "train.lr": "0"}))
    assert result["pretraining"]["key"] and result["pretraining"]["epochs"] == 1
    trained = load_checkpoint(result["pretraining"]["path"])["model"]
    for name, parameter in source.model.named_parameters():
        assert torch.equal(trained[name], parameter.detach()), name
    assert result["pretraining"]["init_checkpoint"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    copy = tmp_path / "elsewhere" / "copy.pth"  # the same file under another path: the same pretraining, served
    copy.parent.mkdir()
    shutil.copyfile(path, copy)
    again = execute(_spec(tmp_path, copy, **{"train.epochs": "1", "train.lr": "0"}))
    assert again["pretraining"]["cached"] and again["pretraining"]["key"] == result["pretraining"]["key"]
    assert again["pretraining"]["init_checkpoint"]["path"] == str(copy)  # this run's file, not the trainer's
    assert again["config"]["method"]["init_checkpoint"] == str(copy) and again["settings"] == result["settings"]


# -- (ii) refusals, before anything is written ------------------------------------------------------------------------
def _renamed(official):
    return {("MAE_encoder.norm.gamma" if k == "MAE_encoder.norm.weight" else k): v for k, v in official.items()}


def _reshaped(official):
    return {**official, "increase_dim.0.weight": torch.zeros(3, 3, 1)}


@pytest.mark.parametrize("edit,pattern", [
    (_renamed, r"official key 'MAE_encoder\.norm\.gamma' \(ours: 'encoder\.norm\.gamma'\) has no counterpart"),
    (_reshaped, r"official key 'increase_dim\.0\.weight': shape \(3, 3, 1\)"),
])
def test_a_mismatching_file_is_refused_naming_the_key_before_any_side_effect(tmp_path, edit, pattern):
    path = _official_point_mae(tmp_path / "ckpt" / "pretrain.pth", _built(PointMAE, seed=0), edit)
    with pytest.raises(PublishedCheckpointError, match=rf"^method\.init_checkpoint={path}: {pattern}"):
        execute(_spec(tmp_path, path))
    assert not (tmp_path / "results").exists() and not (tmp_path / "data").exists()


def _write(kind: str, path: Path) -> None:
    if kind == "garbage":
        path.write_bytes(b"not a checkpoint at all")
    elif kind == "truncated":
        _official_point_mae(path, _built(PointMAE, seed=0))
        path.write_bytes(path.read_bytes()[:2000])
    elif kind == "a list":
        torch.save([torch.zeros(2)], path)
    elif kind == "no tensors":
        torch.save({"epoch": 300, "note": "metrics only"}, path)
    elif kind == "a folder":
        path.mkdir()


@pytest.mark.parametrize("kind,pattern", [
    ("missing", "no such file$"),
    ("a folder", "is a folder"),
    ("garbage", "damaged, or holds objects other than tensors"),
    ("truncated", "unreadable"),
    ("a list", "holds a list, not a checkpoint dict"),
    ("no tensors", r"holds no tensors \(keys: epoch, note\); not a state dict"),
])
def test_a_file_that_is_no_usable_state_dict_is_refused_in_one_line(tmp_path, kind, pattern):
    path = tmp_path / "ckpt.pth"
    _write(kind, path)
    with pytest.raises(PublishedCheckpointError, match=rf"^method\.init_checkpoint={path}: {pattern}") as caught:
        execute(_spec(tmp_path, path))
    assert isinstance(caught.value, UserError) and "\n" not in str(caught.value)
    assert not (tmp_path / "results").exists() and not (tmp_path / "data").exists()


def test_the_released_rgb_image_model_is_refused_naming_its_first_convolution(tmp_path):
    ours = _built(CrossPoint, seed=0).model.state_dict()
    released = {k[len("image."):]: v for k, v in ours.items() if k.startswith("image.")}
    released["resnet.conv1.weight"] = torch.zeros(64, 3, 7, 7)  # ResNet-50's RGB input; ours reads grey views
    path = tmp_path / "img_model_best.pth"
    torch.save(released, path)
    with pytest.raises(PublishedCheckpointError, match=r"official 'resnet\.conv1\.weight' has shape \(64, 3, 7, 7\)"):
        execute(_spec(tmp_path, path, method="crosspoint"))
    assert not (tmp_path / "results").exists()


def test_a_leaderboard_digest_passed_as_the_path_says_what_to_pass(tmp_path):
    with pytest.raises(PublishedCheckpointError, match="a leaderboard shows a checkpoint by its digest"):
        execute(_spec(tmp_path, "sha256:1781e238cf96fa0d"))


# -- (iii) the file's digest is the checkpoint's identity -------------------------------------------------------------
def test_two_files_at_one_path_are_two_results_two_cache_keys_and_two_cells(tmp_path):
    path, digests, keys = tmp_path / "ckpt" / "pretrain.pth", [], []
    for seed in (1, 2):
        _official_point_mae(path, _built(PointMAE, seed=seed))
        digests.append(hashlib.sha256(path.read_bytes()).hexdigest())
        result = execute(_spec(tmp_path, path))
        written = json.loads((tmp_path / "results" / "runs" / result["run_id"] / "result.json").read_text())
        assert written["pretraining"]["init_checkpoint"] == {"path": str(path), "sha256": digests[-1]}
        assert f"method.init_checkpoint=sha256:{digests[-1][:16]}" in written["settings"].split()
        assert str(tmp_path) not in written["settings"]
        keys.append(pretrain_key(PointMAE.from_preset("quick", {"init_checkpoint": str(path)}), "synth", {}, 0))
    assert digests[0] != digests[1] and keys[0] != keys[1]
    summary = summarize(ResultStore(tmp_path / "results").read_leaderboard())
    cells = summary[(summary["method"] == "point-mae") & (summary["metric"] == "overall_acc")]
    assert sorted(cells["settings"].str.extract(r"sha256:(\w+)")[0]) == sorted(d[:16] for d in digests)
    assert list(cells["n"]) == [1, 1]


def test_one_file_under_two_paths_is_one_checkpoint_and_no_file_leaves_the_keys_as_they_were(tmp_path):
    first = _official_point_mae(tmp_path / "a" / "pretrain.pth", _built(PointMAE, seed=1))
    second = tmp_path / "b" / "copy.pth"
    second.parent.mkdir()
    shutil.copyfile(first, second)
    configs = [PointMAE.from_preset("quick", {"init_checkpoint": str(p)}) for p in (first, second)]
    assert pretrain_key(configs[0], "synth", {}, 0) == pretrain_key(configs[1], "synth", {}, 0)
    digest = hashlib.sha256(first.read_bytes()).hexdigest()
    assert weights_config(configs[0].config)["init_checkpoint"] == f"sha256:{digest}"
    assert "init_checkpoint" not in weights_config(PointMAE.from_preset("quick").config)


def test_weights_loaded_from_other_bytes_than_the_key_are_refused(tmp_path):
    path = _official_point_mae(tmp_path / "pretrain.pth", _built(PointMAE, seed=1))
    method = _from_file(PointMAE, path)
    with pytest.raises(PublishedCheckpointError, match="changed while this run read it"):
        record_checkpoint(method, (str(path), "0" * 64))
    record_checkpoint(method, (str(path), method.pretrain_info["init_checkpoint"]["sha256"]))  # the same bytes


# -- (iv) a method without a mapping refuses the setting --------------------------------------------------------------
def test_a_method_without_a_mapping_refuses_the_setting_by_name(tmp_path):
    path = _official_point_mae(tmp_path / "ckpt" / "pretrain.pth", _built(PointMAE, seed=0))
    with pytest.raises(ConfigError, match=r"--set method\.init_checkpoint: method 'random-pointnet' cannot start "
                                          r"from a published checkpoint \(methods that can: crosspoint, point-mae;"):
        execute(_spec(tmp_path, path, method="random-pointnet"))
    assert not (tmp_path / "results").exists() and not (tmp_path / "data").exists()


def test_a_config_field_without_the_hook_is_not_support():
    class Unmapped(PointMAE):  # declares init_checkpoint (inherited) but maps nothing
        load_official_state = Method.load_official_state

    assert PointMAE.loads_published_checkpoints() and not Unmapped.loads_published_checkpoints()
    with pytest.raises(ConfigError, match="method 'point-mae' cannot start from a published checkpoint"):
        method_from_preset(Unmapped, "quick", {"init_checkpoint": "x.pth"})


# -- (v) the command line ---------------------------------------------------------------------------------------------
def test_bench_run_evaluates_a_published_checkpoint(tmp_path):
    path = _official_point_mae(tmp_path / "ckpt" / "pretrain.pth", _built(PointMAE, seed=7))
    out = tmp_path / "tmp"
    cmd = [*BENCH, "run", "--method", "point-mae", "--task", "synth-svm", "--preset", "quick", "--seeds", "0",
           "--set", f"method.init_checkpoint={path}", "--set", "train.epochs=0", "--results-dir", str(out),
           "--data-root", str(tmp_path / "data"), *tiny_set_args()]
    done = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (result_file,) = out.glob("runs/*/result.json")
    result = json.loads(result_file.read_text())
    assert result["pretraining"]["init_checkpoint"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert result["config"]["method"]["init_checkpoint"] == str(path) and 0 <= result["metrics"]["overall_acc"] <= 100
