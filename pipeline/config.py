"""Project paths and ``params.yaml`` loading with strict validation (the one place for both).

Every stage reads ``params.yaml`` once with :func:`load_params` and turns each section it uses into a
frozen dataclass with :func:`parse_section`. A key that is unknown, missing or of the wrong type stops
the stage with one line naming the key (``params.yaml: unknown key 'pointcloud.maxpoints'``), so a
typo in ``dvc exp run -S ...`` can never be silently ignored.

Paths are relative to the project root, found as the nearest folder at or above the current
working directory that holds ``dvc.yaml``. DVC runs stage commands from that folder, including in
the temporary copies used by ``dvc exp run --temp`` and queued experiments, so this is the right
root there too (the installed package may point at another checkout).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

PARAMS_FILE = "params.yaml"

T = TypeVar("T")


class ParamsError(ValueError):
    """A params.yaml problem; the message is one line naming the file and key."""


def project_root(start: Path | None = None) -> Path:
    """Nearest folder at or above ``start`` (default: cwd) that contains ``dvc.yaml``."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file():
            return folder
    raise FileNotFoundError(f"no dvc.yaml found in {here} or any parent folder: run from the protoscene repo")


def load_params(path: Path | str | None = None) -> dict[str, Any]:
    """Read ``params.yaml`` (default: the project root's) as a nested dict."""
    path = Path(path) if path is not None else project_root() / PARAMS_FILE
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level")
    return data


def _check_type(value: Any, annotation: Any, key: str) -> Any:
    """Return ``value`` converted to ``annotation`` where lossless (int → float), else raise."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_type(value, option, key)
            except ParamsError:
                continue
        raise ParamsError(f"params.yaml: '{key}' = {value!r} should be {annotation}")
    if origin is typing.Literal:
        if value not in typing.get_args(annotation):
            raise ParamsError(f"params.yaml: '{key}' = {value!r} should be one of {list(typing.get_args(annotation))}")
        return value
    if origin in (list, tuple):
        (item_type, *_) = typing.get_args(annotation) or (Any,)
        if not isinstance(value, list | tuple):
            raise ParamsError(f"params.yaml: '{key}' = {value!r} should be a list")
        return tuple(_check_type(v, item_type, f"{key}[{i}]") for i, v in enumerate(value))
    if annotation is Any:
        return value
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is int and isinstance(value, bool):
        raise ParamsError(f"params.yaml: '{key}' = {value!r} should be int")
    if not isinstance(value, annotation):
        raise ParamsError(f"params.yaml: '{key}' = {value!r} should be {annotation.__name__}")
    return value


def parse_section(raw: dict[str, Any], section: str, cls: type[T]) -> T:
    """Build dataclass ``cls`` from ``raw[section]``; unknown/missing/mistyped keys raise ParamsError."""
    if section not in raw:
        raise ParamsError(f"params.yaml: missing section '{section}'")
    values = raw[section]
    if not isinstance(values, dict):
        raise ParamsError(f"params.yaml: section '{section}' should be a mapping")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ParamsError(f"params.yaml: unknown key '{section}.{unknown[0]}' (known: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, field in fields.items():
        key = f"{section}.{name}"
        if name not in values:
            no_default = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
            if no_default:
                raise ParamsError(f"params.yaml: missing key '{key}'")
            continue
        kwargs[name] = _check_type(values[name], hints[name], key)
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        try:
            validate()
        except ValueError as err:
            raise ParamsError(f"params.yaml: {section}: {err}") from None
    return obj


def flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{'a': {'b': 1}} -> {'a.b': 1}``; lists are kept as their string form (for MLflow)."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value if not isinstance(value, list | tuple) else str(list(value))
    return out
