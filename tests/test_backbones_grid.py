"""Grid backbones: SwitchVAE voxel encoder/decoder and the ResNet image encoders."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from ssl3d.methods.backbones.image import TRUNK_DIMS, ImageEncoder, MultiViewEncoder, resnet_trunk
from ssl3d.methods.backbones.voxel_cnn import VoxelDecoder, VoxelEncoder

torch.set_num_threads(1)


def _voxels(b: int = 2, r: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, r, r, r, generator=g) > 0.7).float()


def _images(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- voxels


def test_voxel_encoder_paper_sizes() -> None:
    enc = VoxelEncoder()
    vox = _voxels()
    mu, logvar = enc(vox)
    assert mu.shape == logvar.shape == (2, 128)
    assert enc.features(vox).shape == (2, 343)
    # valid 3^3 (stride 1) / padded (stride 2): 32 -> 30 -> 15 -> 13 -> 7, as in the official code
    assert enc.conv_output_shape == (64, 7, 7, 7)
    # parameter count from the layer list, computed by hand
    convs = (1 * 8 + 8 * 16 + 16 * 32 + 32 * 64) * 27 + (8 + 16 + 32 + 64)
    bn3d = 2 * (8 + 16 + 32 + 64)
    fc = 64 * 7**3 * 343 + 343 + 2 * 343
    heads = 2 * (343 * 128 + 128 + 2 * 128)
    assert sum(p.numel() for p in enc.parameters()) == convs + bn3d + fc + heads
    # a channel dim of one is accepted and gives the same result
    enc.eval()
    torch.testing.assert_close(enc(vox)[0], enc(vox.unsqueeze(1))[0])
    with pytest.raises(ValueError, match=r"\[B, 32, 32, 32\]"):
        enc(_voxels(r=16))


def test_voxel_decoder_output_range_and_logits() -> None:
    dec = VoxelDecoder().eval()
    z = torch.randn(3, 128, generator=torch.Generator().manual_seed(1))
    probs = dec(z)
    assert probs.shape == (3, 32, 32, 32)
    assert probs.min() >= 0 and probs.max() <= 1
    torch.testing.assert_close(probs, torch.sigmoid(dec.logits(z)))
    # 1 x 7^3 -> 7 -> 15 -> 15 -> 32 -> 32: R = 4 s + 4 with s^3 = hidden_dim
    small = VoxelDecoder(latent_dim=8, hidden_dim=27, channels=(4, 4, 4, 4), resolution=16)
    assert small(torch.randn(2, 8)).shape == (2, 16, 16, 16)
    with pytest.raises(ValueError, match="perfect cube"):
        VoxelDecoder(hidden_dim=300)
    with pytest.raises(ValueError, match="hidden_dim=343"):
        VoxelDecoder(hidden_dim=216, resolution=32)
    with pytest.raises(ValueError, match="z must be"):
        dec(torch.randn(3, 64))


def test_voxel_autoencoder_gradients_and_eval_determinism() -> None:
    enc, dec = VoxelEncoder(), VoxelDecoder()
    vox = _voxels()
    mu, logvar = enc(vox)
    z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
    loss = nn.functional.binary_cross_entropy(dec(z), vox)
    loss.backward()
    for module in (enc, dec):
        for name, p in module.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    enc.eval()
    assert torch.equal(enc(vox)[0], enc(vox)[0])


# --------------------------------------------------------------------------- ResNet trunks


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50"])
def test_resnet_trunk_dims(arch: str) -> None:
    trunk = resnet_trunk(arch).eval()
    with torch.no_grad():
        assert trunk(_images(2, 3, 32, 32)).shape == (2, TRUNK_DIMS[arch])
    assert TRUNK_DIMS[arch] == (2048 if arch == "resnet50" else 512)


def test_first_conv_from_local_pretrained_weights(tmp_path) -> None:
    torch.manual_seed(0)
    source = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save(source.state_dict(), path)
    rgb = source.conv1.weight.detach()
    four = resnet_trunk("resnet18", in_channels=4, weights=str(path))
    assert four.conv1.weight.shape == (64, 4, 7, 7)
    torch.testing.assert_close(four.conv1.weight[:, :3], rgb)
    torch.testing.assert_close(four.conv1.weight[:, 3], rgb.mean(dim=1))
    torch.testing.assert_close(four.layer3[1].conv2.weight, source.layer3[1].conv2.weight)
    one = resnet_trunk("resnet18", in_channels=1, weights=str(path))
    assert one.conv1.weight.shape == (64, 1, 7, 7)
    torch.testing.assert_close(one.conv1.weight[:, 0], rgb.mean(dim=1))
    # a grey image replicated to RGB gives the same conv1 response with either trunk
    grey = _images(1, 1, 32, 32)
    torch.testing.assert_close(
        one.conv1(grey) * 3, source.conv1(grey.expand(-1, 3, -1, -1)), atol=1e-5, rtol=1e-5
    )
    assert isinstance(one.fc, nn.Identity)


def test_named_weights_fail_clearly_without_download(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="not available locally") as info:
        resnet_trunk("resnet50", weights="IMAGENET1K_V1")
    assert str(tmp_path) in str(info.value)
    with pytest.raises(ValueError, match="valid names"):
        resnet_trunk("resnet18", weights="NO_SUCH_WEIGHTS")
    with pytest.raises(ValueError, match="arch must be"):
        resnet_trunk("vgg16")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- encoders


def test_cmic_query_and_rendering_encoders() -> None:
    query = ImageEncoder("resnet50", in_channels=4, out_dim=128, head="bn_linear").eval()
    rgb_mask = torch.cat([_images(2, 3, 32, 32), (_images(2, 1, 32, 32) > 0.5).float()], dim=1)
    with torch.no_grad():
        out = query(rgb_mask)
        # head = BatchNorm1d then Linear on the 2048-d trunk feature
        bn, lin = query.head[0], query.head[1]
        manual = lin(bn(query.trunk(rgb_mask)))
    assert out.shape == (2, 128) and query.out_dim == 128
    torch.testing.assert_close(out, manual)
    assert query.trunk.conv1.in_channels == 4
    render = ImageEncoder("resnet34", in_channels=1, out_dim=128, head="linear")
    assert render(_images(3, 1, 32, 32)).shape == (3, 128)
    bare = ImageEncoder("resnet18")
    assert bare.out_dim == 512
    with pytest.raises(ValueError, match="needs a positive out_dim"):
        ImageEncoder("resnet18", head="linear")
    with pytest.raises(ValueError, match="C=4"):
        query(_images(2, 3, 32, 32))


def test_multiview_gru_is_the_last_hidden_state() -> None:
    torch.manual_seed(0)
    enc = MultiViewEncoder("resnet18", in_channels=1, view_dim=32, aggregate="gru", out_dim=24).eval()
    views = _images(2, 3, 1, 32, 32)
    with torch.no_grad():
        out, per_view = enc(views, return_view_embeddings=True)
        # independent recurrence with a GRUCell holding the same weights
        cell = nn.GRUCell(32, 24)
        gru = enc.aggregator
        cell.load_state_dict(
            {
                "weight_ih": gru.weight_ih_l0,
                "weight_hh": gru.weight_hh_l0,
                "bias_ih": gru.bias_ih_l0,
                "bias_hh": gru.bias_hh_l0,
            }
        )
        h = torch.zeros(2, 24)
        for v in range(3):
            h = cell(per_view[:, v], h)
    assert out.shape == (2, 24) and per_view.shape == (2, 3, 32)
    torch.testing.assert_close(out, h, atol=1e-6, rtol=1e-6)
    # the shared trunk embeds each view on its own
    with torch.no_grad():
        single = enc.view_embeddings(views[:, 1:2])
    torch.testing.assert_close(single[:, 0], per_view[:, 1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("aggregate", ["max", "mean"])
def test_multiview_pooling_aggregators(aggregate: str) -> None:
    enc = MultiViewEncoder("resnet18", in_channels=3, view_dim=16, aggregate=aggregate, out_dim=None).eval()
    views = _images(2, 4, 3, 32, 32)
    with torch.no_grad():
        out, per_view = enc(views, return_view_embeddings=True)
        shuffled = enc(views[:, [2, 0, 3, 1]])
    expected = per_view.max(dim=1).values if aggregate == "max" else per_view.mean(dim=1)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(out, shuffled, atol=1e-5, rtol=1e-5)  # order of views is irrelevant


def test_multiview_flatten_matches_switchvae_sizes_and_channels_last() -> None:
    # SwitchVAE Sec. 3.2: a 137 x 137 view gives 5 x 5 x 512 feature maps, flattened, FC to 1024
    assert MultiViewEncoder("resnet18", pool="flatten", image_size=137).embed[0].in_features == 5 * 5 * 512
    # 40 px -> 20 -> 10 -> 5 -> 3 -> 2: a 2 x 2 x 512 map
    enc = MultiViewEncoder("resnet18", in_channels=3, pool="flatten", image_size=40, view_dim=64, out_dim=32).eval()
    assert enc.embed[0].in_features == 2 * 2 * 512
    views = _images(1, 2, 3, 40, 40)
    with torch.no_grad():
        out = enc(views)
    assert out.shape == (1, 32) and enc.out_dim == 32
    fast = MultiViewEncoder(
        "resnet18", in_channels=3, pool="flatten", image_size=40, view_dim=64, out_dim=32, channels_last=True
    ).eval()
    fast.load_state_dict(enc.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fast(views), out, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="built for"):
        enc(_images(1, 2, 3, 64, 64))
    with pytest.raises(ValueError, match="needs image_size"):
        MultiViewEncoder(pool="flatten")
    with pytest.raises(ValueError, match="aggregate"):
        MultiViewEncoder(aggregate="attention")  # type: ignore[arg-type]
