"""Dataclass configurations: presets, ``--set key=value`` overrides, hashing.

Every configurable object (method, protocol, dataset) carries a dataclass
``Config`` whose fields are commented at their definition. A config may nest
other dataclasses (a method's ``train`` section); overrides address nested
fields with dots (``train.epochs=3``). Values given as strings are parsed
according to the field's annotation, so ``--set train.lr=1e-3`` becomes a
float and ``--set svm.kernel=poly`` is refused when the field is a
``Literal["linear", "rbf"]``.

Numeric fields state their allowed values with interval notation in the
field's metadata, one mechanism for every config (methods, datasets,
protocols)::

    epochs: int = field(default=100, metadata={"range": "[0, inf)"})  # 0 = no pretraining
    momentum: float = field(default=0.9, metadata={"range": "[0, 1)"})

``[``/``]`` include a bound, ``(``/``)`` exclude it, ``inf``/``-inf`` leave a
side open; a tuple or list field has every element checked. The range is
checked whenever a value is set through :func:`apply_overrides` (``--set``,
task options, presets) and on the whole config by :func:`build_preset`, so an
out-of-range value is refused with a :class:`ConfigError` naming the key and
the range before anything runs. NaN is never a valid setting.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import types
import typing
from typing import Any, Literal, Mapping, TypeVar, Union, get_args, get_origin

from ssl3d.core.errors import UserError

C = TypeVar("C")

RANGE_KEY = "range"  # the field-metadata key of the allowed interval
_INTERVAL = re.compile(r"^\s*([\[(])\s*([^,\s]+)\s*,\s*([^\]\)\s]+)\s*([\])])\s*$")


class ConfigError(UserError, ValueError):
    """A bad configuration key or value; the message names what is valid."""


@dataclasses.dataclass(frozen=True)
class Interval:
    """An allowed range of numbers, parsed from interval notation such as ``"[0, 1)"``."""

    low: float
    high: float
    low_closed: bool
    high_closed: bool

    @classmethod
    def parse(cls, spec: str) -> "Interval":
        match = _INTERVAL.match(spec) if isinstance(spec, str) else None
        try:
            if match is None:
                raise ValueError
            low, high = float(match[2]), float(match[3])
        except ValueError:
            # a mistake in the code's field definition, not in the user's input
            raise TypeError(f"range {spec!r} is not interval notation such as '[0, inf)' or '(0, 1]'") from None
        return cls(low, high, match[1] == "[", match[4] == "]")

    def __contains__(self, value: float) -> bool:
        if math.isnan(value):
            return False
        above = value >= self.low if self.low_closed else value > self.low
        below = value <= self.high if self.high_closed else value < self.high
        return above and below

    def describe(self) -> str:
        """``>= 0``, ``< 1`` or ``in [0, 1)``: the range as a user reads it."""
        if math.isinf(self.high):
            return f"{'>=' if self.low_closed else '>'} {_number(self.low)}"
        if math.isinf(self.low):
            return f"{'<=' if self.high_closed else '<'} {_number(self.high)}"
        return f"in {'[' if self.low_closed else '('}{_number(self.low)}, {_number(self.high)}{']' if self.high_closed else ')'}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def check_range(key: str, value: Any, spec: str) -> None:
    """Raise :class:`ConfigError` naming ``key`` unless ``value`` (or each of its elements) lies in ``spec``.

    Args:
        key: what the user set, as they would write it (``method.train.epochs``, ``--seed``).
        value: a number, a tuple/list of numbers, or ``None`` (an unset optional value, always allowed).
        spec: interval notation, e.g. ``"[0, inf)"``.
    """
    interval = Interval.parse(spec)
    items = value if isinstance(value, (tuple, list)) else (value,)
    bad = [v for v in items if v is not None and v not in interval]
    if bad:
        shown = ",".join(map(str, value)) if isinstance(value, (tuple, list)) else value
        sep = " " if key.startswith("-") else "="
        raise ConfigError(f"{key}{sep}{shown} is out of range: {'each value ' if items is value else ''}"
                          f"must be {interval.describe()}")


def check_distinct(flag: str, values: list[Any], what: str = "value") -> None:
    """Raise :class:`ConfigError` naming ``flag`` when a value is listed more than once (``--seeds 0 0``)."""
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        many = len(repeated) > 1
        listed = f"{what}{'s' if many else ''} {', '.join(map(str, repeated))} {'are' if many else 'is'}"
        raise ConfigError(f"{flag} {' '.join(map(str, values))}: {listed} given twice; list each {what} once")


def check_ranges(config: Any, section: str = "") -> None:
    """Check every field of a (nested) dataclass config against its declared range."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            check_ranges(value, f"{section}{f.name}.")
        elif RANGE_KEY in f.metadata:
            check_range(f"{section}{f.name}", value, f.metadata[RANGE_KEY])


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready nested dict of a dataclass config (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=list))


