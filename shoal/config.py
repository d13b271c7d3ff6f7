"""Where a command's settings come from: a TOML file, then the environment, then flags.

Each source overrides the one before it:

1. built-in defaults (the parser's);
2. the config file: `--config FILE`, else `$SHOAL_CONFIG`, else `./shoal.toml` when it
   exists. Top-level keys set the global options (`log-level`), a table per command sets
   that command's (`[serve] listen = "0.0.0.0:5000"`);
3. environment variables: `SHOAL_<COMMAND>_<OPTION>` (`SHOAL_SERVE_LISTEN`), else
   `SHOAL_<OPTION>` (`SHOAL_LISTEN`, for every command that has the option);
4. flags on the command line.

Values from the file and the environment go through the same converters as flags and
become the parser's defaults, so there is one parser and one meaning per option; an
unknown key or a bad value is an error that names where it came from.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_FILE = Path("shoal.toml")
CONFIG_ENV = "SHOAL_CONFIG"
# Options that say where settings come from, or what to do, and are never settings.
NOT_SETTINGS = {"help", "config", "command"}


class ConfigError(ValueError):
    pass


@dataclass
class Resolved:
    """The effective settings of one command, and where each came from."""

    command: str
    file: Path | None
    values: dict[str, Any] = field(default_factory=dict)     # option name -> value
    sources: dict[str, str] = field(default_factory=dict)    # option name -> "file", ...
    builtin: dict[str, Any] = field(default_factory=dict)    # dest -> the parser's default


def option_name(action: argparse.Action) -> str:
    """The name an option goes by in the file and the environment: its long flag."""
    longs = [s for s in action.option_strings if s.startswith("--")]
    return (longs[0] if longs else action.option_strings[0]).lstrip("-")


def settings(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The options of `parser` that may be configured, by name."""
    return {option_name(a): a for a in parser._actions
            if a.option_strings and a.dest not in NOT_SETTINGS
            and not isinstance(a, argparse._HelpAction)}


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def find_file(argv: Sequence[str], environ: Mapping[str, str], cwd: Path) -> Path | None:
    """The config file named by `--config`, `$SHOAL_CONFIG` or found in `cwd`."""
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return Path(argv[i + 1])
        if arg.startswith("--config="):
            return Path(arg.partition("=")[2])
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    default = cwd / DEFAULT_FILE
    return default if default.is_file() else None


def load(path: Path, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The file's tables, checked: every table a command, every key one of its options."""
    try:
        document = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    commands = subcommands(parser)
    top = settings(parser)
    for key, value in document.items():
        if isinstance(value, dict):
            if key not in commands:
                raise ConfigError(f"{path}: [{key}] is not a command; the tables are "
                                  f"{', '.join(f'[{c}]' for c in commands)}")
            known = settings(commands[key])
            for option in value:
                if _normal(option) not in known:
                    raise ConfigError(f"{path}: [{key}] {option} is not an option of "
                                      f"`shoal {key}`; it has {', '.join(sorted(known))}")
        elif _normal(key) not in top:
            raise ConfigError(f"{path}: {key} is not a global option ({', '.join(top)}); "
                              "a command's options go in its table, e.g. [serve]")
    return document


def _normal(key: str) -> str:
    return key.replace("_", "-")


def _env_names(command: str | None, name: str) -> list[str]:
    flat = name.replace("-", "_").upper()
    names = [f"SHOAL_{command.upper()}_{flat}"] if command else []
    return [*names, f"SHOAL_{flat}"]


def _convert(action: argparse.Action, value: object, where: str) -> Any:
    """`value` as the flag would have produced it."""
    if action.nargs == 0:  # store_true and friends
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in {"1", "true", "yes", "on"}:
            return True
        if text in {"0", "false", "no", "off", ""}:
            return False
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if isinstance(value, (dict, list)):
        raise ConfigError(f"{where}: expected a single value, got {value!r}")
    text = str(value)
    try:
        converted = action.type(text) if callable(action.type) else text
    except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
        detail = str(exc) if isinstance(exc, argparse.ArgumentTypeError) else \
            f"invalid value {value!r}"
        raise ConfigError(f"{where}: {detail}") from None
    if action.choices is not None and converted not in action.choices:
        raise ConfigError(f"{where}: {value!r} is not one of "
                          f"{', '.join(map(str, action.choices))}")
    return converted


def _layer(parser: argparse.ArgumentParser, command: str | None, table: Mapping[str, Any],
           file: Path | None, environ: Mapping[str, str], resolved: Resolved) -> None:
    """Make file and environment values the defaults of `parser`'s options."""
    defaults: dict[str, Any] = {}
    for name, action in settings(parser).items():
        value: Any = None
        for key in (name, name.replace("-", "_")):
            if key in table:
                where = f"{file}: {f'[{command}] ' if command else ''}{key}"
                value = _convert(action, table[key], where)
                resolved.sources[name] = "file"
        for env in _env_names(command, name):
            if env in environ:
                value = _convert(action, environ[env], f"${env}")
                resolved.sources[name] = f"env {env}"
                break
        if name in resolved.sources:
            resolved.builtin[action.dest] = action.default
            defaults[action.dest] = value
            resolved.values[name] = value
    parser.set_defaults(**defaults)
    # A required choice (gateway's --node or --cluster) may now be met by a default.
    for group in parser._mutually_exclusive_groups:
        if any(a.dest in defaults for a in group._group_actions):
            group.required = False


def apply(parser: argparse.ArgumentParser, argv: Sequence[str],
          environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Resolved:
    """Feed the file and environment into `parser`'s defaults for the command in `argv`."""
    environ = os.environ if environ is None else environ
    file = find_file(argv, environ, cwd or Path.cwd())
    commands = subcommands(parser)
    command = next((a for a in argv if a in commands), "")
    resolved = Resolved(command, file)
    document = load(file, parser) if file is not None else {}
    top = {k: v for k, v in document.items() if not isinstance(v, dict)}
    _layer(parser, None, top, file, environ, resolved)
    if command:
        _layer(commands[command], command, document.get(command, {}), file, environ,
               resolved)
    return resolved


def explicit(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """The dests that `argv` sets on the command line (parsed without any defaults)."""
    bare = argparse.Namespace()
    for p in [parser, *subcommands(parser).values()]:
        for action in p._actions:
            if action.dest not in NOT_SETTINGS:
                action.default = argparse.SUPPRESS
        for group in p._mutually_exclusive_groups:
            group.required = False
        for action in p._actions:
            action.required = action.required and not action.option_strings
    parser.parse_known_args(list(argv), bare)
    return set(vars(bare))


def settle(parser: argparse.ArgumentParser, args: argparse.Namespace, flags: set[str],
           resolved: Resolved) -> None:
    """Let flags beat the file and environment inside a choice of one: `--cluster` on the
    command line drops a `node` from the file rather than clashing with it."""
    command = subcommands(parser).get(resolved.command)
    for p in (parser, command) if command is not None else (parser,):
        for group in p._mutually_exclusive_groups:
            if not any(a.dest in flags for a in group._group_actions):
                continue
            for action in group._group_actions:
                if action.dest not in flags and action.dest in resolved.builtin:
                    setattr(args, action.dest, resolved.builtin[action.dest])
                    resolved.sources.pop(option_name(action), None)
        for name, action in settings(p).items():
            if action.dest in flags:
                resolved.sources[name] = "flag"
            if hasattr(args, action.dest):
                resolved.values[name] = getattr(args, action.dest)
