"""The ``paper`` presets start SwitchVAE's and CMIC's ResNets from ImageNet, read from a local file (issue 33).

No weight file exists on CI and nothing is downloaded, so the load path is tested with a fake file: a seeded
random torchvision ResNet18 state dict saved with ``torch.save`` into a temporary torch hub cache
(``$TORCH_HOME``) or given as a path; the trunk must then hold exactly the file's tensors. A missing file
must stop ``bench run`` before anything is written, in one line naming the file, its URL and the ``--set``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import torchvision

from ssl3d.bench.cli import main
from ssl3d.bench.run.runner import RunSpec, validate_run
from ssl3d.core.config import ConfigError
from ssl3d.methods import get_method
from ssl3d.methods.backbones.pretrained import (
    WeightsNotFoundError, check_weights_available, load_weights, local_weights_only,
)

# the file names and URLs torchvision gives its ImageNet weights (read off download.pytorch.org's names)
RESNET18 = ("resnet18-f37072fd.pth", "https://download.pytorch.org/models/resnet18-f37072fd.pth")
RESNET34 = ("resnet34-b627a593.pth", "https://download.pytorch.org/models/resnet34-b627a593.pth")
RESNET50 = ("resnet50-0676ba61.pth", "https://download.pytorch.org/models/resnet50-0676ba61.pth")


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    """An empty torch hub cache of this test: its ``checkpoints`` folder (nothing in the user's cache is read)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def _fake_resnet18(path: Path, seed: int = 7) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    state = torchvision.models.resnet18(weights=None).state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def _assert_trunk_holds(trunk: torch.nn.Module, state: dict[str, torch.Tensor], conv1: torch.Tensor) -> None:
    got = trunk.state_dict()
    assert set(got) == {k for k in state if not k.startswith("fc.")}  # the classifier is dropped
    for key, value in got.items():
        assert torch.equal(value, conv1 if key == "conv1.weight" else state[key]), key


def test_paper_presets_name_torchvisions_imagenet_weights():
    for name in ("switchvae", "switchvae-nocontrast", "switch-btcvae", "image-vae"):
        cls = get_method(name)
        assert cls.from_preset("paper").config.image_weights == "IMAGENET1K_V1"
        assert cls.from_preset("quick").config.image_weights is None
        assert cls.from_preset("cpu").config.image_weights is None
    assert get_method("voxel-vae").from_preset("paper").config.image_weights is None  # no image encoder
    for name in ("cmic", "cmic-noncat", "cmic-hsv", "cmic-noaug", "cmic-triplet"):
        cls = get_method(name)
        assert cls.from_preset("paper").config.weights == "IMAGENET1K_V1"
        assert cls.from_preset("quick").config.weights is None and cls.from_preset("cpu").config.weights is None
    for arch in ("resnet18", "resnet34", "resnet50"):  # the name is torchvision's for every trunk used
        assert torchvision.models.get_model_weights(arch)["IMAGENET1K_V1"].name == "IMAGENET1K_V1"


def test_switchvae_paper_trunk_loads_the_hub_file(hub):
    state = _fake_resnet18(hub / RESNET18[0])
    method = get_method("switchvae").from_preset("paper", {"view_dim": 16})
    check_weights_available(method.config)  # the runner's check passes
    trunk = method.build_model()["image_encoder"].views.trunk
    # grey views: the 1-channel first convolution is the mean of the RGB kernel
    _assert_trunk_holds(trunk, state, state["conv1.weight"].mean(dim=1, keepdim=True))
    torch.manual_seed(7)
    fresh = get_method("switchvae").from_preset("paper", {"view_dim": 16, "image_weights": "None"}).build_model()
    assert not torch.equal(fresh["image_encoder"].views.trunk.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])


def test_a_state_dict_file_given_by_path(tmp_path, hub):
    path = tmp_path / "weights" / "my-resnet18.pth"
    state = _fake_resnet18(path, seed=3)
    method = get_method("image-vae").from_preset("paper", {"view_dim": 16, "image_weights": str(path)})
    check_weights_available(method.config)
    _assert_trunk_holds(method.build_model()["image_encoder"].views.trunk, state,
                        state["conv1.weight"].mean(dim=1, keepdim=True))
    cmic = get_method("cmic").from_preset("quick", {"weights": str(path)})  # resnet18 for both trunks
    net = cmic.build_model()
    rgb = state["conv1.weight"]
    mean = rgb.mean(dim=1, keepdim=True)
    _assert_trunk_holds(net.query.trunk, state, torch.cat([rgb, mean], dim=1))  # RGB + mask channel
    _assert_trunk_holds(net.render.trunk, state, mean)


