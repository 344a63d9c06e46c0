"""After jsonargparse refused a configuration, the place of the mistake: the sources are walked
in jsonargparse's order against the parser's options and the classes' arguments, and
jsonargparse itself says whether each value fits; its message (worded per version) is not read.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import re
import shlex
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from lightning_pc import cli_config as cfg

_SPEC_KEYS = {"class_path", "init_args", "dict_kwargs", "__path__"}


class _Found(Exception):
    """The first mistake the walk meets, as the lines to show."""


def _members(hint: Any) -> tuple[Any, ...]:
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    return typing.get_args(hint) if union else (hint,)


def _classes(hint: Any) -> list[type]:
    """The classes a ``class_path`` may name for ``hint``, also as the items of a list."""
    found: list[type] = []
    for member in _members(hint):
        origin, args = typing.get_origin(member), typing.get_args(member)
        if isinstance(origin, type) and issubclass(origin, Iterable) and origin not in (str, dict):
            found += _classes(args[0]) if args else []
        elif isinstance(member, type) and member.__module__ not in ("builtins", "pathlib"):
            found.append(member)
    return found


def _type_words(hint: Any) -> str:
    """``int | None`` -> ``int or null``; ``Literal['a', 'b']`` -> ``one of 'a', 'b'``."""
    words = []
    for member in _members(hint):
        if member is type(None):
            words.append("null")
        elif typing.get_origin(member) is typing.Literal:
            words.append("one of " + ", ".join(map(repr, typing.get_args(member))))
        elif isinstance(member, type) and not typing.get_args(member):
            words.append(member.__name__)
        else:  # dict[str, typing.Any] -> dict[str, Any]
            words.append(re.sub(r"\b(?:[A-Za-z_]\w*\.)+(?=[A-Za-z_])", "", str(member)))
    return " or ".join(dict.fromkeys(words))


def _parser(cls: type | None = None) -> Any:
    """A jsonargparse parser that raises (of ``cls``'s arguments, when given)."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False, default_env=False)
    if cls is not None:
        parser.add_class_arguments(cls, fail_untyped=False, sub_configs=True)
    return parser


def _refused(hint: Any, value: Any, from_text: bool) -> bool:
    """Whether jsonargparse refuses ``value`` (command-line text when ``from_text``, else as
    loaded from a file) for an option annotated ``hint``; ``False`` when it cannot tell."""
    try:
        (parser := _parser()).add_argument("--v", type=hint)
    except Exception:  # noqa: BLE001 - a type jsonargparse does not check alone
        return False
    try:
        parser.parse_args([f"--v={value}"]) if from_text else parser.parse_object({"v": value})
    except argparse.ArgumentError:
        return True
    except Exception:  # noqa: BLE001
        return False
    return False


def _resolve(name: str, bases: list[type]) -> type | None:
    """The class ``name``: a dotted path, or a class name among the subclasses of ``bases``."""
    if "." in name:
        module, _, attribute = name.rpartition(".")
        try:
            found = getattr(importlib.import_module(module), attribute)
        except Exception:  # noqa: BLE001 - jsonargparse reports it
            return None
        return found if isinstance(found, type) else None
    matches, stack, seen = set(), list(bases), set()
    while stack:
        cls = stack.pop()
        if cls not in seen:
            seen.add(cls)
            matches |= {cls} if cls.__name__ == name else set()
            stack.extend(cls.__subclasses__())
    return matches.pop() if len(matches) == 1 else None


class _Scope:
    """The keys accepted at one level: a parser's options below ``prefix`` (the top level, a
    group such as ``trainer``, a class's arguments); ``key`` is the dotted key they sit under."""

    def __init__(self, parser: Any, prefix: str, key: str, owner: str, see: str = "") -> None:
        self.parser, self.prefix, self.key, self.owner, self.see = parser, prefix, key, owner, see
        self.names: dict[str, Any] = {}  # name -> its action, "group", or None (not checked)
        for action in parser._actions:
            head, dot, _ = action.dest[len(prefix) :].partition(".")
            if not action.dest.startswith(prefix) or not head or head in cfg._META:
                continue
            if not dot and hasattr(action, "_typehint"):  # jsonargparse keeps the annotation there
                self.names[head] = action
            elif self.names.get(head) is None:
                self.names[head] = "group" if dot else None


class _Walk:
    """The sources of one parse in jsonargparse's order: environment variables (when it reads
    them), then the command line left to right (``--config`` files, a group's file such as
    ``--trainer FILE``, options); :meth:`run` returns the first mistake, or ``None``."""

    def __init__(self, parser: Any, argv: Sequence[str], subcommand: str) -> None:
        self.parser, self.argv, self.subcommand = parser, list(argv), subcommand
        self.command = f"lightning-pc {subcommand}"
        self.top = _Scope(parser, "", "", "the config")
        self.classes: dict[str, type | None] = {}  # the class chosen so far for a key
        self.paths: dict[type, str] = {}  # a class's path as the user wrote it
        self.place: dict[str, str] = {}  # path and text, option and value, or env and value

    def run(self) -> str | None:
        try:
            prefix = self.parser.env_prefix if self.parser.default_env else None
            for action in self.parser._actions if prefix is not None else []:
                start = prefix.replace("-", "_") + "_" if isinstance(prefix, str) else ""
                env = f"{start}{action.dest}".replace(".", "__").upper()
                if env in os.environ and action.dest.split(".")[-1] not in cfg._META:
                    self.place = {"env": env, "value": os.environ[env]}
                    self._set(self.top, action.dest.split("."), None, None, os.environ[env])
            split, i = self.argv.index(self.subcommand), 0
            while i < len(self.argv):
                token, i = self.argv[i], i + 1
                name, eq, value = token.lstrip("-").partition("=")
                if not eq and i < len(self.argv) and not self.argv[i].startswith("--"):
                    value, i = self.argv[i], i + 1
                elif not eq or not (token.startswith("--") or token == "-c"):
                    continue
                if name in ("c", "config"):
                    self._file(value, self.top, before=i <= split)
                elif name.split(".")[-1] not in cfg._META:
                    if i <= split:
                        raise _Found(
                            f"--{name}: an option of '{self.subcommand}'; it goes after the "
                            f"subcommand ({self.command} --{name} ...)"
                        )
                    self.place = {"option": name.rstrip("+"), "value": value}
                    self._set(self.top, name.rstrip("+").split("."), cfg._node(value), None, value)
        except _Found as found:
            return str(found)
        return None

    def _file(self, path: str, scope: _Scope, before: bool = False) -> None:
        """A config file, or inline YAML; ``before`` the subcommand, ``fit:`` holds fit's keys."""
        if not os.path.isfile(path):
            self.place, node = {"option": "config", "value": path}, cfg._node(path)
        else:
            problem = cfg.config_file_problem(path)
            if problem:
                raise _Found(problem)
            with open(path, encoding="utf-8") as file:
                self.place = {"path": path, "text": file.read()}
            node = cfg._compose(self.place["text"])
        if not before:
            self._mapping(node, scope)
            return
        for key, value in node.value if isinstance(node, MappingNode) else []:
            if key.value == self.subcommand:
                self._mapping(value, scope)
        keys = [(k, at) for k, at, _ in cfg._keys(node) if k.split(".")[0] in self.top.names]
        if keys:  # the deepest key, as jsonargparse checks them
            name, at = max(keys, key=lambda item: item[0].count("."))
            raise _Found(
                cfg._lines(
                    f"{self._where(at)[0]}: '{name}' is an option of '{self.subcommand}'; a "
                    f"config file without '{self.subcommand}:' at its top goes after the "
                    f"subcommand ({self.command} --config {path})",
                    self._where(at)[1],
                )
            )

    def _mapping(self, node: Node | None, scope: _Scope) -> None:
        for key, value in node.value if isinstance(node, MappingNode) else []:
            if isinstance(key, ScalarNode) and key.value not in cfg._META and key.value != "<<":
                self._set(scope, key.value.split("."), value, key, None)

    def _set(self, scope: _Scope, parts: list[str], node: Any, at: Any, text: Any) -> None:
        """The value ``node`` (or the command-line ``text``) of the key ``parts`` below
        ``scope``; ``at`` is the key's node in a file (``None``: an option's name)."""
        name, rest = parts[0], parts[1:]
        if name not in scope.names:
            raise _Found(self._unknown(scope, name, at))
        entry, key = scope.names[name], scope.key + name
        if entry == "group":
            below = _Scope(scope.parser, f"{scope.prefix}{name}.", key + ".", key)
            if rest:
                self._set(below, rest, node, at, text)
            elif text is not None and os.path.isfile(text):
                self._file(text, below)
            else:
                self._mapping(node, below)
        elif entry is not None:
            self._value(entry, key, rest, node, at, text)

    def _value(self, act: Any, key: str, rest: list[str], node: Any, at: Any, text: Any) -> None:
        hint = act._typehint
        bases = _classes(hint)
        if not bases and not rest:
            from_text = at is None and text is not None
            loaded = yaml.load(yaml.serialize(node), Loader=cfg._loader()) if node else None  # noqa: S506
            value = text if from_text else loaded
            if _refused(hint, value, from_text):
                raise _Found(self._type_message(key, hint, node, value, from_text))
        elif rest[:1] == ["class_path"] and text is not None:
            self.classes[key] = self._resolve(text, bases)
        elif rest and bases:  # --model.lr 0.01: an argument of the class chosen before
            if key not in self.classes:
                default = getattr(getattr(act, "default", None), "class_path", None)
                if not isinstance(default, str):
                    option, value = self.place.get("option", key), self.place.get("value", "")
                    raise _Found(
                        f"--{option} {_short(shlex.quote(value))}: given before {key}'s class is "
                        f"chosen; put it after the --config (or --{key} CLASS) that sets {key}'s "
                        "class_path"
                    )
                self.classes[key] = self._resolve(default, bases)
            scope = self._class_scope(self.classes[key], key)
            rest = rest[1:] if rest[0] == "init_args" else rest
            if scope is not None and rest:
                self._set(scope, rest, node, None, text)
        elif bases and isinstance(node, ScalarNode) and node.value:
            self.classes[key] = self._resolve(node.value, bases)
        elif bases and isinstance(node, (MappingNode, SequenceNode)):
            for item in node.value if isinstance(node, SequenceNode) else [node]:
                mapping = isinstance(item, MappingNode)
                fields = {k.value: v for k, v in item.value} if mapping else {}
                path = getattr(fields.get("class_path"), "value", None)
                cls = self._resolve(path, bases) if isinstance(path, str) else None
                if item is node:  # init_args alone: the class chosen before
                    cls = self.classes[key] = cls or self.classes.get(key)
                scope = self._class_scope(cls, key)
                if scope is not None and mapping:
                    self._mapping(fields.get("init_args"), scope)
                    for k, v in item.value:
                        if k.value not in _SPEC_KEYS:
                            self._set(scope, [k.value], v, k, None)

    def _resolve(self, name: str, bases: list[type]) -> type | None:
        cls = _resolve(name, bases)
        if cls is not None and "." in name:  # the help hint names it as the user wrote it
            self.paths[cls] = name
        return cls

    def _class_scope(self, cls: type | None, key: str) -> _Scope | None:
        try:
            parser = _parser(cls) if cls is not None else None
        except Exception:  # noqa: BLE001 - arguments jsonargparse cannot read alone
            return None
        if parser is None or cls is None:
            return None
        path = self.paths.get(cls, f"{cls.__module__}.{cls.__qualname__}")
        return _Scope(parser, "", key + ".init_args.", cls.__name__, f"--{key}.help {path}")

    def _where(self, at: Node | None) -> tuple[str, str]:
        """The source being walked (``path, line N``, ``--option``, ``environment variable
        X=V``) and the quoted line of a file."""
        if "path" in self.place and at is not None:
            line = at.start_mark.line
            return f"{self.place['path']}, line {line + 1}", cfg._quote_line(
                self.place["text"], line
            )
        if "env" in self.place:
            value = _short(shlex.quote(self.place["value"]))
            return f"environment variable {self.place['env']}={value}", ""
        return f"--{self.place.get('option', '')}", ""

    def _unknown(self, scope: _Scope, name: str, at: Node | None) -> str:
        if at is None and not scope.see and "option" in self.place:
            option = "--" + self.place["option"]
            options = [s for a in self.parser._actions for s in a.option_strings]
            close = difflib.get_close_matches(option, options, n=3, cutoff=0.6)
            hint = "; did you mean " + " or ".join(close) + "?" if close else ""
            return f"{option}: no such option{hint}\n({self.command} --help lists the options)"
        where, quoted = self._where(at)
        what = f"{scope.owner} has no option '{name}'" + _suggestion(name, list(scope.names))
        see = f"{scope.see} lists its" if scope.see else "--help lists the"
        return cfg._lines(f"{where}: {what}", quoted, f"({self.command} {see} options)")

    def _type_message(self, key: str, hint: Any, node: Any, value: Any, from_text: bool) -> str:
        expects = f"{key} expects {_type_words(hint)}"
        given = _short(node.value if isinstance(node, ScalarNode) and not from_text else str(value))
        where, quoted = self._where(node)
        if "option" in self.place:
            where = f"--{self.place['option']} {_short(shlex.quote(self.place['value']))}"
            if from_text and cfg._plain_key(self.place["option"]) == cfg._plain_key(key):
                expects = f"expects {_type_words(hint)}"  # no need to repeat the key
            broken = _yaml_value_problem(self.place["value"]) if from_text else None
            if broken is not None:
                return f"{where}: not valid YAML ({broken}); {expects}"
        return cfg._lines(f"{where}: {expects}, got {given!r}", quoted)


def _suggestion(leaf: str, names: list[str]) -> str:
    close = difflib.get_close_matches(leaf, names, n=3, cutoff=0.6)
    if close:
        return "; did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
    return "; it accepts: " + ", ".join(names) if 0 < len(names) <= 15 else ""


def _yaml_value_problem(value: str) -> str | None:
    """Why a command-line value is not valid YAML, in a few words (``None`` if it is)."""
    try:
        yaml.load(value, Loader=cfg._loader())  # noqa: S506 - a safe loader
    except yaml.MarkedYAMLError as error:
        for opening, closing in ("[]", "{}"):
            flow = (error.context or "").startswith("while parsing a flow")
            if flow and value.count(opening) > value.count(closing):
                return f"a '{opening}' is not closed"
        column = f" at column {error.problem_mark.column + 1}" if error.problem_mark else ""
        return f"{error.problem}{column}"
    except yaml.YAMLError as error:
        return str(error).splitlines()[0]
    return None


def _short(value: str, limit: int = 60) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."


def parse_error_message(text: str, argv: Sequence[str], parser: Any, subcommand: str | None) -> str:
    """A few lines for jsonargparse's parse error ``text``: the file and line, the option or
    the environment variable that holds the mistake, and what is accepted there; when the walk
    finds nothing (or no subcommand was given), jsonargparse's own message, cut to 6 lines.

    Args:
        text: the error jsonargparse raised (``str(ArgumentError)``).
        argv: the command line.
        parser: the parser of ``subcommand``.
        subcommand: ``fit``, ``test``, ... or ``None``.
    """
    found = None
    if subcommand is not None and subcommand in argv:
        try:
            found = _Walk(parser, argv, subcommand).run()
        except Exception:  # noqa: BLE001 - never hide jsonargparse's error behind ours
            found = None
    lines = [line.rstrip()[:160] for line in text.strip().splitlines() if line.strip()]
    more = [f"... ({len(lines) - 6} more lines)"] if len(lines) > 6 else []
    return found or "\n".join(lines[:6] + more)
