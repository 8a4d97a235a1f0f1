"""The Method contract, checked for every registered method (new methods are tested for free).

For each method under its ``quick`` preset, on a tiny random batch shaped like
the data contract (with the method's own data settings applied):
using it before pretraining raises a clear error; a few optimisation steps of
its pretext task lower the loss; ``embed`` returns [B, D] finite features that
are deterministic in eval mode; the state dict round-trips through
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io

import pytest
import torch

from ssl3d.bench.config import apply_overrides
from ssl3d.datasets import DataConfig
from ssl3d.methods import NotPretrainedError, get_method, list_methods
from ssl3d.methods.trainer import seed_everything

# small sizes keep every method's check within seconds on a 2-core CPU
SMALL = {"n_points": 128, "view_size": 32, "image_size": 32, "voxel_resolution": 32}
VIEWS_PER_RIG = {"ring12": 12, "first8": 8, "dodeca20": 20}


def fake_batch(method, batch_size: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with the shapes of the data contract for ``method``'s data settings."""
    overrides = {**SMALL, **method.data_overrides()}
    cfg = apply_overrides(DataConfig(), overrides)
    g = torch.Generator().manual_seed(seed)
    n_views = VIEWS_PER_RIG.get(cfg.view_rig, cfg.n_views)
    res = cfg.voxel_resolution
    points = torch.randn(batch_size, cfg.n_points, 3, generator=g)
    return {
        "points": points / points.norm(dim=-1, keepdim=True).amax(dim=1, keepdim=True),
        "normals": torch.nn.functional.normalize(torch.randn(batch_size, cfg.n_points, 3, generator=g), dim=-1),
        "voxels": (torch.rand(batch_size, res, res, res, generator=g) > 0.7).float(),
        "views": torch.rand(batch_size, n_views, 1, cfg.view_size, cfg.view_size, generator=g),
        "image": torch.rand(batch_size, 3, cfg.image_size, cfg.image_size, generator=g),
        "mask": (torch.rand(batch_size, cfg.image_size, cfg.image_size, generator=g) > 0.5).float(),
        "label": torch.arange(batch_size) % 2,
        "index": torch.arange(batch_size),
    }


def _quick(name: str):
    overrides = {}
    cls = get_method(name)
    if "global_dim" in cls.Config.__dataclass_fields__:
        overrides["global_dim"] = 64
    return cls.from_preset("quick", overrides)


@pytest.mark.parametrize("name", list_methods())
def test_unpretrained_method_refuses_to_embed(name):
    method = _quick(name)
    modality = sorted(method.embed_modalities)[0]
    with pytest.raises(NotPretrainedError):
        method.embed(fake_batch(method), modality)


@pytest.mark.parametrize("name", list_methods())
def test_embed_shapes_determinism_and_state_round_trip(name):
    seed_everything(0)
    method = _quick(name)
    method.model = method.build_model()
    batch = fake_batch(method)
    for modality in sorted(method.embed_modalities):
        a = method.embed(batch, modality)
        b = method.embed(batch, modality)
        assert a.ndim == 2 and a.shape[0] == 4 and torch.isfinite(a).all()
        assert torch.equal(a, b)
    buf = io.BytesIO()
    torch.save(method.state_dict(), buf)
    buf.seek(0)
    clone = type(method)().load_state_dict(torch.load(buf, weights_only=True))
    modality = sorted(method.embed_modalities)[0]
    assert torch.allclose(clone.embed(batch, modality), method.embed(batch, modality), atol=1e-6)


@pytest.mark.parametrize("name", [n for n in list_methods() if get_method(n).pretrain_modalities])
def test_a_few_steps_lower_the_pretext_loss(name):
    seed_everything(0)
    method = _quick(name)
    method.model = model = method.build_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = fake_batch(method, batch_size=4)

    def loss_at(step: int) -> float:
        model.eval()  # fixed BatchNorm statistics/dropout so the two losses are comparable
        torch.manual_seed(123)
        with torch.no_grad():
            return float(method.training_step(batch, step)["loss"])

    before = loss_at(0)
    for step in range(8):
        model.train()
        torch.manual_seed(step)
        loss = method.training_step(batch, step)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss_at(0) < before
