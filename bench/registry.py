"""Name -> object registries for methods, tasks, datasets and protocols.

One :class:`Registry` per kind. Built-in objects register themselves with the
``@REGISTRY.register("name")`` decorator when their module is imported;
third-party packages add theirs through an entry-point group (for example
``ssl3d.methods``), which is read lazily, the first time a name is looked up
or listed, so that ``import ssl3d`` never pays for plugins it does not use.

An entry point may point at the object itself (a class, which is registered
under the entry point's name) or at a module whose import registers objects
through the decorator.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import logging
from importlib import metadata
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)


class UnknownNameError(KeyError):
    """A name that is not in a registry; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would repr() the message with quotes
        return str(self.args[0])


class Registry(Generic[T]):
    """A registry of named objects of one kind.

    Args:
        kind: what is registered, for messages ("method", "task", ...).
        entry_point_group: the ``importlib.metadata`` entry-point group that
            third-party packages use to add objects, or ``None``.
    """

    def __init__(self, kind: str, entry_point_group: str | None = None) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._items: dict[str, T] = {}
        self._entry_points_loaded = entry_point_group is None
        self.plugin_errors: dict[str, str] = {}

    # -- registration -------------------------------------------------------
    def register(self, name: str | None = None, *, overwrite: bool = False) -> Callable[[T], T]:
        """Decorator registering an object under ``name`` (default: its ``name`` attribute)."""

        def decorator(obj: T) -> T:
            key = name or getattr(obj, "name", None)
            if not key or not isinstance(key, str):
                raise ValueError(f"cannot register {obj!r} as a {self.kind}: no name given")
            self.add(key, obj, overwrite=overwrite)
            return obj

        return decorator

    def add(self, name: str, obj: T, *, overwrite: bool = False) -> None:
        """Register ``obj`` under ``name``; a clash is an error unless ``overwrite``."""
        if name in self._items and self._items[name] is not obj and not overwrite:
            raise ValueError(f"{self.kind} {name!r} is already registered ({self._items[name]!r})")
        self._items[name] = obj

    # -- plugins ------------------------------------------------------------
    def load_entry_points(self) -> None:
        """Import every entry point of the group once; a broken plugin is logged, not fatal."""
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in metadata.entry_points(group=self.entry_point_group):
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plugin must not break `bench list`
                self.plugin_errors[ep.name] = f"{type(exc).__name__}: {exc}"
                log.warning("could not load %s plugin %r (%s): %s", self.kind, ep.name, ep.value, exc)
                continue
            if not inspect.ismodule(obj) and ep.name not in self._items:
                self.add(ep.name, obj)

    # -- lookup -------------------------------------------------------------
    def get(self, name: str) -> T:
        """The object registered as ``name``; an unknown name lists the valid ones."""
        if name not in self._items:
            self.load_entry_points()
        if name not in self._items:
            raise UnknownNameError(self.unknown_message(name))
        return self._items[name]

    def unknown_message(self, name: str) -> str:
        valid = self.names()
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return f"unknown {self.kind} {name!r}.{hint} Valid {self.kind}s: {', '.join(valid)}"

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted registered names matching a shell-style wildcard pattern."""
        self.load_entry_points()
        return sorted(n for n in self._items if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: object) -> bool:
        self.load_entry_points()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())
