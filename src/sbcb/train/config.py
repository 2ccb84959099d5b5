"""Run configuration: built-in defaults < YAML file (``--config``) < command-line flags.

Argparse flags default to ``None`` so that "not given" is visible; `resolve_config` then fills each key from the
YAML file or the built-in default. Unknown YAML keys are an error (with a suggestion), never silently ignored.
The resolved config, with the versions of sbcb/torch/timm/smp, is saved in the run folder as ``config.yaml``.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A bad config file or value; the message says what to fix."""


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping; keys may use ``-`` or ``_`` (``batch-size`` == ``batch_size``)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of option: value, got {type(data).__name__}")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Give a YAML value the type of its default (YAML reads 1e-4 as a string, crops as lists)."""
    if value is None or default is None:
        return value
    try:
        if isinstance(default, bool):
            if isinstance(value, bool):
                return value
            raise TypeError
        if isinstance(default, int):
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise TypeError
            return int(float(value))
        if isinstance(default, float):
            return float(value)
        if isinstance(default, (list, tuple)):
            if not isinstance(value, (list, tuple)):
                raise TypeError
            return [_coerce(key, v, default[0]) if default else v for v in value]
        if isinstance(default, str):
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"config key {key!r}: {value!r} is not a valid {type(default).__name__} (default: {default!r})"
        ) from None
    return value


def resolve_config(
    cli: Mapping[str, Any],
    *,
    defaults: Mapping[str, Any],
    config_path: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Merge built-in defaults, an optional YAML file and the command line (later wins; CLI ``None`` = unset).

    Args:
        cli: Parsed flags (``vars(args)``); keys absent from ``defaults`` are ignored (e.g. the subcommand).
        defaults: Every known key with its default value.
        config_path: Optional YAML file.

    Returns:
        A dict with exactly the keys of ``defaults``.

    Raises:
        ConfigError: Unknown YAML key (with the closest valid key) or a value of the wrong type.
    """
    merged = dict(defaults)
    if config_path is not None:
        for key, value in load_yaml(config_path).items():
            if key not in defaults:
                close = difflib.get_close_matches(key, list(defaults), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(sorted(defaults))}"
                raise ConfigError(f"{config_path}: unknown key {key!r}{hint}")
            merged[key] = _coerce(key, value, defaults[key])
    for key, value in cli.items():
        if key in defaults and value is not None:
            merged[key] = value
    return merged


def save_config(config: Mapping[str, Any], path: str | os.PathLike, *, extra: Mapping[str, Any] | None = None) -> Path:
    """Write the resolved config (plus versions and ``extra``) as YAML, atomically."""
    import yaml

    from sbcb.train.checkpoint import versions

    doc = {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items()}
    doc["versions"] = versions()
    if extra:
        doc.update(extra)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    os.replace(tmp, path)
    return path
