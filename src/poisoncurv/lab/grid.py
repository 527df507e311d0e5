"""Grid files: one YAML file per experiment chapter (``grids/ch05.yaml`` ...) defining its lab runs.

A grid file has the top-level keys ``description`` (text), ``base`` (configuration fields shared by
every run of every profile) and ``profiles`` (one entry per profile that the chapter supports)::

    description: Chapter 5 ...
    base: {model: linear, attack: cross-deterministic}
    profiles:
      cpu:
        base: {seed: 0}                      # optional: fields for every run of this profile
        groups:                              # named sub-grids; the runs are their union
          theta:
            base: {kappa: 0.0}               # optional: fields for this group
            axes: {loss: [squared, ce], theta: [0.0, 0.01]}   # cartesian product
            exclude: [{loss: ce, theta: 0.0}]                  # optional: drop the matching points
            keep_model: true                 # optional: keep these runs' final weights (results/lab/models/)

Fields not given take the profile's sizes and training recipe (:func:`poisoncurv.lab.config.profile_config`).
Every field name, value type and axis is checked before any configuration is built, and every
error names the grid file and the field. YAML anchors, aliases and merge keys (``<<: *base``) may share
definitions, but a file whose aliases expand past :data:`MAX_YAML_VALUES` values (an alias bomb) or that gives a
key twice in one mapping (the second would silently replace the first) is refused, and so is a grid of more than
:data:`MAX_RUNS` runs, counted before any is built, unless the caller lifts the limit (``sweep --yes``).

The runs are deduplicated by configuration key (a run in two groups is trained once); :meth:`Grid.group` still
returns each group's runs in axis order, so a chapter picks the runs it plots from the same definition that a
cluster runs.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import types
import typing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from poisoncurv.core.profiles import PROFILES
from poisoncurv.lab.config import LabConfig, profile_config

MAX_RUNS = 2000  # runs of one grid and profile, before exclusions; more are refused unless max_runs=None (sweep --yes)
MAX_YAML_VALUES = 100_000  # values of a grid file once its aliases are expanded (the committed grids: hundreds)
TOP_KEYS = ("description", "base", "profiles")
PROFILE_KEYS = ("base", "groups")
GROUP_KEYS = ("base", "axes", "exclude", "keep_model")
FIELD_TYPES: dict[str, Any] = typing.get_type_hints(LabConfig)


class GridError(ValueError):
    """A grid file is malformed; the message names the file and the offending key or field."""


@dataclass(frozen=True)
class Run:
    """One run of a grid: its group, the axis values that pick it (``point``), its configuration, and
    whether its final weights are kept (:func:`poisoncurv.lab.runner.get` ``keep_model``)."""

    group: str
    point: dict[str, Any]
    config: LabConfig
    keep_model: bool = False

    @property
    def name(self) -> str:
        """``group/field=value,...`` (the axis values only), for progress lines and tables."""
        return f"{self.group}/" + ",".join(f"{k}={v}" for k, v in self.point.items())


@dataclass(frozen=True)
class Grid:
    """The runs of one grid file for one profile; ``runs`` in file order, one per distinct configuration."""

    path: Path
    profile: str
    description: str
    groups: dict[str, list[Run]]

    @property
    def runs(self) -> list[Run]:
        """Every distinct run (first occurrence wins; its weights are kept if any occurrence keeps them),
        groups in file order."""
        seen: dict[str, Run] = {}
        for runs in self.groups.values():
            for run in runs:
                first = seen.setdefault(run.config.key(), run)
                if run.keep_model and not first.keep_model:
                    seen[run.config.key()] = replace(first, keep_model=True)
        return list(seen.values())

    def configs(self) -> list[LabConfig]:
        """The distinct configurations, in the order of :attr:`runs`."""
        return [run.config for run in self.runs]

    def group(self, name: str, **match: Any) -> list[Run]:
        """The runs of group ``name`` (axis order) whose point or configuration has the ``match`` values."""
        if name not in self.groups:
            raise GridError(f"{self.path}: no group {name!r} in profile {self.profile!r}; groups: {', '.join(self.groups)}")
        return [r for r in self.groups[name] if all(getattr(r.config, k) == v for k, v in match.items())]


def make_config(profile: str, values: dict[str, Any], check_device: bool = True) -> LabConfig:
    """The one place a grid point becomes a validated :class:`LabConfig` (profile sizes, then ``values``).

    ``check_device=False`` checks only the device's name, not that it is present here (a SLURM login node
    has no GPU; the job validates again on its compute node)."""
    if check_device:
        return profile_config(profile, **values)
    device = values.get("device", "cpu")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", str(device)):
        raise ValueError(f"device: unknown {device!r}; use 'cpu', 'cuda' or 'cuda:N'")
    return replace(profile_config(profile, **{**values, "device": "cpu"}), device=device)


def _accepts(tp: Any, value: Any) -> bool:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return any(_accepts(t, value) for t in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def _typed(where: str, field: str, value: Any) -> Any:
    """``value`` checked against ``LabConfig.field``'s type; ints become floats for float fields (stable keys)."""
    if field not in FIELD_TYPES:
        raise GridError(f"{where}: unknown configuration field {field!r}; known: {', '.join(FIELD_TYPES)}")
    tp = FIELD_TYPES[field]
    if not _accepts(tp, value):
        hint = " (YAML reads 1e-3 as text: write 1.0e-3)" if isinstance(value, str) and tp is float else ""
        raise GridError(f"{where}: field {field!r} must be {getattr(tp, '__name__', tp)}, got {value!r}{hint}")
    return float(value) if tp is float else value


