"""Name -> object registries for methods, tasks, datasets and protocols.

One :class:`Registry` per kind. Built-in objects register themselves with the
``@REGISTRY.register("name")`` decorator when their module is imported;
third-party packages add theirs through an entry-point group (for example
``ssl3d.methods``), which is read lazily, the first time a name is looked up
or listed, so that ``import ssl3d`` never pays for plugins it does not use.

An entry point may point at the object itself (a class, which is registered
under the entry point's name) or at a module whose import registers objects
through the decorator. An object entry point must be of the registry's kind
(a ``Method`` subclass for ``ssl3d.methods``...), carry a ``name`` equal to
the entry point's name and not reuse a name already registered; otherwise it
is skipped and the problem lands in :attr:`Registry.plugin_errors`, which
``bench list`` prints, so one bad plugin never hides the others.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import logging
from importlib import metadata
from typing import Callable, Generic, Iterator, TypeVar

from ssl3d.core.errors import UserError

T = TypeVar("T")

log = logging.getLogger(__name__)



class UnknownNameError(UserError, KeyError):
    """A name that is not in a registry; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would repr() the message with quotes
        return str(self.args[0])


class Registry(Generic[T]):
    """A registry of named objects of one kind.

    Args:
        kind: what is registered, for messages ("method", "task", ...).
        entry_point_group: the ``importlib.metadata`` entry-point group that
            third-party packages use to add objects, or ``None``.
        base: the class that entry-point objects must derive from (or be an
            instance of, with ``instances``), or its ``"module:attr"`` path,
            imported when plugins are first loaded (the string form lets a
            registry be created above its base class); ``None`` accepts anything.
        instances: the registry holds instances of ``base`` (tasks), not subclasses.
    """

    def __init__(
        self, kind: str, entry_point_group: str | None = None, *, base: type | str | None = None, instances: bool = False
    ) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._base = base
        self._instances = instances
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
    def accepts(self, obj: object) -> bool:
        """Whether ``obj`` is of this registry's kind (always, when no base is known)."""
        base = self._resolved_base()
        if base is None:
            return True
        if self._instances:
            return isinstance(obj, base)
        return inspect.isclass(obj) and issubclass(obj, base)

    def _resolved_base(self) -> type | None:
        if isinstance(self._base, str):
            # the same "module:attr" syntax entry points use, so reuse their loader
            self._base = metadata.EntryPoint(name="base", value=self._base, group="ssl3d.registry").load()
        return self._base

    def load_entry_points(self) -> None:
        """Import every entry point of the group once; a broken plugin is reported, not fatal."""
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        builtin = set(self._items)
        for ep in metadata.entry_points(group=self.entry_point_group):
            where = f"entry point {ep.name!r} ({ep.value})"
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plugin must not break `bench list`
                self._plugin_problem(ep.name, f"{type(exc).__name__}: {exc}")
                continue
            except SystemExit as exc:  # nor end the command (KeyboardInterrupt still does)
                self._plugin_problem(ep.name, f"SystemExit: the plugin called sys.exit({exc.code!r}) "
                                              "while it was imported")
                continue
            if inspect.ismodule(obj):
                continue  # its import registered what it holds, through the decorator
            if not self.accepts(obj):
                base = self._resolved_base()
                expected = f"{base.__name__} {'instance' if self._instances else 'subclass'}"
                self._plugin_problem(ep.name, f"{where} loads {_describe(obj)}, not a {expected}")
                continue
            declared = getattr(obj, "name", ep.name)
            if declared != ep.name:
                # lookups, result files and caches use the object's own name: registering
                # it under another one would split one plugin across two names
                self._plugin_problem(
                    ep.name,
                    f"{where} loads a {self.kind} named {declared!r}; the entry-point name must equal the "
                    f"{self.kind}'s name, so it is not registered",
                )
                continue
            existing = self._items.get(ep.name, obj)
            if existing is not obj:
                owner = "built-in" if ep.name in builtin else "already registered"
                self._plugin_problem(
                    ep.name,
                    f"{where} reuses the name of the {owner} {self.kind} {ep.name!r} ({_describe(existing)}); "
                    f"the plugin is ignored and the {owner} {self.kind} is kept",
                )
                continue
            self.add(ep.name, obj)

    def _plugin_problem(self, name: str, message: str) -> None:
        # debug only: `bench list` prints plugin_errors, and a lookup of the name says why it is missing
        self.plugin_errors[name] = message
        log.debug("%s plugin %r: %s", self.kind, name, message)

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
        if name in self.plugin_errors:
            hint = f" The plugin of that name was not registered: {self.plugin_errors[name]}."
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


def _describe(obj: object) -> str:
    """What an object is, for messages: ``class pkg.Name``, ``function pkg.f``, ``a str``."""
    qualname = getattr(obj, "__qualname__", None)
    if inspect.isclass(obj):
        return f"class {obj.__module__}.{qualname}"
    if inspect.isroutine(obj) and qualname:
        return f"function {getattr(obj, '__module__', '?')}.{qualname}"
    return f"a {type(obj).__name__} ({obj!r:.60})"
