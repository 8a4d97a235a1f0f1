"""Config overrides, presets, parsing errors and hashing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import pytest

from ssl3d.core.config import (
    ConfigError, apply_overrides, build_preset, config_hash, flat_keys, from_dict, parse_set_args, to_dict,
)
from ssl3d.methods import MethodConfig, TrainConfig
from ssl3d.methods.baselines import RandomPointNet


@dataclass(frozen=True)
class Inner:
    size: int = 3  # an int
    mode: Literal["a", "b"] = "a"  # a choice


@dataclass(frozen=True)
class Outer:
    inner: Inner = field(default_factory=Inner)  # nested section
    rate: float = 0.5  # a float
    flag: bool = False  # a bool
    grid: tuple[float, ...] = (1.0, 2.0)  # a tuple
    name: str | None = None  # optional string

    PRESETS: ClassVar[dict] = {"paper": {}, "quick": {"inner.size": 1, "rate": 0.1}}


def test_overrides_parse_by_annotation():
    cfg = apply_overrides(Outer(), {"inner.size": "7", "inner.mode": "b", "rate": "1e-3", "flag": "true",
                                    "grid": "0.1,10", "name": "none"})
    assert cfg.inner == Inner(7, "b")
    assert cfg.rate == pytest.approx(1e-3) and cfg.flag is True and cfg.grid == (0.1, 10.0) and cfg.name is None
    assert apply_overrides(Outer(), {"grid": "[3, 4.5]"}).grid == (3.0, 4.5)
    assert Outer().inner.size == 3  # the original is untouched


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError) as info:
        apply_overrides(Outer(), {"inner.sise": "1"}, section="method.")
    message = str(info.value)
    assert "method.inner.sise" in message
    for key in ("method.inner.size", "method.inner.mode", "method.rate", "method.flag"):
        assert key in message


@pytest.mark.parametrize("key,value,pattern", [
    ("inner.mode", "c", "not one of"),
    ("inner.size", "2.5", "not a valid int"),
    ("flag", "maybe", "not a boolean"),
    ("rate", "fast", "not a valid float"),
    ("inner", "3", "is a section"),
])
def test_bad_values_are_refused(key, value, pattern):
    with pytest.raises(ConfigError, match=pattern):
        apply_overrides(Outer(), {key: value})


def test_presets_and_round_trip():
    quick = build_preset(Outer, "quick")
    assert quick.inner.size == 1 and quick.rate == 0.1
    assert build_preset(Outer, "paper") == Outer()
    with pytest.raises(ConfigError, match="valid presets: paper, quick"):
        build_preset(Outer, "fast")
    assert from_dict(Outer, to_dict(quick)) == quick
    assert flat_keys(Outer()) == ["inner.size", "inner.mode", "rate", "flag", "grid", "name"]


def test_hash_is_order_independent_and_sensitive():
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_parse_set_args():
    assert parse_set_args(["a.b=1", "c = x=y"]) == {"a.b": "1", "c": "x=y"}
    with pytest.raises(ConfigError, match="key=value"):
        parse_set_args(["novalue"])


def test_method_preset_overrides_train_section():
    method = RandomPointNet.from_preset("quick", {"train.lr": "0.01", "global_dim": "64"})
    assert method.config.train.lr == 0.01 and method.config.global_dim == 64
    assert isinstance(method.config.train, TrainConfig) and isinstance(method.config, MethodConfig)
    with pytest.raises(ConfigError, match="method.train.epochs"):
        RandomPointNet.from_preset("quick", {"train.epoch": "3"})