def _mapping(where: str, obj: Any, allowed: tuple[str, ...] | None) -> dict[str, Any]:
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise GridError(f"{where}: expected a mapping, got {type(obj).__name__}")
    if allowed is not None:
        unknown = [k for k in obj if k not in allowed]
        if unknown:
            raise GridError(f"{where}: unknown key(s) {unknown}; allowed: {', '.join(allowed)}")
    return obj


def _fields(where: str, obj: Any) -> dict[str, Any]:
    return {k: _typed(where, k, v) for k, v in _mapping(where, obj, None).items()}


def _group(where: str, profile: str, name: str, spec: Any, base: dict[str, Any], check_device: bool) -> list[Run]:
    spec = _mapping(where, spec, GROUP_KEYS)
    fixed = {**base, **_fields(f"{where}.base", spec.get("base"))}
    axes = _mapping(f"{where}.axes", spec.get("axes"), None)
    if not axes:
        raise GridError(f"{where}.axes: a group needs at least one axis (field: [values, ...])")
    values: dict[str, list[Any]] = {}
    for field, vals in axes.items():
        if not isinstance(vals, list) or not vals:
            raise GridError(f"{where}.axes.{field}: an axis must be a non-empty list of values, got {vals!r}")
        values[field] = [_typed(f"{where}.axes", field, v) for v in vals]
    keep = spec.get("keep_model", False)
    if not isinstance(keep, bool):
        raise GridError(f"{where}.keep_model: expected true or false, got {keep!r}")
    excludes = spec.get("exclude") or []
    if not isinstance(excludes, list):
        raise GridError(f"{where}.exclude: expected a list of mappings, got {excludes!r}")
    excludes = [_fields(f"{where}.exclude[{i}]", e) for i, e in enumerate(excludes)]
    runs = []
    for combo in itertools.product(*values.values()):
        point = dict(zip(values, combo))
        cfg_fields = {**fixed, **point}
        if any(all(cfg_fields.get(k) == v for k, v in e.items()) for e in excludes):
            continue
        try:
            cfg = make_config(profile, cfg_fields, check_device)
        except ValueError as err:
            raise GridError(f"{where} at {point}: {err}") from None
        runs.append(Run(name, point, cfg, keep))
    if not runs:
        raise GridError(f"{where}: every point is excluded; the group has no runs")
    return runs


class _Refused(yaml.YAMLError):
    """Valid YAML that a grid file may not hold (a duplicate key, an alias bomb); the message is one line."""


