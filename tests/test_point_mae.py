"""Point-MAE (methods/point_mae.py, methods/point_mae_net.py): contract, sizes, schedule, embedding, a bench run."""

from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import tiny_set_args
from ssl3d.methods import get_method
from ssl3d.methods.augment.scale_translate import scale_translate
from ssl3d.methods.backbones.point_patches import group_patches, random_patch_mask
from ssl3d.methods.losses.chamfer import chamfer_l2
from ssl3d.methods.point_mae import PointMAE
from ssl3d.methods.point_mae_net import split_by_mask
from ssl3d.methods.testing import check_method, fake_batch


def _built(preset: str = "quick", **overrides) -> PointMAE:
    method = PointMAE.from_preset(preset, overrides)
    torch.manual_seed(0)
    method.model = method.build_model()
    return method


def test_registered_and_meets_the_method_contract():
    assert get_method("point-mae") is PointMAE
    assert not PointMAE.reads_labels
    check_method(PointMAE)


def test_paper_sizes_are_the_official_pretrain_yaml():
    cfg = PointMAE.from_preset("paper").config
    assert (cfg.num_points, cfg.num_groups, cfg.group_size, cfg.mask_ratio) == (1024, 64, 32, 0.6)
    assert (cfg.trans_dim, cfg.depth, cfg.num_heads, cfg.decoder_depth, cfg.decoder_num_heads) == (384, 12, 6, 4, 6)
    train = cfg.train
    assert (train.optimizer, train.lr, train.weight_decay, train.scheduler, train.epochs, train.batch_size) == \
        ("adamw", 1e-3, 0.05, "cosine", 300, 128)
    assert (cfg.warmup_epochs, cfg.drop_path_rate, cfg.augment) == (10, 0.1, True)


def test_paper_encoder_with_the_official_head_has_22_1m_parameters():
    # the count reported for Point-MAE's fine-tuning model: our encoder + its cls token, cls_pos and
    # cls_head_finetune (768 -> 256 -> 256 -> 40 with two BatchNorms)
    encoder = _built("paper").model.encoder
    head = (768 * 256 + 256) + 2 * 256 + (256 * 256 + 256) + 2 * 256 + (256 * 40 + 40) + 2 * 384
    total = sum(p.numel() for p in encoder.parameters()) + head
    assert round(total / 1e6, 1) == 22.1


def test_warm_up_then_cosine_as_timm_per_epoch():
    method = PointMAE.from_preset("paper")
    factors = [method.lr_factor(e) for e in (0, 5, 10, 150, 299)]
    expected_lr = [1e-6, 1e-6 + 5 * (1e-3 - 1e-6) / 10] + [
        1e-6 + 0.5 * (1e-3 - 1e-6) * (1 + math.cos(math.pi * e / 300)) for e in (10, 150, 299)]
    assert factors == pytest.approx([lr / 1e-3 for lr in expected_lr])
    assert method.schedule_reads_total_epochs()
    cpu = PointMAE.from_preset("cpu")
    assert cpu.lr_factor(0) == cpu.lr_factor(7) == 1.0 and not cpu.schedule_reads_total_epochs()


def test_no_weight_decay_on_biases_norms_and_the_mask_token():
    method = _built("paper", depth=1, decoder_depth=1)
    groups = method.configure_optimizer(method.model).param_groups
    names = {id(p): n for n, p in method.model.named_parameters()}
    plain = {names[id(p)] for p in groups[0]["params"]}
    decayed = {names[id(p)] for p in groups[1]["params"]}
    assert groups[0]["weight_decay"] == 0.0 and groups[1]["weight_decay"] == 0.05
    assert {"mask_token", "encoder.norm.weight", "encoder.blocks.blocks.0.attn.proj.bias"} <= plain
    assert {"encoder.blocks.blocks.0.attn.qkv.weight", "encoder.patch_embed.first_conv.0.weight",
            "increase_dim.0.weight"} <= decayed
    assert not plain & decayed and len(plain | decayed) == len(names)


