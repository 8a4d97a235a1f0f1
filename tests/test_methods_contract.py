"""The Method contract, checked for every registered method with the plugin authors' kit.

:func:`ssl3d.methods.testing.check_method` (its module docstring lists the
checks) runs each method under its ``quick`` preset on fake batches shaped by
the method's own data settings: un-pretrained errors, one pretraining step, a
few steps on a fixed batch lower the loss, embed shapes and determinism,
encoders, the optional hooks, and the state-dict round trip. Plugins call the
same function (docs/examples/ssl3d_rotnet/test_ssl3d_rotnet.py). How each
method learns on real data is tested per method (tests/test_<method>.py).
"""

from __future__ import annotations

import pytest
import torch

from ssl3d.methods import get_method, list_methods
from ssl3d.methods.testing import check_method


def _small_overrides(cls) -> dict[str, object]:
    """Narrower networks where a config allows it, to keep the file fast."""
    fields = cls.Config.__dataclass_fields__
    overrides: dict[str, object] = {}
    if "global_dim" in fields:
        overrides["global_dim"] = 64
    if "metric_pairs" in fields:  # CM-CV's pretext metrics after pretraining
        overrides["metric_pairs"] = 8
    # smaller pictures: a ResNet's cost scales with the pixels, its contract does not (cmic's six 32-px views and
    # photos made it the slowest contract check)
    for name in ("view_size", "image_size"):
        if name in fields and getattr(cls.from_preset("quick").config, name) <= 32:
            overrides[name] = 16
    return overrides


@pytest.mark.parametrize("name", list_methods())
def test_method_meets_the_contract(name):
    cls = get_method(name)
    check_method(cls, overrides=_small_overrides(cls))


def test_a_false_untrained_twin_is_named():
    from ssl3d.methods.cmcv import CM
    from ssl3d.methods.testing import check_untrained_twin

    class OtherMethod(CM):
        untrained_network_of = "cmic"

    with pytest.raises(AssertionError, match="untrained_network_of='cmic': `embed_modalities` differs from cmic's"):
        check_untrained_twin(OtherMethod)

    class OtherNetwork(CM):  # the same declarations, another initialisation
        def build_model(self):
            model = super().build_model()
            with torch.no_grad():
                next(model.parameters()).add_(1.0)
            return model

    with pytest.raises(AssertionError, match="untrained_network_of='cmcv': preset '\\w+' seeded with 0, the networks"):
        check_untrained_twin(OtherNetwork)

    class OtherEmbedding(CM):  # the same weights, embedded differently
        def embed_batch(self, batch, modality):
            return 2 * super().embed_batch(batch, modality)

    with pytest.raises(AssertionError, match=r"untrained, embed\(batch, '\w+'\) differs from cmcv's"):
        check_untrained_twin(OtherEmbedding)