def _expanded(node: yaml.Node, sizes: dict[int, int | None]) -> int:
    """Values under ``node`` with every alias expanded (a shared node counts once per reference), memoised in ``sizes``
    by node id, so the count costs one visit per distinct node."""
    if id(node) in sizes:
        size = sizes[id(node)]
        if size is None:
            raise _Refused("an alias refers to a mapping or list that contains it (a recursive structure)")
        return size
    sizes[id(node)] = None
    children = node.value if isinstance(node, yaml.SequenceNode) else [n for pair in node.value for n in pair] \
        if isinstance(node, yaml.MappingNode) else []
    total = 1 + sum(_expanded(child, sizes) for child in children)
    sizes[id(node)] = total
    return total


class _GridLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing aliases that expand past :data:`MAX_YAML_VALUES` values before anything is built,
    and keys given twice in one mapping (merged keys, ``<<: *anchor``, may be overridden)."""

    def construct_document(self, node: yaml.Node) -> Any:
        size = _expanded(node, {})
        if size > MAX_YAML_VALUES:
            raise _Refused(f"its aliases expand to {size:.3g} values, more than {MAX_YAML_VALUES} (an alias bomb?): "
                           f"write the values out or share fewer")
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = self.construct_object(key_node)
                if key in seen:
                    raise _Refused(f"key {key!r} given twice in one mapping (line {key_node.start_mark.line + 1}): the "
                                   f"second would silently replace the first; rename or merge them")
                seen.add(key)
        return super().construct_mapping(node, deep)


def read_grid_file(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed YAML of ``path`` (:class:`_GridLoader`) with its top-level keys checked."""
    path = Path(path)
    if not path.is_file():
        raise GridError(f"{path}: no such grid file (the chapters' grids are in grids/)")
    try:
        spec = yaml.load(path.read_text(), Loader=_GridLoader)
    except _Refused as err:
        raise GridError(f"{path}: {err}") from None
    except yaml.YAMLError as err:
        raise GridError(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from None
    return _mapping(str(path), spec, TOP_KEYS)


def _count(spec: Any) -> int:
    """The runs a group spec expands to before exclusions, from its axes' lengths (0 when malformed: :func:`_group`
    names the fault)."""
    axes = spec.get("axes") if isinstance(spec, dict) else None
    return math.prod(len(v) if isinstance(v, list) else 1 for v in axes.values()) if isinstance(axes, dict) and axes else 0


def load_grid(path: str | os.PathLike, profile: str, check_device: bool = True, max_runs: int | None = MAX_RUNS) -> Grid:
    """The :class:`Grid` of ``path`` for ``profile``; raises :class:`GridError` naming the field on any fault
    (``check_device``: see :func:`make_config`), or when its groups hold more than ``max_runs`` runs before exclusions
    (counted before any is built; ``None``: no limit)."""
    if profile not in PROFILES:
        raise GridError(f"profile: unknown {profile!r}; choose one of {', '.join(PROFILES)}")
    spec = read_grid_file(path)
    profiles = _mapping(f"{path}: profiles", spec.get("profiles"), tuple(PROFILES))
    if profile not in profiles:
        raise GridError(f"{path}: no runs for profile {profile!r}; this grid defines {', '.join(profiles) or 'none'}")
    where = f"{path}: profiles.{profile}"
    pspec = _mapping(where, profiles[profile], PROFILE_KEYS)
    base = {**_fields(f"{path}: base", spec.get("base")), **_fields(f"{where}.base", pspec.get("base"))}
    groups = _mapping(f"{where}.groups", pspec.get("groups"), None)
    if not groups:
        raise GridError(f"{where}.groups: a profile needs at least one group")
    total = sum(_count(g) for g in groups.values())
    if max_runs is not None and total > max_runs:
        raise GridError(f"{where}.groups: {total:,} runs before exclusions, more than the limit of {max_runs:,}: split the "
                        f"grid, or pass --yes to the sweep to run them all")
    return Grid(Path(path), profile, str(spec.get("description", "")),
                {name: _group(f"{where}.groups.{name}", profile, name, g, base, check_device) for name, g in groups.items()})
