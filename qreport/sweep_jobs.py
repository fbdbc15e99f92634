"""The jobs file of ``qreport sweep``: a TOML list of ``qreport build`` option sets, checked before anything runs.

```toml
[defaults]              # any `qreport build` option, for every job that does not set it
batch-size = 8
[[job]]
name = "mnv2-default"   # the run folder's name: required, unique
model = "mobilenet_v2"
```

Keys are ``qreport build``'s long option names without ``--``; each job's options are parsed by the build parser
itself, so a bad key or value is refused here, with the job named, before any build starts. Relative paths resolve
against the jobs file's folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import re
import tomllib
from pathlib import Path

from qreport.errors import EXIT_USAGE, InputError

# Options whose value is a file or folder (``synthetic`` is not a path), and options that may name a file.py:function.
PATH_OPTIONS = ("checkpoint", "qconfig", "data", "eval-data")
SPEC_OPTIONS = ("model", "metric")
# Options the sweep sets itself for every job.
RESERVED = {"out": "each job is written to <OUT>/<name>", "force": "every job is built with --force"}
RESERVED_NAMES = {"logs"}  # <OUT>/logs holds the build logs
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


@dataclasses.dataclass(frozen=True)
class Job:
    """One ``qreport build`` of a sweep: its run folder name and its build options (without ``--out``)."""

    name: str
    options: tuple[str, ...]


class JobsFileError(InputError):
    """A jobs file that cannot be read, or that holds no jobs or a job without a usable name (exit 3)."""


class JobOptionError(InputError):
    """A key that is no ``qreport build`` option, or a value the option refuses (exit 2, like a bad option)."""

    exit_code = EXIT_USAGE


class _OptionRefused(Exception):
    pass


def build_options() -> dict[str, argparse.Action]:
    """``qreport build``'s long options, by name without ``--``, as its parser defines them."""
    parser = _build_parser()
    return {o[2:]: a for a in parser._actions for o in a.option_strings
            if o.startswith("--") and not isinstance(a, argparse._HelpAction)}


def _build_parser() -> argparse.ArgumentParser:
    from qreport.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["build"]


def _relative_to_file(value: str, base: Path) -> str:
    """``value`` read against ``base``: an absolute path stays; a relative one is joined to ``base`` and given
    relative to the working folder when it lies inside it (so commands stay short), else absolute."""
    path = Path(value).expanduser()
    if path.is_absolute():
        return str(path)
    joined = Path(os.path.normpath(base / path))
    try:
        return str(joined.relative_to(Path.cwd()))
    except ValueError:
        return str(joined)


def resolve_path(key: str, value: str, base: Path) -> str:
    """An option value with its file part resolved against the jobs file's folder ``base``."""
    if key in PATH_OPTIONS and value != "synthetic":
        return _relative_to_file(value, base)
    if key in SPEC_OPTIONS:
        target, colon, attr = value.rpartition(":")
        if colon and target.endswith(".py"):
            return f"{_relative_to_file(target, base)}:{attr}"
    return value


def _closest_keys(key: str, names: list[str]) -> list[str]:
    from qreport.cli import _closest

    return [m[2:] for m in _closest(f"--{key}", [f"--{n}" for n in names])]


def _arguments(key: str, value, action: argparse.Action, base: Path) -> list[str]:
    """The command-line arguments a TOML ``key = value`` stands for."""
    flag = f"--{key}"
    if action.nargs == 0:  # --quiet, --verbose, --debug
        if not isinstance(value, bool):
            raise _OptionRefused(f"{key} is a switch; write {key} = true or leave it out")
        return [flag] if value else []
    if isinstance(action, argparse._AppendAction):
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str) for v in values):
            raise _OptionRefused(f"{key} takes a string or a list of strings")
        return [a for v in values for a in (flag, v)]
    if key == "input-shape" and isinstance(value, list):
        value = ",".join(str(v) for v in value)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _OptionRefused(f"{key} takes a single value like {action.metavar or 'VALUE'}, not {_toml_type(value)}")
    return [flag, resolve_path(key, str(value), base)]


