"""Registries: decorator registration, wildcards, unknown names, entry points."""

from __future__ import annotations

import pytest

from ssl3d.bench.registry import Registry, UnknownNameError
from ssl3d.bench.tasks import list_tasks
from ssl3d.datasets import list_datasets
from ssl3d.methods import get_method, list_methods


def test_register_and_get_and_wildcards():
    reg: Registry[object] = Registry("widget")

    @reg.register("alpha-one")
    class A:
        pass

    @reg.register()
    class B:
        name = "alpha-two"

    reg.add("beta", 3)
    assert reg.get("alpha-one") is A and reg.get("alpha-two") is B
    assert reg.names("alpha-*") == ["alpha-one", "alpha-two"]
    assert reg.names() == ["alpha-one", "alpha-two", "beta"]
    assert "beta" in reg and len(reg) == 3


def test_unknown_name_lists_valid_names_and_closest_match():
    reg: Registry[int] = Registry("widget")
    reg.add("switchvae", 1)
    reg.add("parae-dgcnn", 2)
    with pytest.raises(UnknownNameError) as info:
        reg.get("switchvea")
    message = str(info.value)
    assert "Did you mean 'switchvae'" in message
    assert "switchvae" in message and "parae-dgcnn" in message


def test_duplicate_registration_is_an_error():
    reg: Registry[int] = Registry("widget")
    reg.add("a", 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.add("a", 2)
    reg.add("a", 2, overwrite=True)
    assert reg.get("a") == 2


def test_register_without_name_fails():
    reg: Registry[object] = Registry("widget")
    with pytest.raises(ValueError, match="no name"):
        reg.register()(object())


def test_entry_points_are_loaded_lazily(tmp_path, monkeypatch):
    pkg = tmp_path / "widget_plugin.py"
    pkg.write_text("class Gadget:\n    name = 'gadget'\n")
    dist = tmp_path / "widget_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: widget-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[test.widgets]\ngadget = widget_plugin:Gadget\nbroken = no_such_module:X\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg: Registry[object] = Registry("widget", "test.widgets")
    assert reg._entry_points_loaded is False  # nothing imported at construction
    assert reg.get("gadget").name == "gadget"
    assert "broken" in reg.plugin_errors  # a broken plugin is reported, not fatal
    assert reg.names() == ["gadget"]


def test_builtin_registries_have_the_skeleton():
    assert "random-pointnet" in list_methods()
    assert list_methods("random-*") == [n for n in list_methods() if n.startswith("random-")]
    assert "synth-svm" in list_tasks("synth-*")
    assert "synth" in list_datasets()
    with pytest.raises(UnknownNameError, match="random-pointnet"):
        get_method("no-such-method")
