"""Project configuration of the ``gradcheck`` gate.

A project lists its layers in ``pyproject.toml``::

    [tool.gradcheck]
    targets = ["mypkg.layers:make_swish", "tests/layers.py:make_attention"]
    modes = ["train", "eval"]
    method = "central"
    atol = 1e-7
    rtol = 1e-6
    seed = 0

or in ``setup.cfg`` (lists one per line or comma-separated)::

    [gradcheck]
    targets =
        mypkg.layers:make_swish
        tests/layers.py:make_attention
    modes = train, eval

``gradcheck`` without a TARGET, run in that directory or below it, checks these
targets (the nearest such file wins, as for pytest and ruff).
Every key is optional (without ``targets``: the built-in suite with these
options). An unknown key or a malformed value is a :class:`ConfigError` that
names the file, the section and the key.
"""

import configparser
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from gradcheck.gate.options import GATE_OPTIONS, OptionError
from gradcheck.validate import did_you_mean

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["ConfigError", "GateConfig", "find_config", "read_config"]

KEYS = ("targets", "modes") + tuple(o.name for o in GATE_OPTIONS)
MODES = {"train": True, "eval": False}


class ConfigError(Exception):
    """A configuration file that cannot be used: the message names the file and the key."""


@dataclass(frozen=True)
class GateConfig:
    """What a ``[gradcheck]`` / ``[tool.gradcheck]`` section says.

    Attributes
    ----------
    path : pathlib.Path
        The file read.
    section : str
        ``"[tool.gradcheck]"`` or ``"[gradcheck]"``, for messages.
    targets : tuple of str
        ``MODULE:FACTORY`` or ``path/to/file.py:FACTORY`` (a relative path is
        relative to the file's directory); empty: the built-in suite.
    modes : tuple of bool or None
        ``train_flg`` values (``True`` = train); ``None``: not configured.
    options : dict
        ``method``, ``seed``, ``atol``, ``rtol`` when configured.
    """

    path: Path
    section: str
    targets: tuple = ()
    modes: Optional[tuple] = None
    options: dict = None

    def where(self, key=None):
        """``"pyproject.toml: [tool.gradcheck] key"``, the prefix of messages about ``key``."""
        return f"{self.path}: {self.section}" + (f" {key}" if key else "")

    def resolve(self, target):
        """``target`` with a relative ``file.py`` path made relative to the config's directory."""
        where, _, attr = target.rpartition(":")
        if where.endswith(".py") or "/" in where or "\\" in where:
            path = Path(where)
            if not path.is_absolute():
                path = self.path.parent / path
            return f"{path}:{attr}"
        return target


def _strings(value, key, where, split):
    """A list of non-empty strings from a TOML list/string or an INI value."""
    if isinstance(value, str):
        items = split(value)
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = [v.strip() for v in value]
    else:
        raise ConfigError(f"{where} {key}: expected a list of strings, got {value!r}")
    items = [i for i in items if i]
    if not items:
        raise ConfigError(f"{where} {key}: must not be empty")
    return items


def _split_ini(text):
    return [part.strip() for line in text.splitlines() for part in line.split(",")]


def _split_toml(text):
    return [part.strip() for part in text.split(",")]


def _parse(table, path, section, split):
    where = f"{path}: {section}"
    unknown = [k for k in table if k not in KEYS]
    if unknown:
        key = unknown[0]
        hint = did_you_mean(key, KEYS)
        raise ConfigError(f"{where} {key}: unknown key{hint}; known keys: "
                          f"{', '.join(sorted(KEYS))}")
    targets = ()
    if "targets" in table:
        targets = tuple(_strings(table["targets"], "targets", where, split))
        for t in targets:
            mod, _, attr = t.rpartition(":")
            if not mod or not attr:
                raise ConfigError(f"{where} targets: {t!r} is not MODULE:FACTORY or "
                                  "path/to/file.py:FACTORY")
    modes = None
    if "modes" in table:
        names = _strings(table["modes"], "modes", where, split)
        bad = [m for m in names if m not in MODES]
        if bad:
            raise ConfigError(f"{where} modes: expected 'train' and/or 'eval', got {bad[0]!r}")
        modes = tuple(dict.fromkeys(MODES[m] for m in names))
    options = {}
    for opt in GATE_OPTIONS:
        if opt.name in table:
            try:
                options[opt.name] = opt.parse(table[opt.name])
            except OptionError as exc:
                raise ConfigError(f"{where} {opt.name}: {exc}") from None
    return GateConfig(path=path, section=section, targets=targets, modes=modes,
                      options=options)


def _toml_table(path):
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    table = doc.get("tool", {}).get("gradcheck") if isinstance(doc.get("tool"), dict) else None
    if table is not None and not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.gradcheck] must be a table, got {table!r}")
    return table


def _ini_table(path):
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except configparser.Error as exc:
        raise ConfigError(f"{path}: not a valid setup.cfg: {exc.message}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    if not parser.has_section("gradcheck"):
        return None
    return dict(parser.items("gradcheck"))


def read_config(path):
    """Read the gate's configuration from ``path`` (a ``.toml`` file, or an INI file).

    Raises
    ------
    ConfigError
        The file cannot be read or parsed, has no gradcheck section, or a
        key is unknown or malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    if path.suffix == ".toml":
        table, section, split = _toml_table(path), "[tool.gradcheck]", _split_toml
    else:
        table, section, split = _ini_table(path), "[gradcheck]", _split_ini
    if table is None:
        raise ConfigError(f"{path}: no {section} section")
    return _parse(table, path, section, split)


def _config_in(directory):
    """The configuration file of ``directory`` (``pyproject.toml`` or ``setup.cfg`` with a
    gradcheck section), or ``None``."""
    found = []
    pyproject, setup_cfg = directory / "pyproject.toml", directory / "setup.cfg"
    if pyproject.is_file() and _toml_table(pyproject) is not None:
        found.append(pyproject)
    if setup_cfg.is_file() and _ini_table(setup_cfg) is not None:
        found.append(setup_cfg)
    if len(found) == 2:
        raise ConfigError(f"both {pyproject} [tool.gradcheck] and {setup_cfg} [gradcheck] "
                          "configure gradcheck; keep one")
    return found[0] if found else None


def find_config(directory="."):
    """The nearest configuration: ``directory`` or its closest parent whose
    ``pyproject.toml`` has ``[tool.gradcheck]`` or whose ``setup.cfg`` has
    ``[gradcheck]`` (as pytest and ruff find theirs); ``None`` when there is none.

    Raises
    ------
    ConfigError
        Both files of that directory configure gradcheck, or the section
        found is invalid.
    """
    start = Path(directory).resolve()
    for d in (start, *start.parents):
        path = _config_in(d)
        if path is not None:  # named as seen from the working directory, for messages
            return read_config(os.path.relpath(path))
    return None
