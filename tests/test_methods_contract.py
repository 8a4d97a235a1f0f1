"""The Method contract, checked for every registered method (new methods are tested for free).

For each method under its ``quick`` preset, on a tiny random batch shaped like
the data contract (with the method's own data settings applied):
using it before pretraining raises a clear error; ``embed`` returns [B, D]
finite features that are deterministic in eval mode; the state dict
round-trips through ``torch.load(weights_only=True)``. That a few optimisation
steps lower the pretext loss is tested per method (tests/test_<method>.py), on
batches and step sizes chosen for that method: a generic random batch is too
weak a signal for methods with heavy augmentation.
"""

from __future__ import annotations

import io

import pytest
import torch

from ssl3d.bench.perf import fake_batch as perf_fake_batch
from ssl3d.methods import NotPretrainedError, get_method, list_methods
from ssl3d.core.seeding import seed_everything



def fake_batch(method, batch_size: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """Small random tensors shaped like the data contract under the method's data settings."""
    return perf_fake_batch(method, batch_size, small=True, seed=seed)


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
