"""Registries: decorator registration, wildcards, unknown names, entry points."""

from __future__ import annotations

import pytest

from ssl3d.core.registry import Registry, UnknownNameError
from ssl3d.bench.protocols.tasks import list_tasks
from ssl3d.datasets import list_datasets
from ssl3d.methods import get_method, list_methods

from conftest import fake_distribution


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
    fake_distribution(tmp_path, "widget-plugin", "[test.widgets]\ngadget = widget_plugin:Gadget\nbroken = no_such_module:X\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg: Registry[object] = Registry("widget", "test.widgets")
    assert reg._entry_points_loaded is False  # nothing imported at construction
    assert reg.get("gadget").name == "gadget"
    assert "broken" in reg.plugin_errors  # a broken plugin is reported, not fatal
    assert reg.names() == ["gadget"]


def _install_plugin(site, module: str, source: str, group: str, entry_points: str) -> None:
    """A module plus the dist-info `pip install` would leave for it, on ``site``."""
    (site / f"{module}.py").write_text(source)
    fake_distribution(site, module, f"[{group}]\n{entry_points}")


TYPED_PLUGIN = """
from widget_kinds import Widget


class Good(Widget):
    name = "good"


class Stranger:
    name = "stranger"


class Misnamed(Widget):
    name = "real-name"


class Impostor(Widget):
    name = "builtin"


def factory():
    return Good
"""


def test_entry_points_of_the_wrong_kind_are_reported_and_the_rest_loads(tmp_path, monkeypatch):
    (tmp_path / "widget_kinds.py").write_text("class Widget:\n    name = ''\n")
    _install_plugin(tmp_path, "typed_widgets", TYPED_PLUGIN, "test.typed_widgets",
                    "good = typed_widgets:Good\nstranger = typed_widgets:Stranger\nfactory = typed_widgets:factory\n"
                    "wrong-name = typed_widgets:Misnamed\nbuiltin = typed_widgets:Impostor\n"
                    "whole-module = typed_widgets\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg: Registry[object] = Registry("widget", "test.typed_widgets", base="widget_kinds:Widget")
    builtin = type("Builtin", (), {"name": "builtin"})
    reg.add("builtin", builtin)

    assert reg.names() == ["builtin", "good"]
    assert reg.get("builtin") is builtin  # the built-in is kept
    errors = reg.plugin_errors
    assert set(errors) == {"stranger", "factory", "wrong-name", "builtin"}
    assert errors["stranger"] == ("entry point 'stranger' (typed_widgets:Stranger) loads class "
                                  "typed_widgets.Stranger, not a Widget subclass")
    assert errors["factory"].startswith("entry point 'factory' (typed_widgets:factory) loads function "
                                        "typed_widgets.factory, not a Widget subclass")
    assert errors["wrong-name"] == ("entry point 'wrong-name' (typed_widgets:Misnamed) loads a widget named "
                                    "'real-name'; the entry-point name must equal the widget's name, so it is "
                                    "not registered")
    assert errors["builtin"].startswith("entry point 'builtin' (typed_widgets:Impostor) reuses the name of the "
                                        "built-in widget 'builtin'")
    with pytest.raises(UnknownNameError, match="plugin of that name was not registered: entry point 'stranger'"):
        reg.get("stranger")


def test_registry_of_instances_rejects_a_class(tmp_path, monkeypatch):
    source = ("from dataclasses import dataclass\n\n@dataclass\nclass Gizmo:\n    name: str\n\n"
              "SPARE = Gizmo('spare')\n")
    _install_plugin(tmp_path, "gizmo_plugin", source, "test.gizmos",
                    "spare = gizmo_plugin:SPARE\nclass-itself = gizmo_plugin:Gizmo\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg: Registry[object] = Registry("gizmo", "test.gizmos", base="gizmo_plugin:Gizmo", instances=True)
    assert reg.names() == ["spare"]
    assert reg.plugin_errors == {"class-itself": "entry point 'class-itself' (gizmo_plugin:Gizmo) loads class "
                                                 "gizmo_plugin.Gizmo, not a Gizmo instance"}


def test_builtin_registries_check_what_their_plugins_load():
    from ssl3d.bench.protocols.base import PROTOCOLS, Protocol
    from ssl3d.bench.protocols.tasks import TASKS, Task
    from ssl3d.datasets.base import DATASETS, ShapeDataset
    from ssl3d.methods.base import METHODS, Method

    assert METHODS.accepts(type("M", (Method,), {})) and not METHODS.accepts(Task)
    assert DATASETS.accepts(type("D", (ShapeDataset,), {})) and not DATASETS.accepts(Method)
    assert PROTOCOLS.accepts(type("P", (Protocol,), {})) and not PROTOCOLS.accepts(object())
    assert TASKS.accepts(Task("t", "synth", "svm", ("points",))) and not TASKS.accepts(Task)


def test_builtin_registries_have_the_skeleton():
    assert "random-pointnet" in list_methods()
    assert list_methods("random-*") == [n for n in list_methods() if n.startswith("random-")]
    assert "synth-svm" in list_tasks("synth-*")
    assert "synth" in list_datasets()
    with pytest.raises(UnknownNameError, match="random-pointnet"):
        get_method("no-such-method")
