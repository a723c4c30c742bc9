"""A job's settings: defaults, then the TOML file (``--config``), then the flags.

Everything here runs before Spark starts.  Unknown tables and keys, values of the wrong
type and impossible values are rejected with a :class:`~spark_em.cli.exit_codes.UsageError`
whose one line names the key and the file (or the flag).  The TOML file is read with the
standard library's ``tomllib``.
"""

from __future__ import annotations

import argparse
import difflib
import math
from collections.abc import Iterable
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from .exit_codes import UsageError
from .options import BOOL, COLUMNS, FLOAT, INT, PATHS, STR, Option


class Settings:
    """The merged settings of one run: ``settings["max-iter"]``; ``source(key)`` is
    ``flag``, ``file`` or ``default``."""

    def __init__(
        self,
        options: list[Option],
        values: dict,
        sources: dict,
        config_path: str | None,
        print_config: bool = False,
    ):
        self.options = options
        self._values = values
        self._sources = sources
        self.config_path = config_path
        self.print_config = print_config

    def __getitem__(self, key: str) -> Any:
        if key not in self._values:
            raise KeyError(f"no setting {key!r}")
        return self._values[key]

    def get(self, key: str, default: Any = None) -> Any:
        value = self._values.get(key)
        return default if value is None else value

    def source(self, key: str) -> str:
        return self._sources.get(key, "default")

    def as_dict(self) -> dict:
        """Settings that have a value, in declaration order."""
        return {
            o.key: self._values[o.key] for o in self.options if self._values.get(o.key) is not None
        }

    def derive(self, key: str, value: Any, source: str) -> None:
        """Set ``key`` from something other than a flag or the file (``source`` says what,
        e.g. ``init-model``), when neither set it."""
        if self.source(key) == "default":
            self._values[key], self._sources[key] = value, source

    def describe(self, key: str) -> str:
        """How messages name a setting: ``--k`` or ``[model] k in conf/fit.toml``."""
        if self.source(key) == "file":
            option = next(o for o in self.options if o.key == key)
            return f"[{option.section}] {key} in {self.config_path}"
        return f"--{key}"

    def to_toml(self) -> str:
        """The merged settings as a TOML file (``--print-config``), usable as ``--config``."""
        lines: list[str] = []
        sections: dict[str, list[Option]] = {}
        for o in self.options:
            sections.setdefault(o.section, []).append(o)
        for section, options in sections.items():
            body = [
                f"{o.key} = {_toml_value(self._values[o.key])}  # {self.source(o.key)}"
                for o in options
                if self._values.get(o.key) is not None
            ]
            if body:
                lines += ([""] if lines else []) + [f"[{section}]"] + body
        return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


# ------------------------------------------------------------------------ value conversion
def _from_toml(option: Option, value: Any) -> Any:
    """The value of a TOML key as the option's kind, or a UsageError-worthy message."""
    kind = option.kind
    if kind == INT and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == FLOAT and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind == STR and isinstance(value, str):
        return value
    if kind == BOOL and isinstance(value, bool):
        return value
    if kind in (PATHS, COLUMNS) and isinstance(value, str):
        return _split_columns(value) if kind == COLUMNS else [value]
    if (
        kind in (PATHS, COLUMNS)
        and isinstance(value, list)
        and all(isinstance(v, str) for v in value)
    ):
        return list(value)
    expected = {
        INT: "an integer",
        FLOAT: "a number",
        STR: "a string",
        BOOL: "true or false",
        PATHS: "a string or a list of strings",
        COLUMNS: "a string or a list of strings",
    }
    raise TypeError(f"must be {expected[kind]}, got {type(value).__name__} {value!r}")


def _split_columns(text: str) -> str | list[str]:
    """``"x,y"`` -> ``["x", "y"]``; ``"features"`` stays one name."""
    if "," not in text:
        return text.strip()
    return [c.strip() for c in text.split(",") if c.strip()]


def _flag_type(option: Option):
    def convert(text: str):
        try:
            if option.kind == INT:
                return int(text)
            if option.kind == FLOAT:
                value = float(text)
                if math.isnan(value):
                    raise ValueError
                return value
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"invalid {'integer' if option.kind == INT else 'number'}: {text!r}"
            ) from None
        if option.kind == COLUMNS:
            return _split_columns(text)
        return text

    convert.__name__ = option.kind
    return convert