def test_missing_file_stops_the_run_before_any_side_effect(tmp_path, hub):
    spec = RunSpec("switchvae", "synth-svm", preset="paper", progress=False,
                   data_root=str(tmp_path / "data"), results_dir=str(tmp_path / "results"))
    with pytest.raises(WeightsNotFoundError) as info:
        validate_run(spec)
    message = str(info.value)
    assert "\n" not in message
    for part in (str(hub / RESNET18[0]), RESNET18[1], "--set method.image_weights=PATH",
                 "--set method.image_weights=None", "never downloaded"):
        assert part in message, part
    assert not (tmp_path / "data").exists() and not (tmp_path / "results").exists()
    assert not hub.exists()  # nothing fetched into the cache either
    path = tmp_path / "w.pth"
    _fake_resnet18(path)
    for fix, expected in (("None", None), (str(path), str(path))):  # the two fixes the message offers
        plan = validate_run(dataclasses.replace(spec, overrides={"method.image_weights": fix}))
        assert plan.method.config.image_weights == expected
    assert not (tmp_path / "results").exists()


def test_bench_run_says_it_in_one_line(tmp_path, hub, capsys):
    args = ["run", "--method", "cmic", "--task", "synth-ibsr", "--preset", "paper", "--no-progress",
            "--data-root", str(tmp_path / "data"), "--results-dir", str(tmp_path / "results")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("bench run: error: method.weights='IMAGENET1K_V1': torchvision's IMAGENET1K_V1 weights of "
                          "resnet50 and resnet34 are not available locally")
    for name, url in (RESNET50, RESNET34):  # both trunks' files, in one error
        assert str(hub / name) in err and url in err
    assert "--set method.weights=None" in err
    assert not (tmp_path / "data").exists() and not (tmp_path / "results").exists()


def test_methods_without_an_image_trunk_or_with_random_init_need_no_file(tmp_path, hub):
    for name, preset in (("voxel-vae", "paper"), ("switchvae", "quick"), ("switchvae", "cpu"), ("cmic", "cpu")):
        spec = RunSpec(name, "synth-svm", preset=preset, progress=False, data_root=str(tmp_path / "data"))
        assert validate_run(spec).method.name == name


def test_unknown_names_and_missing_paths_are_refused(tmp_path, hub):
    method = get_method("switchvae").from_preset("paper", {"image_weights": "IMAGENET9K_V9"})
    with pytest.raises(ConfigError, match=r"method.image_weights='IMAGENET9K_V9' is neither a file nor a "
                                          r"torchvision weight name of resnet18; valid names: IMAGENET1K_V1, DEFAULT"):
        check_weights_available(method.config)
    with pytest.raises(ConfigError, match="neither a file"):
        check_weights_available(get_method("switchvae").from_preset(
            "paper", {"image_weights": str(tmp_path / "absent.pth")}).config)


def test_building_without_the_check_still_fails_clearly(hub):
    with pytest.raises(WeightsNotFoundError, match=r"weights='IMAGENET1K_V1'.*" + RESNET18[1].replace(".", r"\.")):
        load_weights("resnet18", "IMAGENET1K_V1")
    _fake_resnet18(hub / RESNET18[0])
    assert set(load_weights("resnet18", "DEFAULT")) == set(torchvision.models.resnet18().state_dict())


def test_the_kit_compares_twins_without_the_file_only_by_leaving_it_out(hub):
    config = get_method("cmic-hsv").from_preset("paper").config
    plain = local_weights_only(config)  # no file: the weights field alone goes to None
    assert plain.weights is None and dataclasses.replace(plain, weights=config.weights) == config
    _fake_resnet18(hub / RESNET18[0])
    small = get_method("switchvae-nocontrast").from_preset("paper").config
    assert local_weights_only(small) is small  # the file is there: kept (and loaded by the kit)