def _toml_type(value) -> str:
    return {bool: "true/false", list: "a list", dict: "a table"}.get(type(value), type(value).__name__)


def _check_with_parser(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """Parse ``argv`` as ``qreport build`` would; argparse's message raises ``_OptionRefused`` instead of exiting."""
    def refuse(message):
        raise _OptionRefused(message)

    parser.error = refuse
    parser.parse_args(argv)


def _options(table: dict, where: str, actions: dict[str, argparse.Action], base: Path) -> dict[str, list[str]]:
    """A table's keys checked against the build options, each turned into its arguments."""
    out = {}
    for key, value in table.items():
        if key in RESERVED:
            raise JobOptionError(f"{where}: key {key!r} is set by qreport sweep ({RESERVED[key]}); remove it")
        if key not in actions:
            matches = _closest_keys(key, [k for k in actions if k not in RESERVED])
            hint = f"; did you mean {' or '.join(repr(m) for m in matches)}?" if matches else \
                "; keys are qreport build's long options without '--' (see qreport build --help)"
            raise JobOptionError(f"{where}: unknown key {key!r}{hint}")
        try:
            out[key] = _arguments(key, value, actions[key], base)
        except _OptionRefused as exc:
            raise JobOptionError(f"{where}: {exc}") from None
    return out


def _name(job: dict, number: int, seen: dict[str, int], path: Path) -> str:
    name = job.get("name")
    if name is None:
        raise JobsFileError(f"{path} job {number} has no name; give every [[job]] a name = \"...\" (its run folder)")
    if not isinstance(name, str) or not NAME.fullmatch(name) or name in RESERVED_NAMES:
        raise JobsFileError(f"{path} job {number}: name {name!r} cannot be a run folder name; use letters, digits and "
                            f". _ + - (starting with a letter or digit, and not {' or '.join(sorted(RESERVED_NAMES))})")
    folded = name.casefold()
    if folded in seen:
        raise JobsFileError(f"{path} job {number}: name {name!r} is already used by job {seen[folded]}; names must be "
                            "unique (each is a run folder)")
    seen[folded] = number
    return name


def load_jobs(path: str | Path) -> list[Job]:
    """The jobs of a jobs file, every option checked by ``qreport build``'s parser; one-line errors otherwise."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise JobsFileError(f"jobs file {path} does not exist") from None
    except IsADirectoryError:
        raise JobsFileError(f"jobs file {path} is a folder; pass a .toml file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise JobsFileError(f"cannot read jobs file {path} ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise JobsFileError(f"{path} is not valid TOML: {exc}") from None
    unknown = [k for k in data if k not in ("defaults", "job")]
    if unknown:
        match = difflib.get_close_matches(unknown[0], ["defaults", "job"], n=1)
        hint = f"did you mean {'[[job]]' if match == ['job'] else '[defaults]'}? " if match else ""
        raise JobsFileError(f"{path}: unknown top-level key {unknown[0]!r}; {hint}a jobs file holds a [defaults] "
                            "table and [[job]] tables")
    defaults, jobs = data.get("defaults", {}), data.get("job", [])
    if not isinstance(defaults, dict):
        raise JobsFileError(f"{path}: defaults must be a table, [defaults]")
    if not isinstance(jobs, list) or not all(isinstance(j, dict) for j in jobs):
        raise JobsFileError(f"{path}: jobs must be [[job]] tables")
    if not jobs:
        raise JobsFileError(f"{path} holds no jobs; add a [[job]] table with a name and the build options")

    base = path.resolve().parent
    actions = build_options()
    parser = _build_parser()
    shared = _options(defaults, f"{path} [defaults]", actions, base)
    out, seen = [], {}
    for number, job in enumerate(jobs, 1):
        name = _name(job, number, seen, path)
        where = f"{path} job {name!r}"
        own = _options({k: v for k, v in job.items() if k != "name"}, where, actions, base)
        argv = [a for opts in {**shared, **own}.values() for a in opts]
        try:
            _check_with_parser(parser, argv)
        except _OptionRefused as exc:
            raise JobOptionError(f"{where}: {exc}") from None
        out.append(Job(name=name, options=tuple(argv)))
    return out
