"""YAML -> frozen, validated config objects, with helpful errors and ``--set`` overrides.

A config schema is a frozen dataclass; a nested dataclass field is a YAML section.
Declare fields with :func:`option` (a value, with bounds and a help string) and
:func:`section` (a nested schema)::

    @dataclass(frozen=True)
    class FitConfig:
        \"\"\"Fitting options.\"\"\"
        max_iter: int = option(500, "maximum EM iterations", ge=1)
        densities: dict[str, float] = option({"Grt": 4.1}, "density per phase (g/cm^3)", gt=0)

    @dataclass(frozen=True)
    class MyConfig:
        \"\"\"My workflow (first docstring line becomes the CLI help).\"\"\"
        fit: FitConfig = section(FitConfig, "model fitting")

Supported field types: ``int``, ``float`` (integers are accepted and converted; strings
such as ``1e-7``, which YAML 1.1 reads as text, are accepted as numbers), ``str``,
``bool``, ``Literal[...]``, ``X | None``, unions of scalars (``Literal["all"] | int``: the first
member that takes the value), ``tuple[X, ...]``, ``tuple[X, Y]``,
``list[X]`` (stored as a tuple so configs stay immutable), ``dict[str, X]`` (stored as
a hashable, read-only :class:`FrozenDict`) and nested frozen dataclasses. Bounds
(``ge``, ``gt``, ``le``, ``lt``) apply to a number, or to every number of a container.
Floats must be finite. A ``__post_init__`` may raise :class:`ConfigError` for checks that
involve several fields; the loader prefixes the message with the source.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import os
import re
import types
import typing
from collections.abc import Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from jaxpetro.errors import ConfigError

__all__ = [
    "FrozenDict",
    "NestedConfig",
    "nested_config",
    "Sweep",
    "read_sweep",
    "config_to_dict",
    "config_to_yaml",
    "describe_config",
    "load_config",
    "option",
    "section",
]

_BOUNDS = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}
_METADATA_KEYS = {*_BOUNDS, "help", "path", "nested"}
# YAML 1.1 (PyYAML) reads "1e-7" as a string; numbers in that form are accepted for floats.
_NUMBER_RE = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


# ----------------------------------------------------------------------------- schema helpers


class FrozenDict(dict):
    """Read-only, hashable mapping: the stored value of a ``dict[str, X]`` field.

    A ``dict`` subclass (so a field annotated ``dict[str, X]`` holds a true ``dict``, as
    type checkers expect) whose mutating methods raise ``TypeError``.
    """

    __slots__ = ()

    def __init__(self, data: Mapping | Iterable = ()):
        super().__init__(data)

    def _read_only(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("config values are read-only; build a new config (load_config with overrides) instead")

    __setitem__ = __delitem__ = __ior__ = _read_only
    clear = pop = popitem = setdefault = update = _read_only

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __reduce__(self):
        return (FrozenDict, (dict(self),))

    def __repr__(self) -> str:
        return f"FrozenDict({dict.__repr__(self)})"


def option(default: Any = dataclasses.MISSING, help: str = "", *, ge=None, gt=None, le=None, lt=None,
           path: bool = False):
    """A config field with optional bounds and a help string.

    Leave ``default`` out to make the key required. A ``dict`` or ``list`` default is
    stored as a :class:`FrozenDict` or tuple (dataclasses refuse mutable defaults).
    ``path=True`` marks a file or folder path (a ``str``, or every ``str`` of a container):
    a relative path in a config file is resolved from that file's folder, one given with
    ``--set`` (or in a mapping passed to :func:`load_config`) from the working directory,
    and the stored value is absolute.
    """
    if isinstance(default, dict):
        default = FrozenDict(default)
    elif isinstance(default, list):
        default = tuple(default)
    bounds = {k: v for k, v in {"ge": ge, "gt": gt, "le": le, "lt": lt}.items() if v is not None}
    return dataclasses.field(default=default, metadata={"help": help, **bounds, **({"path": True} if path else {})})


class NestedConfig(FrozenDict):
    """The raw mapping of another workflow's config held inside this one (``batch``'s ``base``),
    validated later against that workflow's schema; ``base_dir`` is the folder its relative
    paths are resolved from (the enclosing config file's folder, or None = working directory)."""

    __slots__ = ("base_dir",)

    def __init__(self, data: Mapping | Iterable = (), base_dir: str | None = None):
        super().__init__(data)
        object.__setattr__(self, "base_dir", base_dir)

    def __reduce__(self):
        return (NestedConfig, (dict(self), self.base_dir))


def nested_config(help: str = ""):
    """A field holding another workflow's config as a raw mapping (:class:`NestedConfig`)."""
    return dataclasses.field(default=NestedConfig(), metadata={"help": help, "nested": True})


def section(schema: type, help: str = ""):
    """A nested config section whose defaults are those of ``schema``."""
    return dataclasses.field(default_factory=schema, metadata={"help": help})


# ----------------------------------------------------------------------------- loading


def load_config(source: str | os.PathLike | Mapping | None, schema: type, overrides: Iterable[str] = (),
                *, base_dir: str | os.PathLike | None = None):
    """Validate a config against ``schema`` and return a frozen instance.

    Args:
        source: path of a YAML file, an already parsed mapping, or None for all defaults.
        schema: a frozen dataclass (see the module docstring).
        overrides: ``"a.b=value"`` strings applied on top of ``source``; each value is
            parsed as YAML, so ``clustering.tol=1e-6`` gives a number and
            ``clustering.model=gaussian`` a string.
        base_dir: folder that relative paths of a mapping ``source`` are resolved from
            (default: the working directory; a file's paths resolve from its own folder).

    Raises:
        ConfigError: unreadable file, YAML syntax error, unknown or missing key, value of
            the wrong type, out of bounds or not among the allowed choices.
    """
    base_dir = Path(base_dir).resolve() if base_dir is not None else None
    if source is None:
        raw, label = {}, "defaults"
    elif isinstance(source, Mapping):
        raw, label = _plain(source), "config"
    else:
        raw, label = _read_yaml(Path(source)), str(source)
        base_dir = Path(source).resolve().parent
    raw.pop("sweep", None)  # a sweep block is expanded by the caller (read_sweep), not part of the schema
    origins = _Origins(label, base_dir)
    for text in overrides:
        key, value = _parse_override(text)
        _set_dotted(raw, key, value, text)
        origins.by_key[key] = f"--set {text}"
    return _build(schema, raw, "", origins)


class Sweep(typing.NamedTuple):
    """A config's ``sweep:`` block: the runs (``{dotted key: value}`` each) and the figure asked for."""

    runs: list[dict[str, Any]]
    plot: dict[str, Any] | None = None


def read_sweep(source: str | os.PathLike | Mapping | None) -> Sweep:
    """The ``sweep:`` block of a config; ``Sweep([])`` if it has none.

    ``grid: {key: [v1, v2], ...}`` is every combination (the last key varies fastest);
    ``list: [{key: v, ...}, ...]`` is runs as written; both may be given (grid first). A single
    value counts as a one-item list. ``plot: {x: KEY, y: FIGURE or [FIGURES], group: KEY}``
    asks for ``sweep.png``: each headline figure against a swept key, one line per value of
    ``group``, averaged over the other swept keys (seeds...) with their min-max range.

    Raises:
        ConfigError: naming the file and the part of the block that is malformed.
    """
    if source is None:
        return Sweep([])
    raw, label = (source, "config") if isinstance(source, Mapping) else (_read_yaml(Path(source)), str(source))
    spec = raw.get("sweep")
    if spec is None:
        return Sweep([])
    if not isinstance(spec, Mapping) or not ({"grid", "list"} & set(spec)) or set(spec) - {"grid", "list", "plot"}:
        raise ConfigError(f"{label}: 'sweep' must hold 'grid: {{key: [values]}}' and/or 'list: [{{key: value}}, ...]' "
                          f"(and optionally 'plot: {{x: key, y: figure}}'), got {spec!r}.")
    runs: list[dict[str, Any]] = []
    grid = spec.get("grid") or {}
    if not isinstance(grid, Mapping) or not all(isinstance(k, str) for k in grid):
        raise ConfigError(f"{label}: sweep.grid must map dotted keys to lists of values, e.g. 'seed: [0, 1, 2]'.")
    if grid:
        combos: list[dict[str, Any]] = [{}]
        for key, values in grid.items():
            values = values if isinstance(values, (list, tuple)) else [values]
            if not values:
                raise ConfigError(f"{label}: sweep.grid.{key} is an empty list; give at least one value.")
            combos = [{**c, key: v} for c in combos for v in values]
        runs += combos
    listed = spec.get("list") or []
    if not isinstance(listed, (list, tuple)) or not all(isinstance(r, Mapping) and r for r in listed):
        raise ConfigError(f"{label}: sweep.list must be a list of non-empty 'key: value' mappings.")
    runs += [dict(r) for r in listed]
    return Sweep(runs, _sweep_plot(spec.get("plot"), {k for run in runs for k in run}, label))


def _sweep_plot(plot: Any, swept: set[str], label: str) -> dict[str, Any] | None:
    if plot is None:
        return None
    if not isinstance(plot, Mapping) or "x" not in plot or "y" not in plot or set(plot) - {"x", "y", "group"}:
        raise ConfigError(f"{label}: sweep.plot must be {{x: SWEPT_KEY, y: FIGURE or [FIGURES], group: SWEPT_KEY}}, "
                          f"got {plot!r}.")
    for role in ("x", "group"):
        if plot.get(role) is not None and plot[role] not in swept:
            raise ConfigError(f"{label}: sweep.plot.{role} '{plot[role]}' is not a swept key; choose one of "
                              f"{', '.join(sorted(swept))}.")
    ys = plot["y"] if isinstance(plot["y"], (list, tuple)) else [plot["y"]]
    if not ys or not all(isinstance(y, str) for y in ys):
        raise ConfigError(f"{label}: sweep.plot.y must name headline figures of the runs (columns of sweep.csv).")
    return {"x": plot["x"], "y": list(ys), "group": plot.get("group")}


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict (lists, dicts, scalars) of a config instance, e.g. for YAML or JSON."""
    out = _plain_value(cfg)
    if not isinstance(out, dict):
        raise TypeError(f"config_to_dict expects a config dataclass or mapping, not {type(cfg).__name__}")
    return out


def _plain_value(cfg: Any) -> Any:
    """The plain-Python form of a config value (dataclass -> dict, tuple -> list)."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: _plain_value(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, Mapping):
        return {k: _plain_value(v) for k, v in cfg.items()}
    if isinstance(cfg, tuple):
        return [_plain_value(v) for v in cfg]
    return cfg


def config_to_yaml(cfg) -> str:
    """Resolved YAML text of a config; ``load_config`` of it gives back an equal config."""
    return yaml.dump(config_to_dict(cfg), Dumper=_Dumper, sort_keys=False, allow_unicode=True)


def describe_config(schema: type) -> str:
    """One line per key: ``dotted.key = default  help`` (for ``--help`` texts)."""
    lines = []
    for key, fld in _walk_fields(schema, ""):
        if fld.default is not dataclasses.MISSING:
            default = _yaml_scalar(fld.default)
        elif fld.default_factory is not dataclasses.MISSING:
            default = _yaml_scalar(fld.default_factory())
        else:
            default = "(required)"
        lines.append(f"  {key} = {default}  {fld.metadata.get('help', '')}".rstrip())
    return "\n".join(lines)


# ----------------------------------------------------------------------------- internals


class _Origins:
    """Where each value came from: the file, or the ``--set`` that last touched its key."""

    def __init__(self, label: str, base_dir: Path | None = None):
        self.label = label
        self.base_dir = base_dir  # folder of the config file; None = the working directory
        self.by_key: dict[str, str] = {}

    def resolve(self, key: str, value: str) -> str:
        """Absolute form of the path ``value`` of ``key``: from the config file's folder when the
        value came from the file, from the working directory when it came from ``--set``."""
        path = Path(value).expanduser()
        if not path.is_absolute():
            from_file = self.of(re.sub(r"\[\d+\]", "", key)) == self.label and self.base_dir is not None
            path = (self.base_dir if from_file else Path.cwd()) / path
        return os.path.normpath(path)

    def of(self, key: str) -> str:
        parts = key.split(".")
        for n in range(len(parts), 0, -1):
            origin = self.by_key.get(".".join(parts[:n]))
            if origin is not None:
                return origin
        # An override of a sub-key (``--set seed.x=1``) can also make ``key`` itself invalid.
        inside = [origin for k, origin in self.by_key.items() if k.startswith(f"{key}.")]
        return inside[-1] if inside else self.label

    def of_section(self, prefix: str) -> str:
        """Sources of a whole section (``prefix`` '' is the top level), for cross-field errors."""
        inside = [o for k, o in self.by_key.items() if not prefix or k == prefix or k.startswith(f"{prefix}.")]
        return f"{self.label} with {', '.join(inside)}" if inside else self.label


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file '{path}' not found; check the path.") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config file '{path}': {err}.") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as err:
        raise ConfigError(f"config file '{path}' is not valid YAML: {_yaml_problem(err)}.") from None
    if data is None:  # an empty file (or only comments) means all defaults
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file '{path}' must contain a mapping of 'key: value' lines at its top level, "
            f"not a {type(data).__name__}."
        )
    return data


