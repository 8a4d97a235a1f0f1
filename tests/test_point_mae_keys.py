"""The official Point-MAE checkpoint layout (methods/point_mae_keys.py): names, shapes, refusals, a loaded model."""

from __future__ import annotations

import io

import pytest
import torch

from ssl3d.methods.point_mae import PointMAE
from ssl3d.methods.point_mae_keys import load_official_state, official_to_ours, ours_to_official
from ssl3d.methods.testing import fake_batch

_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_BLOCK = ("norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.proj.weight", "attn.proj.bias", "norm2.weight",
          "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias")


def _official_keys() -> set[str]:
    """``Point_MAE.state_dict()`` keys of a 1-block encoder and 1-block decoder, written from models/Point_MAE.py."""
    keys = {"mask_token", "increase_dim.0.weight", "increase_dim.0.bias", "MAE_encoder.norm.weight",
            "MAE_encoder.norm.bias", "MAE_decoder.norm.weight", "MAE_decoder.norm.bias"}
    for conv in ("first_conv", "second_conv"):
        keys |= {f"MAE_encoder.encoder.{conv}.{i}.{p}" for i in (0, 3) for p in ("weight", "bias")}
        keys |= {f"MAE_encoder.encoder.{conv}.1.{p}" for p in _BN}
    for mlp in ("MAE_encoder.pos_embed", "decoder_pos_embed"):
        keys |= {f"{mlp}.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")}
    keys |= {f"MAE_encoder.blocks.blocks.0.{p}" for p in _BLOCK} | {f"MAE_decoder.blocks.0.{p}" for p in _BLOCK}
    return keys


def _method(**overrides) -> PointMAE:
    method = PointMAE.from_preset("quick", {"depth": 1, "decoder_depth": 1, **overrides})
    torch.manual_seed(0)
    method.model = method.build_model()
    return method


def test_our_tensors_carry_the_official_names():
    assert set(ours_to_official(_method().model.state_dict())) == _official_keys()


def test_paper_shapes_under_official_names():
    method = PointMAE.from_preset("paper")
    method.model = method.build_model()
    state = ours_to_official(method.model.state_dict())
    shapes = {"MAE_encoder.encoder.first_conv.0.weight": (128, 3, 1),
              "MAE_encoder.encoder.second_conv.0.weight": (512, 512, 1),
              "MAE_encoder.encoder.second_conv.3.weight": (384, 512, 1), "MAE_encoder.pos_embed.0.weight": (128, 3),
              "MAE_encoder.blocks.blocks.11.attn.qkv.weight": (1152, 384),
              "MAE_decoder.blocks.3.mlp.fc1.weight": (1536, 384), "mask_token": (1, 1, 384),
              "increase_dim.0.weight": (96, 384, 1)}
    assert {key: tuple(state[key].shape) for key in shapes} == shapes
    assert "MAE_encoder.blocks.blocks.12.norm1.weight" not in state and "MAE_decoder.blocks.4.norm1.weight" not in state


@pytest.mark.parametrize("wrap", ["bare", "base_model", "data_parallel"])
def test_an_official_checkpoint_loads_and_embeds_like_the_model_it_came_from(wrap):
    source = _method()
    official = ours_to_official(source.model.state_dict())
    if wrap == "data_parallel":  # saved from nn.DataParallel: every key prefixed module.
        official = {f"module.{k}": v for k, v in official.items()}
    checkpoint = official if wrap == "bare" else {"base_model": official, "epoch": 300}
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    buffer.seek(0)
    target = _method()
    torch.manual_seed(1)
    target.model = target.build_model()  # other weights, so loading must change them
    load_official_state(target.model, torch.load(buffer, weights_only=True))
    batch = fake_batch(source, 2, small=True)
    assert torch.equal(target.embed(batch, "points"), source.embed(batch, "points"))


def test_refusals_name_the_first_offending_key():
    model = _method().model
    official = ours_to_official(model.state_dict())
    other = ours_to_official(_method(group_size=8).model.state_dict())
    with pytest.raises(ValueError, match=r"'increase_dim.0.weight': shape \(24, 64, 1\)"):
        official_to_ours(other, model.state_dict())
    with pytest.raises(ValueError, match="'cls_head_finetune.0.weight' .* no counterpart"):
        official_to_ours({**official, "cls_head_finetune.0.weight": torch.zeros(256, 768)}, model.state_dict())
    missing = {k: v for k, v in official.items() if k != "MAE_encoder.norm.bias"}
    with pytest.raises(ValueError, match="lacks official key 'MAE_encoder.norm.bias' \\(ours: 'encoder.norm.bias'\\)"):
        official_to_ours(missing, model.state_dict())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError):
        load_official_state(model, missing)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing half-loaded