def _check(option: Option, value: Any) -> str | None:
    if option.choices and value not in option.choices:
        return f"must be one of {', '.join(option.choices)}; got {value!r}"
    if option.check is not None and value is not None:
        return option.check(value)
    return None


# ------------------------------------------------------------------------ argument parser
class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints usage and exits)
        raise UsageError(message)


def build_parser(prog: str, description: str, options: Iterable[Option]) -> argparse.ArgumentParser:
    p = _Parser(
        prog=prog,
        description=description,
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    p.add_argument(
        "--config", metavar="FILE", help="TOML file with any of these settings (flags override it)"
    )
    p.add_argument(
        "--print-config", action="store_true", help="print the merged settings as TOML and exit"
    )
    groups: dict[str, argparse._ArgumentGroup] = {}
    for o in options:
        group = groups.setdefault(o.section, p.add_argument_group(f"[{o.section}]"))
        help_text = o.help + (f" (default: {o.default})" if o.default not in (None, False) else "")
        if o.kind == BOOL:
            group.add_argument(
                f"--{o.key}", dest=o.key, action=argparse.BooleanOptionalAction, help=help_text
            )
        elif o.kind == PATHS:
            group.add_argument(
                f"--{o.key}", dest=o.key, nargs="+", metavar=o.metavar, help=help_text
            )
        else:
            group.add_argument(
                f"--{o.key}",
                dest=o.key,
                type=_flag_type(o),
                choices=o.choices or None,
                metavar=o.metavar,
                help=help_text,
            )
    return p


# ------------------------------------------------------------------------ TOML file
def load_file(path: str, options: list[Option]) -> dict:
    """Validated values of the TOML file at ``path``; UsageError naming the key and file."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise UsageError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise UsageError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{path} is not valid TOML: not UTF-8 text (byte {exc.object[exc.start]:#04x} at "
            f"offset {exc.start}); save it as UTF-8"
        ) from None
    by_key = {o.key: o for o in options}
    sections = sorted({o.section for o in options})
    values: dict = {}
    for section, table in data.items():
        if section not in sections:
            raise UsageError(
                f"{path}: unknown table [{section}]"
                f"{_suggest(section, sections)}; tables: {', '.join(sections)}"
            )
        if not isinstance(table, dict):
            raise UsageError(f"{path}: {section} must be a table [{section}], got a value")
        for key, raw in table.items():
            option = by_key.get(key)
            if option is None:
                raise UsageError(
                    f"{path}: unknown key {key!r} in [{section}]{_suggest(key, list(by_key))}"
                )
            if option.section != section:
                raise UsageError(
                    f"{path}: key {key!r} belongs in [{option.section}], not [{section}]"
                )
            try:
                value = _from_toml(option, raw)
            except TypeError as exc:
                raise UsageError(f"{path}: [{section}] {key} {exc}") from None
            problem = _check(option, value)
            if problem:
                raise UsageError(f"{path}: [{section}] {key} {problem}")
            values[key] = value
    return values


def _suggest(word: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    if not close:
        close = [
            c
            for c in candidates
            if c.replace("-", "") == word.replace("-", "").replace("_", "").lower()
        ]
    return f" (did you mean {close[0]!r}?)" if close else ""


# ------------------------------------------------------------------------ merge
def parse_settings(prog: str, description: str, options: list[Option], argv: list[str]) -> Settings:
    """Defaults < ``--config`` file < flags, every value checked; raises UsageError."""
    parser = build_parser(prog, description, options)
    ns = vars(parser.parse_args(argv))
    config_path = ns.pop("config", None)
    print_config = ns.pop("print_config", False)
    values = {o.key: o.default for o in options}
    sources: dict = {}
    if config_path:
        for key, value in load_file(config_path, options).items():
            values[key], sources[key] = value, "file"
    by_key = {o.key: o for o in options}
    for key, value in ns.items():
        problem = _check(by_key[key], value)
        if problem:
            raise UsageError(f"--{key} {problem}")
        values[key], sources[key] = value, "flag"
    return Settings(options, values, sources, config_path, print_config)
