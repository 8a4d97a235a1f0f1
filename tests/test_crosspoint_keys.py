"""The released CrossPoint checkpoint layout (methods/crosspoint_keys.py): key names, the mapping onto ours,
and a dense re-implementation of the released DGCNN forward that reads the official layout."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ssl3d.methods.crosspoint import CrossPoint
from ssl3d.methods.crosspoint_keys import from_official_image_state, from_official_point_state, to_official_point_state

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def model(emb_dims: int = 1024, k: int = 20, seed: int = 0):
    method = CrossPoint.from_preset("quick", {"emb_dims": emb_dims, "k": k})
    torch.manual_seed(seed)
    net = method.build_model()
    with torch.no_grad():  # BatchNorm away from its defaults, so a misplaced tensor shows
        for name, buffer in net.named_buffers():
            if name.endswith("running_mean"):
                buffer.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buffer.uniform_(0.5, 2.0)
        for name, param in net.named_parameters():
            if "norm" in name or name.startswith("point_head.1"):
                param.normal_(1.0 if name.endswith("weight") else 0.0, 0.2)
    return net.eval()


def released_point_keys() -> list[str]:
    """The keys of models/dgcnn.py's DGCNN(args) state dict, in order: bn1..bn5 are registered first, then
    conv1..conv5 (each re-registering its BatchNorm as conv{l}.1), then inv_head."""
    keys = [f"bn{l}.{key}" for l in range(1, 6) for key in BN]
    for l in range(1, 6):
        keys += [f"conv{l}.0.weight", *(f"conv{l}.1.{key}" for key in BN)]
    return keys + ["inv_head.0.weight", "inv_head.0.bias", *(f"inv_head.1.{key}" for key in BN),
                   "inv_head.3.weight", "inv_head.3.bias"]


def test_official_layout_has_the_released_keys_and_shapes():
    official = to_official_point_state(model().state_dict())
    assert list(official) == released_point_keys()
    shapes = {key: tuple(value.shape) for key, value in official.items()}
    assert [shapes[f"conv{l}.0.weight"] for l in range(1, 5)] == [(64, 6, 1, 1), (64, 128, 1, 1), (128, 128, 1, 1),
                                                                  (256, 256, 1, 1)]
    assert shapes["conv5.0.weight"] == (1024, 512, 1) and shapes["bn5.weight"] == (1024,)
    assert shapes["inv_head.0.weight"] == (1024, 2048) and shapes["inv_head.3.weight"] == (256, 1024)


def test_round_trip_gives_back_our_tensors():
    state = model().state_dict()
    mapped = from_official_point_state(to_official_point_state(state), state)
    assert set(mapped) == {key for key in state if key.startswith(("points.", "point_head."))}
    assert all(torch.equal(mapped[key], state[key]) for key in mapped)


def released_forward(state: dict, x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """models/dgcnn.py's DGCNN forward in eval mode, written densely: edge features [x_j - x_i, x_i] of the k
    nearest neighbours (self included), Conv2d 1x1 + BN + LeakyReLU(0.2), max over neighbours; conv5, max and
    average pooling concatenated (feat), then inv_head. Returns (feat, inv_feat)."""
    def bn(h, prefix):
        shape = (1, -1) + (1,) * (h.dim() - 2)
        mean, var = state[f"{prefix}.running_mean"].view(shape), state[f"{prefix}.running_var"].view(shape)
        return (h - mean) / torch.sqrt(var + 1e-5) * state[f"{prefix}.weight"].view(shape) + \
            state[f"{prefix}.bias"].view(shape)

    feats, layers = x.transpose(1, 2), []  # [B, C, N]
    for l in range(1, 5):
        idx = (-torch.cdist(feats.transpose(1, 2), feats.transpose(1, 2))).topk(k, dim=-1).indices  # [B, N, k]
        centre = feats.unsqueeze(-1).expand(-1, -1, -1, k)
        gathered = torch.stack([f[:, i] for f, i in zip(feats, idx)])  # [B, C, N, k]
        edge = torch.cat([gathered - centre, centre], dim=1)
        feats = F.leaky_relu(bn(F.conv2d(edge, state[f"conv{l}.0.weight"]), f"bn{l}"), 0.2).amax(dim=-1)
        layers.append(feats)
    h = F.leaky_relu(bn(F.conv1d(torch.cat(layers, 1), state["conv5.0.weight"]), "bn5"), 0.2)
    feat = torch.cat([h.amax(dim=-1), h.mean(dim=-1)], dim=1)
    hidden = F.relu(bn(F.linear(feat, state["inv_head.0.weight"], state["inv_head.0.bias"]), "inv_head.1"))
    return feat, F.linear(hidden, state["inv_head.3.weight"], state["inv_head.3.bias"])


def test_official_weights_give_the_released_forward():
    source = model(emb_dims=64, k=6)
    official = to_official_point_state(source.state_dict())
    target = model(emb_dims=64, k=6, seed=1)  # other weights until the official ones are loaded
    assert not torch.equal(target.state_dict()["points.convs.0.weight"], source.state_dict()["points.convs.0.weight"])
    target.load_state_dict({**target.state_dict(), **from_official_point_state(official, target.state_dict())})
    x = torch.randn(3, 40, 3)
    with torch.no_grad():
        feat, inv_feat = released_forward(official, x, k=6)
        ours = target.points(x).global_feature
        assert torch.allclose(ours, feat, atol=1e-4)
        assert torch.allclose(target.point_head(ours), inv_feat, atol=1e-4)
        # the column halves matter: unswapped EdgeConv weights give another network
        plain = {**official, "conv2.0.weight": torch.cat([official["conv2.0.weight"][:, 64:],
                                                          official["conv2.0.weight"][:, :64]], dim=1)}
        assert not torch.allclose(released_forward(plain, x, k=6)[0], feat, atol=1e-2)


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.update({"linear1.weight": torch.zeros(512, 2048)}), "unexpected key 'linear1.weight'"),
    (lambda s: s.update({f"module.{k}": s.pop(k) for k in list(s)}), "strip DataParallel's 'module.' prefix"),
    (lambda s: s.pop("bn3.running_var"), "key 'bn3.running_var' is missing"),
    (lambda s: s["conv2.1.bias"].add_(1.0), "'conv2.1.bias' differs from 'bn2.bias'"),
    (lambda s: s.update({"conv3.0.weight": torch.zeros(128, 130, 1, 1)}),
     r"official 'conv3.0.weight' has shape \(128, 130, 1, 1\), which does not fit our 'points.convs.2.weight' "
     r"of shape \(128, 128\)"),
])
def test_a_checkpoint_that_does_not_fit_is_refused_naming_the_key(edit, message):
    state = model(emb_dims=64).state_dict()
    official = {key: value.clone() for key, value in to_official_point_state(state).items()}
    edit(official)
    with pytest.raises(ValueError, match=message):
        from_official_point_state(official, state)


def test_another_embedding_width_is_refused():
    official = to_official_point_state(model(emb_dims=64).state_dict())
    with pytest.raises(ValueError, match=r"official 'conv5.0.weight' has shape \(64, 512, 1\).*\(1024, 512\)"):
        from_official_point_state(official, model(emb_dims=1024).state_dict())


def test_image_keys_are_the_released_names_and_rgb_is_refused():
    state = model().state_dict()
    official = {key[len("image."):]: value.clone() for key, value in state.items() if key.startswith("image.")}
    assert "resnet.layer1.0.conv1.weight" in official and "inv_head.0.weight" in official
    mapped = from_official_image_state(official, state)
    assert all(torch.equal(mapped[key], state[key]) for key in mapped) and len(mapped) == len(official)
    official["resnet.conv1.weight"] = torch.zeros(64, 3, 7, 7)  # the released ResNet50 reads RGB
    with pytest.raises(ValueError, match=r"'resnet.conv1.weight' has shape \(64, 3, 7, 7\).*\(64, 1, 7, 7\)"):
        from_official_image_state(official, state)
    with pytest.raises(ValueError, match="unexpected key 'resnet.fc.weight'"):
        from_official_image_state({**official, "resnet.fc.weight": torch.zeros(1)}, state)