def config_hash(payload: Any, length: int = 12) -> str:
    """A stable short hash of a JSON-able payload (dict order does not matter)."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def flat_keys(config: Any, prefix: str = "") -> list[str]:
    """All dotted leaf keys of a dataclass config."""
    keys: list[str] = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            keys.extend(flat_keys(value, f"{prefix}{f.name}."))
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


def _resolved_hints(cls: type) -> dict[str, Any]:
    # no globalns: get_type_hints then resolves each base class's fields in its own module
    return typing.get_type_hints(cls)


def parse_value(raw: Any, annotation: Any, key: str, example: Any = None) -> Any:
    """Convert ``raw`` (often a string from the command line) to ``annotation``.

    A tuple or list field takes ``[a,b]`` (JSON) or ``a,b``: a fixed-length tuple (``tuple[float, float]``)
    exactly that many values, a variable-length one (``tuple[int, ...]``, ``list[int]``) one or more when
    given as text; ``example`` (the field's current value) shows the expected form in an error message.
    """
    origin = get_origin(annotation)
    if origin is Literal:
        choices = get_args(annotation)
        for choice in choices:
            if raw == choice or str(raw) == str(choice):
                return choice
        raise ConfigError(f"{key}={raw!r} is not one of {', '.join(map(repr, choices))}")
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if raw is None or (isinstance(raw, str) and raw.lower() in ("none", "null")):
            if len(args) < len(get_args(annotation)):
                return None
        errors = []
        for arg in args:
            try:
                return parse_value(raw, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError("; ".join(errors))
    if origin in (tuple, list):
        return _parse_sequence(raw, annotation, key, example)
    if annotation is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key}={raw!r} is not a boolean (true/false)")
    if annotation in (int, float, str):
        try:
            if annotation is int and isinstance(raw, str):
                value = float(raw)
                if not value.is_integer():
                    raise ValueError
                return int(value)
            value = annotation(raw)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{key}={raw!r} is not a valid {annotation.__name__}") from None
        if annotation is float and math.isnan(value):
            raise ConfigError(f"{key}={raw!r}: NaN is not a valid setting")
        return value
    return raw


_NOUNS = {float: ("number", "numbers"), int: ("integer", "integers"), bool: ("true/false value", "true/false values")}


def _sequence_shape(annotation: Any) -> tuple[tuple[Any, ...], bool]:
    """(element types, variable length?) of ``tuple[float, float]``, ``tuple[int, ...]`` or ``list[str]``."""
    args = get_args(annotation) or (str, ...)
    if get_origin(annotation) is list:
        args = (args[0], ...)
    return args, len(args) == 2 and args[1] is Ellipsis


def _sequence_form(annotation: Any, example: Any) -> str:
    """``2 numbers, e.g. [0.9,0.999]``: what a tuple/list field takes, for an error message."""
    args, variable = _sequence_shape(annotation)
    kinds = {args[0]} if variable else set(args)
    singular, plural = _NOUNS.get(next(iter(kinds)), ("value", "values")) if len(kinds) == 1 else ("value", "values")
    count = "one or more" if variable else str(len(args))
    what = f"{count} {singular if count == '1' else plural}"
    items = list(example) if isinstance(example, (tuple, list)) and example else []
    if not items:  # no value to show: made-up ones of the right types
        samples = {float: (0.5, 1.0), int: (1, 2), bool: (True, False)}
        items = [samples.get(arg, ("a", "b"))[i % 2] for i, arg in enumerate(args[:1] * 2 if variable else args)]
    if all(isinstance(v, (int, float)) for v in items):
        return f"{what}, e.g. [{','.join(f'{v:g}' if isinstance(v, float) else str(v).lower() for v in items)}]"
    return f"{what}, e.g. {','.join(map(str, items))}"


def _parse_sequence(raw: Any, annotation: Any, key: str, example: Any) -> Any:
    """A tuple/list field's value from ``[a,b]`` / ``a,b`` text or a sequence, typed and length-checked."""
    origin = get_origin(annotation)
    args, variable = _sequence_shape(annotation)

    def refuse(detail: str = "") -> ConfigError:
        shown = raw if isinstance(raw, str) else ",".join(map(str, raw)) if isinstance(raw, (tuple, list)) else raw
        return ConfigError(f"{key}={shown}: expected {_sequence_form(annotation, example)}{detail}")

    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith("["):
            try:
                items = json.loads(text)
            except json.JSONDecodeError:
                raise refuse(" (not a JSON list)") from None
        else:
            items = [part.strip() for part in text.split(",")] if text else []
            if any(part == "" for part in items):
                raise refuse(" (an empty item)")
        if not isinstance(items, list) or (variable and not items):
            raise refuse()
    else:
        items = list(raw) if isinstance(raw, (tuple, list)) else [raw]  # a number from a preset or task option
    if not variable and len(items) != len(args):
        raise refuse(f" (got {len(items)} value{'' if len(items) == 1 else 's'})")
    types_ = [args[0]] * len(items) if variable else list(args)
    parsed = []
    for item, inner in zip(items, types_):
        if isinstance(item, (list, dict)) and get_origin(inner) not in (tuple, list):
            raise refuse(f" ({json.dumps(item)} is not a single value)")
        try:
            parsed.append(parse_value(item, inner, key))
        except ConfigError:
            raise refuse(f" ({item!r} is not a valid {getattr(inner, '__name__', inner)})") from None
    return tuple(parsed) if origin is tuple else parsed


def apply_overrides(config: C, overrides: Mapping[str, Any], *, section: str = "") -> C:
    """A copy of ``config`` with dotted ``overrides`` applied and type-checked.

    Raises:
        ConfigError: an unknown key (the message lists the valid keys), a
            value that does not parse as the field's type or one outside the
            field's declared range.
    """
    updated = config
    for key, raw in overrides.items():
        updated = _set_path(updated, key.split("."), raw, full_key=f"{section}{key}", root=config, section=section)
    return updated


def _set_path(config: Any, path: list[str], raw: Any, *, full_key: str, root: Any, section: str) -> Any:
    names = {f.name: f for f in dataclasses.fields(config)}
    head, *rest = path
    if head not in names:
        valid = ", ".join(f"{section}{k}" for k in flat_keys(root))
        raise ConfigError(f"unknown key {full_key!r}; valid keys: {valid}")
    current = getattr(config, head)
    if rest:
        if not dataclasses.is_dataclass(current):
            raise ConfigError(f"{full_key!r}: {head!r} has no sub-keys")
        value = _set_path(current, rest, raw, full_key=full_key, root=root, section=section)
    elif dataclasses.is_dataclass(current):
        raise ConfigError(f"{full_key!r} is a section; set one of its keys: {', '.join(flat_keys(current))}")
    else:
        value = parse_value(raw, _resolved_hints(type(config))[head], full_key, example=current)
        if RANGE_KEY in names[head].metadata:
            check_range(full_key, value, names[head].metadata[RANGE_KEY])
    return dataclasses.replace(config, **{head: value})


def from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
    """Rebuild a (nested) dataclass config from :func:`to_dict` output."""
    hints = _resolved_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            value = from_dict(hint, value)
        else:
            value = parse_value(value, hint, f.name)
        kwargs[f.name] = value
    return cls(**kwargs)


def parse_set_args(items: list[str] | None) -> dict[str, str]:
    """``["a.b=1", "c=x"]`` -> ``{"a.b": "1", "c": "x"}`` with a clear error on a missing '='."""
    result: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        result[key.strip()] = value.strip()
    return result


def build_preset(cls: type[C], name: str) -> C:
    """The config ``cls`` under preset ``name``.

    A config class lists its presets in ``PRESETS: ClassVar[dict[str, dict]]``
    as dotted overrides of the field defaults; the defaults are the paper's
    values, so ``paper`` is usually ``{}``.
    """
    presets: Mapping[str, Mapping[str, Any]] = getattr(cls, "PRESETS", {"paper": {}})
    if name not in presets:
        raise ConfigError(f"unknown preset {name!r} for {cls.__qualname__}; valid presets: {', '.join(presets)}")
    config = apply_overrides(cls(), presets[name])
    check_ranges(config)  # the defaults the preset keeps are checked too
    return config
