"""Project paths and ``params.yaml`` loading with strict validation (the one place for both).

Every stage reads ``params.yaml`` with :func:`load_params` and turns the sections it uses into the
frozen pydantic models of ``pipeline/params/`` with :func:`parse_section`. A key that is unknown,
missing or of the wrong type stops the stage with one line naming the key
(``params.yaml: unknown key 'pointcloud.maxpoints'``); the ``check_params`` stage, which every
stage runs after, checks all sections the same way, so a typo in ``dvc exp run -S ...`` can never
be silently ignored.

Paths are relative to the project root, found as the nearest folder at or above the current
working directory that holds ``dvc.yaml``. DVC runs stage commands from that folder, including in
the temporary copies used by ``dvc exp run --temp`` and queued experiments, so this is the right
root there too (the installed package may point at another checkout).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

PARAMS_FILE = "params.yaml"

M = TypeVar("M", bound=BaseModel)


class ParamsError(ValueError):
    """A params.yaml problem; the message is one line naming the file and key."""


def project_root(start: Path | None = None) -> Path:
    """Nearest folder at or above ``start`` (default: cwd) that contains ``dvc.yaml``."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file():
            return folder
    raise FileNotFoundError(f"no dvc.yaml found in {here} or any parent folder: run from the protoscene repo")


def project_path(text: str) -> Path:
    """A path param as a path: ``~`` expanded; relative paths are relative to :func:`project_root`."""
    path = Path(text).expanduser()
    return path if path.is_absolute() else project_root() / path


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


def parse_section(raw: dict[str, Any], section: str, cls: type[M]) -> M:
    """Validate ``raw[section]`` as the pydantic model ``cls``; any problem raises a one-line ParamsError."""
    if section not in raw:
        raise ParamsError(f"params.yaml: missing section '{section}'")
    values = raw[section]
    if not isinstance(values, dict):
        raise ParamsError(f"params.yaml: section '{section}' should be a mapping")
    try:
        return cls.model_validate(values)
    except ValidationError as err:
        raise ParamsError(describe_error(section, err, cls)) from None


def describe_error(section: str, err: ValidationError, cls: type[BaseModel]) -> str:
    """One line for the most telling problem: an unknown key first, then a missing one, then a bad value."""
    rank = {"extra_forbidden": 0, "missing": 1}
    first = min(err.errors(), key=lambda e: rank.get(e["type"], 2))
    key = section + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
    if first["type"] == "extra_forbidden":
        close = difflib.get_close_matches(str(first["loc"][-1]), list(cls.model_fields), n=1)
        hint = f" (did you mean '{section}.{close[0]}'?)" if close else ""
        return f"params.yaml: unknown key '{key}'{hint}"
    if first["type"] == "missing":
        return f"params.yaml: missing key '{key}'"
    message = str(first["ctx"]["error"]) if first["type"] == "value_error" else first["msg"]  # a validator's own words
    if not first["loc"]:  # a rule across keys
        return f"params.yaml: {section}: {message}"
    return f"params.yaml: '{key}' = {first['input']!r}: {message}"


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
