"""Range metadata on config fields, the user-error hierarchy and strict JSON output."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field

import numpy as np
import pytest

from ssl3d.core.config import ConfigError, apply_overrides, build_preset, check_ranges
from ssl3d.core.io import atomic_write_json
from ssl3d.bench.protocols import PROTOCOLS
from ssl3d.core.registry import UnknownNameError
from ssl3d.core.errors import UserError
from ssl3d.datasets import DATASETS
from ssl3d.datasets.base import DataConfig
from ssl3d.datasets.errors import DataFileError, DatasetNotPreparedError
from ssl3d.methods import METHODS, TrainConfig


@dataclass(frozen=True)
class Ranged:
    count: int = field(default=1, metadata={"range": "[1, inf)"})  # at least one
    share: float = field(default=0.5, metadata={"range": "(0, 1]"})  # a fraction, 0 excluded
    pair: tuple[float, float] = field(default=(0.1, 0.2), metadata={"range": "[0, 1)"})  # each element checked
    free: float = 3.0  # no range: anything finite


@pytest.mark.parametrize("key,value,allowed", [
    ("count", "0", ">= 1"),
    ("share", "0", "in (0, 1]"),
    ("share", "1.5", "in (0, 1]"),
    ("pair", "0.5,1", "in [0, 1)"),
])
def test_out_of_range_values_name_key_and_range(key, value, allowed):
    with pytest.raises(ConfigError) as info:
        apply_overrides(Ranged(), {key: value}, section="method.")
    assert f"method.{key}" in str(info.value) and allowed in str(info.value)


def test_in_range_values_and_bounds_are_accepted():
    cfg = apply_overrides(Ranged(), {"count": "7", "share": "1", "pair": "0,0.99", "free": "-2"})
    assert (cfg.count, cfg.share, cfg.pair, cfg.free) == (7, 1.0, (0.0, 0.99), -2.0)


def test_nan_is_refused_even_without_a_range():
    with pytest.raises(ConfigError, match="free"):
        apply_overrides(Ranged(), {"free": "nan"})


def test_malformed_range_spec_is_a_programming_error_not_a_user_error():
    @dataclass(frozen=True)
    class Broken:
        size: int = field(default=1, metadata={"range": "1..5"})

    with pytest.raises(TypeError, match="1..5"):
        apply_overrides(Broken(), {"size": "2"})


def test_epochs_minus_one_is_refused_by_the_preset_layer():
    cls = METHODS.get("random-pointnet")
    with pytest.raises(ConfigError, match=r"method\.train\.epochs=-1.*>= 0"):
        cls.from_preset("quick", {"train.epochs": "-1"})
    assert cls.from_preset("quick", {"train.epochs": "0"}).config.train.epochs == 0


def test_key_numeric_fields_declare_a_range():
    def ranged(cls, name):
        return "range" in {f.name: f for f in dataclasses.fields(cls)}[name].metadata

    for name in ("epochs", "batch_size", "lr", "momentum", "betas", "max_steps_per_epoch", "num_workers", "log_every"):
        assert ranged(TrainConfig, name), name
    for name in ("n_points", "voxel_resolution", "n_views", "view_size", "image_size", "workers"):
        assert ranged(DataConfig, name), name


def test_every_default_and_preset_is_in_range():
    for name in METHODS.names():
        cls = METHODS.get(name)
        for preset in getattr(cls.Config, "PRESETS", {"paper": {}}):
            check_ranges(build_preset(cls.Config, preset), section="method.")
    for name in DATASETS.names():
        check_ranges(DATASETS.get(name).Config(), section="data.")
    for name in PROTOCOLS.names():
        check_ranges(PROTOCOLS.get(name).Config(), section=f"{name}.")


def test_user_errors_keep_their_builtin_bases():
    assert issubclass(ConfigError, UserError) and issubclass(ConfigError, ValueError)
    assert issubclass(UnknownNameError, UserError) and issubclass(UnknownNameError, KeyError)
    assert issubclass(DataFileError, UserError) and issubclass(DataFileError, ValueError)
    assert issubclass(DatasetNotPreparedError, UserError) and issubclass(DatasetNotPreparedError, FileNotFoundError)
    assert str(UnknownNameError("unknown method 'x'")) == "unknown method 'x'"
    assert str(DataFileError("a.off", "empty")) == "a.off: empty"


def _strict_loads(text: str):
    def refuse(constant: str):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def test_json_is_strict_with_null_for_missing_numbers(tmp_path):
    path = tmp_path / "result.json"
    atomic_write_json(path, {"loss": math.nan, "nested": [1.5, -math.inf, {"x": np.float32("nan")}],
                             "np": np.float64(0.25), "ok": True, "n": 3})
    data = _strict_loads(path.read_text())
    assert data == {"loss": None, "nested": [1.5, None, {"x": None}], "np": 0.25, "ok": True, "n": 3}