def _yaml_problem(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    if mark is None:
        return problem
    where = f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    if isinstance(err, yaml.constructor.ConstructorError):
        return where
    return f"{where} (check the indentation and the 'key: value' syntax there)"


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe loader that rejects a key repeated in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):  # let SafeLoader report it
                continue
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' repeated (first on line {seen[key]})", key_node.start_mark
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


class _Dumper(yaml.SafeDumper):
    """Safe dumper that double-quotes strings holding Unicode line breaks.

    PyYAML with ``allow_unicode`` writes them raw in quoted keys and reads them back as
    spaces; double quotes escape them.
    """

    def represent_str(self, data: str):
        style = '"' if any(c in data for c in "\x85\u2028\u2029") else None
        return self.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _Dumper.represent_str)


def _freeze(value: Any) -> Any:
    """Read-only, hashable copy of a raw YAML value (mappings -> FrozenDict, lists -> tuples)."""
    if isinstance(value, Mapping):
        return FrozenDict({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _plain(mapping: Mapping) -> dict:
    """Deep copy of nested mappings into dicts, so overrides never mutate the caller's data."""
    return {k: _plain(v) if isinstance(v, Mapping) else v for k, v in mapping.items()}


def _parse_override(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(
            f"malformed override '--set {text}': expected the form KEY=VALUE with a dotted key, "
            f"e.g. --set clustering.tol=1e-6."
        )
    try:
        return key, yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise ConfigError(f"override '--set {text}': the value is not valid YAML: {_yaml_problem(err)}.") from None


def _set_dotted(raw: dict, key: str, value: Any, text: str) -> None:
    *parents, leaf = key.split(".")
    node = raw
    for depth, part in enumerate(parents):
        child = node.setdefault(part, {})
        if child is None:  # an empty YAML section
            child = node[part] = {}
        if not isinstance(child, dict):
            where = ".".join(parents[: depth + 1])
            raise ConfigError(f"override '--set {text}': '{where}' is a value, not a section, so it has no keys.")
        node = child
    node[leaf] = _plain(value) if isinstance(value, Mapping) else value


def _build(schema: type, raw: Any, prefix: str, origins: _Origins):
    """Validate the mapping ``raw`` against ``schema`` (the section at dotted key ``prefix``)."""
    fields = _schema_fields(schema)
    if raw is None:  # an empty YAML section means all its defaults
        raw = {}
    if not isinstance(raw, Mapping):
        raise _type_error(raw, "a section of 'key: value' entries", None, prefix, origins)
    for key in raw:
        if key not in fields:
            raise _unknown_key(key, fields, prefix, origins)
    hints = typing.get_type_hints(schema)
    kwargs = {}
    for name, fld in fields.items():
        key = _join(prefix, name)
        if name in raw:
            kwargs[name] = _coerce(raw[name], hints[name], fld.metadata, key, origins)
        elif fld.default is dataclasses.MISSING and fld.default_factory is dataclasses.MISSING:
            if not dataclasses.is_dataclass(hints[name]):
                raise ConfigError(
                    f"{origins.of(prefix)}: missing required key '{key}' "
                    f"({_describe(hints[name], fld.metadata)}){_help(fld.metadata)}; add it to the file "
                    f"or pass --set {key}=VALUE."
                )
            kwargs[name] = _build(hints[name], {}, key, origins)
    try:
        return schema(**kwargs)
    except ConfigError as err:  # cross-field checks in __post_init__
        raise ConfigError(f"{origins.of_section(prefix)}: {f'section {prefix!r}: ' if prefix else ''}{err}") from None


def _schema_fields(schema: type) -> dict[str, dataclasses.Field]:
    if not (dataclasses.is_dataclass(schema) and schema.__dataclass_params__.frozen):
        raise TypeError(f"config schema {schema!r} must be a frozen dataclass")
    fields = {f.name: f for f in dataclasses.fields(schema) if f.init}
    for fld in fields.values():
        unknown = set(fld.metadata) - _METADATA_KEYS
        if unknown:
            raise TypeError(f"{schema.__name__}.{fld.name}: unknown metadata {sorted(unknown)}")
    return fields


def _walk_fields(schema: type, prefix: str) -> Iterator[tuple[str, dataclasses.Field]]:
    hints = typing.get_type_hints(schema)
    for name, fld in _schema_fields(schema).items():
        if dataclasses.is_dataclass(hints[name]):
            yield from _walk_fields(hints[name], _join(prefix, name))
        else:
            yield _join(prefix, name), fld


def _coerce(value: Any, tp: Any, meta: Mapping, key: str, origins: _Origins) -> Any:
    """Check ``value`` against the type ``tp`` and bounds in ``meta``; return the stored value."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if value is None and len(inner) < len(args):
            return None
        if len(inner) == 1:
            return _coerce(value, inner[0], meta, key, origins)
        # a word or a number (``Literal["all"] | int``): the first member that takes the value
        for member in inner:
            if dataclasses.is_dataclass(member) or typing.get_origin(member) in (tuple, list, dict):
                raise TypeError(f"config key '{key}': unions of scalars and Literals only, not {tp}")
            try:
                return _coerce(value, member, meta, key, origins)
            except ConfigError:
                continue
        raise _type_error(value, _describe(tp, meta), meta, key, origins)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key, origins)
    if meta.get("nested"):
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise _type_error(value, "a section of another workflow's keys", meta, key, origins)
        base = origins.base_dir if origins.of(key) == origins.label else None
        return NestedConfig({k: _freeze(v) for k, v in value.items()}, None if base is None else str(base))
    if origin is Literal:
        if value not in args or isinstance(value, bool) != any(isinstance(a, bool) for a in args):
            raise _choice_error(value, args, key, meta, origins)
        return value
    if origin in (tuple, list):
        return _coerce_sequence(value, tp, meta, key, origins)
    if origin is dict:
        return _coerce_mapping(value, tp, meta, key, origins)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return _check_bounds(int(value), tp, meta, key, origins)
    elif tp is float:
        number = _as_float(value)
        if number is not None:
            return _check_bounds(number, tp, meta, key, origins)
    elif tp is str:
        if isinstance(value, str):
            return origins.resolve(key, value) if meta.get("path") and value.strip() else value
    else:
        raise TypeError(f"config key '{key}': unsupported field type {tp!r}")
    raise _type_error(value, _describe(tp, meta), meta, key, origins)


def _as_float(value: Any) -> float | None:
    """``value`` as a finite float, or None if it is not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and _NUMBER_RE.fullmatch(value.strip()):
        value = float(value)
    if isinstance(value, numbers.Real) and math.isfinite(value):
        return float(value)
    return None


def _coerce_sequence(value: Any, tp: Any, meta: Mapping, key: str, origins: _Origins) -> tuple:
    args = typing.get_args(tp)
    variable_length = typing.get_origin(tp) is list or (len(args) == 2 and args[1] is Ellipsis)
    if variable_length and not isinstance(value, (list, tuple, Mapping)) and value is not None:
        value = [value]  # a single value where a list is expected, as users write it: `immobile: Zr`
    if not isinstance(value, (list, tuple)):
        raise _type_error(value, _describe(tp, meta), meta, key, origins)
    if variable_length:
        item_types = [args[0]] * len(value)
    elif len(value) == len(args):
        item_types = list(args)
    else:
        raise _type_error(value, _describe(tp, meta), meta, key, origins)
    return tuple(_coerce(v, t, meta, f"{key}[{i}]", origins) for i, (v, t) in enumerate(zip(value, item_types)))


def _coerce_mapping(value: Any, tp: Any, meta: Mapping, key: str, origins: _Origins) -> FrozenDict:
    key_type, value_type = typing.get_args(tp)
    if key_type is not str:
        raise TypeError(f"config key '{key}': dict keys must be str, not {key_type!r}")
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise _type_error(value, _describe(tp, meta), meta, key, origins)
    return FrozenDict({k: _coerce(v, value_type, meta, f"{key}.{k}", origins) for k, v in value.items()})


def _check_bounds(number, tp: Any, meta: Mapping, key: str, origins: _Origins):
    tests = {"ge": number >= meta.get("ge", -math.inf), "gt": number > meta.get("gt", -math.inf),
             "le": number <= meta.get("le", math.inf), "lt": number < meta.get("lt", math.inf)}
    if all(tests.values()):
        return number
    raise _type_error(number, _describe(tp, meta), meta, key, origins)


def _describe(tp: Any, meta: Mapping) -> str:
    """Expected value in words, e.g. 'an integer ≥ 1' or 'one of 'diag', 'full''."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    bounds = " and ".join(f"{sym} {meta[b]}" for b, sym in _BOUNDS.items() if b in meta)
    bounds = f" {bounds}" if bounds else ""
    if origin in (typing.Union, types.UnionType):
        inner = " or ".join(_describe(a, meta) for a in args if a is not type(None))
        return f"{inner}, or null" if type(None) in args else inner
    if dataclasses.is_dataclass(tp):
        return "a section of 'key: value' entries"
    if origin is Literal:
        return "one of " + ", ".join(_yaml_scalar(a) for a in args)
    if origin is list or (origin is tuple and len(args) == 2 and args[1] is Ellipsis):
        return f"a list whose items are each {_describe(args[0], meta)}"
    if origin is tuple:
        return f"a list of {len(args)} items: " + "; ".join(_describe(a, meta) for a in args)
    if origin is dict:
        return f"a mapping from names to values that are each {_describe(args[1], meta)}"
    return {bool: "true or false", int: f"an integer{bounds}", float: f"a finite number{bounds}",
            str: "a string (quote it in YAML if it looks like a number or yes/no)"}.get(tp, repr(tp))


def _type_error(value, expected: str, meta: Mapping | None, key: str, origins: _Origins) -> ConfigError:
    where = f"key '{key}'" if key else "the top level"
    return ConfigError(
        f"{origins.of(key)}: invalid value {_yaml_scalar(value)} for {where}: expected {expected}"
        f"{_help(meta or {})}."
    )


def _choice_error(value, choices: tuple, key: str, meta: Mapping, origins: _Origins) -> ConfigError:
    allowed = ", ".join(_yaml_scalar(c) for c in choices)
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return ConfigError(
        f"{origins.of(key)}: invalid value {_yaml_scalar(value)} for key '{key}': the allowed choices are "
        f"{allowed}{_help(meta)}.{hint}"
    )


def _unknown_key(key, fields: Mapping, prefix: str, origins: _Origins) -> ConfigError:
    dotted = _join(prefix, str(key))
    valid = sorted(fields)
    close = difflib.get_close_matches(str(key).lower(), valid, n=1, cutoff=0.6)
    hint = f" Did you mean '{_join(prefix, close[0])}'?" if close else ""
    scope = f"section '{prefix}'" if prefix else "the top level"
    return ConfigError(
        f"{origins.of(dotted)}: unknown key '{dotted}'.{hint} Valid keys in {scope} are: {', '.join(valid)}."
    )


def _help(meta: Mapping) -> str:
    return f" — {meta['help']}" if meta.get("help") else ""


def _yaml_scalar(value: Any) -> str:
    """A value as the user would write it in YAML (strings quoted, True as true)."""
    if isinstance(value, str):
        return repr(value)
    try:
        text = yaml.safe_dump(_plain_value(value), default_flow_style=True)
    except yaml.YAMLError:  # e.g. a numpy value passed through the Python API
        return repr(value)
    return text.strip().removesuffix("...").strip()


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