def test_split_by_mask_keeps_the_official_token_order():
    mask = torch.tensor([[True, False, True, False, False], [False, True, False, True, False]])
    visible, masked = split_by_mask(mask)
    assert visible.tolist() == [[1, 3, 4], [0, 2, 4]] and masked.tolist() == [[0, 2], [1, 3]]
    with pytest.raises(ValueError, match="same number"):
        split_by_mask(torch.tensor([[True, False], [False, False]]))


def test_network_predicts_every_masked_patch_and_its_target_is_the_true_patch():
    method = _built()
    cfg = method.config
    patches, centres = method._patches(fake_batch(method, 3, small=True)["points"])
    mask = torch.zeros(3, cfg.num_groups, dtype=torch.bool)
    mask[:, [1, 4, 5, 9, 10, 11, 14, 15, 2]] = True  # 9 = int(0.6 * 16) masked per cloud
    pred, target = method.model(patches, centres, mask)
    assert pred.shape == target.shape == (3 * 9, cfg.group_size, 3)
    assert torch.equal(target.view(3, 9, cfg.group_size, 3), patches[:, [1, 2, 4, 5, 9, 10, 11, 14, 15]])


def test_training_step_is_chamfer_l2_of_the_masked_patches():
    method = _built()
    batch = fake_batch(method, 4, small=True)
    method.model.train()
    torch.manual_seed(7)
    loss = method.training_step(batch, 0)["loss"]
    # the same draws by hand: augmentation, then the mask (the patches' FPS and kNN are deterministic)
    torch.manual_seed(7)
    points = scale_translate(batch["points"])
    patches, centres = group_patches(points, 16, 16)
    mask = random_patch_mask(4, 16, 0.6)
    pred, target = method.model(patches, centres, mask)
    assert loss.item() == pytest.approx(chamfer_l2(pred, target).mean().item(), rel=1e-5)


def test_embedding_is_max_and_mean_of_all_patch_tokens_and_per_shape():
    method = _built()
    batch = fake_batch(method, 4, small=True)
    seen = []
    hook = method.model.encoder.norm.register_forward_hook(lambda m, i, out: seen.append(out))
    features = method.embed(batch, "points")
    hook.remove()
    tokens = seen[0]
    assert tokens.shape == (4, method.config.num_groups, method.config.trans_dim)  # no patch masked
    assert torch.allclose(features, torch.cat([tokens.amax(1), tokens.mean(1)], dim=-1))
    alone = method.embed({"points": batch["points"][:2]}, "points")
    assert torch.allclose(alone, features[:2], atol=1e-6)
    assert method.encoder("points") is method.model.encoder


def test_cross_field_settings_are_checked_once_all_overrides_are_in():
    ok = PointMAE.from_preset("paper", {"trans_dim": 64, "num_heads": 4, "decoder_num_heads": 4})
    assert ok.data_overrides() == {}
    for overrides, match in (({"num_groups": 2048}, "num_groups"), ({"trans_dim": 100}, "divisible"),
                             ({"num_groups": 2, "mask_ratio": 0.4}, "at least one")):
        method = PointMAE.from_preset("paper", overrides)
        with pytest.raises(ValueError, match=match):
            method.data_overrides()  # what validate_run calls before anything is written
        with pytest.raises(ValueError, match=match):
            method.build_model()


def test_bench_run_synth_svm_end_to_end(tmp_path, capsys):
    from ssl3d.bench.cli import main  # in process: the command, without an interpreter start-up

    results = tmp_path / "pmae-results"
    assert main(["run", "--method", "point-mae", "--task", "synth-svm", "--preset", "quick", "--seeds", "0",
                 "--no-progress", "--results-dir", str(results), "--data-root", str(tmp_path / "pmae-data"),
                 *tiny_set_args()]) == 0
    (result,) = results.glob("runs/*/result.json")
    record = json.loads(result.read_text())
    assert record["method"] == "point-mae" and 0 <= record["metrics"]["overall_acc"] <= 100
    capsys.readouterr()
    assert main(["run", "--method", "point-mae", "--task", "synth-svm", "--no-progress", "--set",
                 "method.trans_dim=99", "--results-dir", str(tmp_path / "bad"),
                 "--data-root", str(tmp_path / "bad-data")]) == 2
    assert "divisible" in capsys.readouterr().err and not (tmp_path / "bad").exists()
