"""Where a mistake in a ``--config`` file or a command-line override is: file, line, argument.

Before parsing, each ``--config`` file is checked with the YAML loader jsonargparse uses
(exists, valid YAML, no key twice, no alias holding itself). When jsonargparse refuses the
configuration, its report is not read: :class:`_Walk` goes over the same sources in
jsonargparse's order against the parser's options and the classes' arguments, asks
jsonargparse whether each value fits its annotation, and names the first place that holds a
key nothing accepts or a value that does not fit; else jsonargparse's message is shown.
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

_CONFIG_FLAGS = ("-c", "--config")
_META = {"help", "config", "print_config", "__default_config__"}
_SPEC_KEYS = {"class_path", "init_args", "dict_kwargs", "__path__"}


def config_arguments(argv: Sequence[str]) -> list[str]:
    """The values given to ``-c`` / ``--config`` (``--config X`` and ``--config=X``), in order."""
    values = [argv[i + 1] for i, t in enumerate(argv[:-1]) if t in _CONFIG_FLAGS]
    return values + [t.split("=", 1)[1] for t in argv if t.startswith("--config=")]


def _quote_line(text: str, line: int) -> str:
    """Line ``line`` (0-based) of ``text``, prefixed with its 1-based number; tabs shown as ⇥."""
    lines = text.splitlines()
    if not 0 <= line < len(lines):
        return ""
    return f"  {line + 1} | {lines[line].rstrip(' ').replace(chr(9), '⇥   ')}"


def _lines(*lines: str) -> str:
    return "\n".join(line for line in lines if line)


def _loader() -> Any:
    """The YAML loader jsonargparse reads config files with (libyaml's when PyYAML has it),
    so that a file is refused here only when jsonargparse would refuse it too."""
    try:
        from jsonargparse._loaders_dumpers import get_yaml_default_loader
    except ImportError:  # jsonargparse moved it: the same base it uses
        return getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return get_yaml_default_loader()


def _compose(text: str) -> Node | None:
    return yaml.compose(text, Loader=_loader())  # noqa: S506 - composes nodes only


def _node(text: str) -> Node | None:
    try:
        return _compose(text)
    except yaml.YAMLError:
        return None


def _at_tab(text: str, mark: Any) -> bool:
    lines = text.splitlines()
    in_text = mark is not None and 0 <= mark.line < len(lines)
    return in_text and lines[mark.line][mark.column : mark.column + 1] == "\t"


def _python_reader_error(text: str, error: yaml.MarkedYAMLError) -> yaml.MarkedYAMLError | None:
    """The pure-Python reader's error for ``text`` (which libyaml refused with ``error``): it
    says more (the '[' not closed, the indenting tab). It also refuses tabs libyaml takes
    (after a value, in brackets): such a tab is read as a space and the text read again."""
    libyaml = error.problem_mark
    for _ in range(100):
        try:
            yaml.compose(text, Loader=yaml.SafeLoader)  # noqa: S506 - composes nodes only
            return None
        except yaml.MarkedYAMLError as plain:
            mark = plain.problem_mark
            if "'\\t'" not in (plain.problem or "") or mark is None:
                return plain
            if libyaml is not None and (mark.line, mark.column) == (libyaml.line, libyaml.column):
                return plain
            if not _at_tab(text, mark):
                return None
            lines = text.split("\n")
            lines[mark.line] = (
                lines[mark.line][: mark.column] + " " + lines[mark.line][mark.column + 1 :]
            )
            text = "\n".join(lines)
        except yaml.YAMLError:
            return None
    return None


def _yaml_syntax_message(path: str, text: str, error: yaml.MarkedYAMLError) -> str:
    """A YAML syntax error as ``path, line N: what is wrong`` and the line itself."""
    problem, mark = error.problem or "not valid YAML", error.problem_mark
    context, context_mark = error.context or "", error.context_mark
    if mark is None:
        return f"{path}: not valid YAML: {error}"
    where, what = mark.line, f"column {mark.column + 1}: {problem}"
    if "'\\t'" in problem or _at_tab(text, mark):
        what = "a tab character; YAML indents with spaces only"
    elif context.startswith("while parsing a flow ") and context_mark is not None:
        opening, closing = ("[", "]") if "sequence" in context else ("{", "}")
        where = context_mark.line
        what = (
            f"the '{opening}' opened here (column {context_mark.column + 1}) is not closed; "
            f"expected ',' or '{closing}' at line {mark.line + 1}, column {mark.column + 1}"
        )
    elif context and context_mark is not None and context_mark.line != mark.line:
        what += f" ({context} at line {context_mark.line + 1})"
    return _lines(f"{path}, line {where + 1}: {what}", _quote_line(text, where))


def _structure_problem(node: Node, path: str, text: str) -> str | None:
    """A list or mapping holding itself through an alias (``x: &a [*a]``: jsonargparse would
    recurse forever), or a key written twice in one mapping (YAML keeps the last one; ``<<``
    merge keys and keys of different types, ``1`` and ``"1"``, are not counted)."""
    on_path: set[int] = set()
    done: set[int] = set()

    def visit(current: Node) -> str | None:
        line = current.start_mark.line
        if id(current) in on_path:
            kind = "list" if isinstance(current, SequenceNode) else "mapping"
            return _lines(
                f"{path}, line {line + 1}: this {kind} holds itself through an alias (an '*name' "
                "inside the '&name' it refers to); a config cannot be read from it",
                _quote_line(text, line),
            )
        if id(current) in done or not isinstance(current, (MappingNode, SequenceNode)):
            return None
        on_path.add(id(current))
        children = list(current.value)
        if isinstance(current, MappingNode):
            seen: dict[tuple[str, str], int] = {}
            for key, _ in current.value:
                if isinstance(key, ScalarNode) and key.value != "<<":
                    first, line = seen.get((key.tag, key.value)), key.start_mark.line
                    if first is not None:
                        return _lines(
                            f"{path}, line {line + 1}: key '{key.value}' is already set at line "
                            f"{first + 1} in the same mapping (YAML would keep only the last "
                            "one); merge them or delete one",
                            _quote_line(text, first),
                            _quote_line(text, line),
                        )
                    seen[key.tag, key.value] = line
            children = [child for pair in current.value for child in pair]
        found = next((f for f in map(visit, children) if f), None)
        on_path.discard(id(current))
        done.add(id(current))
        return found

    try:
        return visit(node)
    except RecursionError:
        return None


def config_file_problem(value: str) -> str | None:
    """What is wrong with the ``--config`` value ``value`` (``None``: nothing found): a file
    that does not exist (with the nearest names in its folder), YAML that is not valid (the
    line: unclosed bracket, tab, ...), a key twice in one mapping, an alias holding itself.
    A value that is no file but a YAML mapping is an inline config, left to jsonargparse."""
    if not os.path.exists(value):
        return None if isinstance(_node(value), MappingNode) else _missing_file_message(value)
    if os.path.isdir(value):
        return f"--config {value}: a folder, not a config file"
    if value.endswith(".jsonnet"):
        return None
    try:
        with open(value, encoding="utf-8") as file:
            text = file.read()
        node = _compose(text)
    except (OSError, UnicodeDecodeError) as error:
        return f"--config {value}: cannot be read ({error})"
    except yaml.MarkedYAMLError as error:
        return _yaml_syntax_message(value, text, _python_reader_error(text, error) or error)
    except yaml.YAMLError as error:
        return f"{value}: not valid YAML: {error}"
    return None if node is None else _structure_problem(node, value, text)


def _missing_file_message(value: str) -> str:
    folder = os.path.dirname(value) or "."
    message = f"--config {value}: no such file (current folder: {os.getcwd()})"
    if not os.path.isdir(folder):
        return message + f"; the folder {folder} does not exist either"
    names = [n for n in os.listdir(folder) if n.endswith((".yaml", ".yml", ".json"))]
    close = difflib.get_close_matches(os.path.basename(value), names, n=3, cutoff=0.75)
    paths = [os.path.join(os.path.dirname(value), name) for name in close]
    return message + ("; did you mean " + " or ".join(paths) + "?" if paths else "")


# --- after jsonargparse refused the configuration: which place holds the mistake ----------------


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
        parser = _parser()
        parser.add_argument("--v", type=hint)
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
            if not action.dest.startswith(prefix) or not head or head in _META:
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
                if env in os.environ and action.dest.split(".")[-1] not in _META:
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
                elif name.split(".")[-1] not in _META:
                    if i <= split:
                        raise _Found(
                            f"--{name}: an option of '{self.subcommand}'; it goes after the "
                            f"subcommand ({self.command} --{name} ...)"
                        )
                    self.place = {"option": name.rstrip("+"), "value": value}
                    self._set(self.top, name.rstrip("+").split("."), _node(value), None, value)
        except _Found as found:
            return str(found)
        return None

    def _file(self, path: str, scope: _Scope, before: bool = False) -> None:
        """A config file, or inline YAML; ``before`` the subcommand, ``fit:`` holds fit's keys."""
        if not os.path.isfile(path):
            self.place, node = {"option": "config", "value": path}, _node(path)
        else:
            problem = config_file_problem(path)
            if problem:
                raise _Found(problem)
            with open(path, encoding="utf-8") as file:
                self.place = {"path": path, "text": file.read()}
            node = _compose(self.place["text"])
        if not before:
            self._mapping(node, scope)
            return
        for key, value in node.value if isinstance(node, MappingNode) else []:
            if key.value == self.subcommand:
                self._mapping(value, scope)
        keys = [(k, at) for k, at, _ in _keys(node) if k.split(".")[0] in self.top.names]
        if keys:  # the deepest key, as jsonargparse checks them
            name, at = max(keys, key=lambda item: item[0].count("."))
            raise _Found(
                _lines(
                    f"{self._where(at)[0]}: '{name}' is an option of '{self.subcommand}'; a "
                    f"config file without '{self.subcommand}:' at its top goes after the "
                    f"subcommand ({self.command} --config {path})",
                    self._where(at)[1],
                )
            )

    def _mapping(self, node: Node | None, scope: _Scope) -> None:
        for key, value in node.value if isinstance(node, MappingNode) else []:
            if isinstance(key, ScalarNode) and key.value not in _META and key.value != "<<":
                self._set(scope, key.value.split("."), value, key, None)

    def _set(
        self, scope: _Scope, parts: list[str], node: Node | None, at: Node | None, text: str | None
    ) -> None:
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

    def _value(
        self,
        action: Any,
        key: str,
        rest: list[str],
        node: Node | None,
        at: Node | None,
        text: str | None,
    ) -> None:
        hint = action._typehint
        bases = _classes(hint)
        if not bases and not rest:
            from_text = at is None and text is not None
            value = text if from_text else yaml.load(yaml.serialize(node), Loader=_loader())  # noqa: S506
            if _refused(hint, value, from_text):
                raise _Found(self._type_message(key, hint, node, value, from_text))
        elif rest[:1] == ["class_path"] and text is not None:
            self.classes[key] = self._resolve(text, bases)
        elif rest and bases:  # --model.lr 0.01: an argument of the class chosen before
            if key not in self.classes:
                default = getattr(getattr(action, "default", None), "class_path", None)
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
                fields = (
                    {k.value: v for k, v in item.value} if isinstance(item, MappingNode) else {}
                )
                path = getattr(fields.get("class_path"), "value", None)
                cls = self._resolve(path, bases) if isinstance(path, str) else None
                if item is node:  # init_args alone: the class chosen before
                    cls = self.classes[key] = cls or self.classes.get(key)
                scope = self._class_scope(cls, key)
                if scope is not None:
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
            parser = None
        if parser is None or cls is None:
            return None
        path = self.paths.get(cls, f"{cls.__module__}.{cls.__qualname__}")
        return _Scope(parser, "", key + ".init_args.", cls.__name__, f"--{key}.help {path}")

    def _where(self, at: Node | None) -> tuple[str, str]:
        """The source being walked (``path, line N``, ``--option``, ``environment variable
        X=V``) and the quoted line of a file."""
        if "path" in self.place and at is not None:
            line = at.start_mark.line
            return f"{self.place['path']}, line {line + 1}", _quote_line(self.place["text"], line)
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
        return _lines(f"{where}: {what}", quoted, f"({self.command} {see} options)")

    def _type_message(self, key: str, hint: Any, node: Any, value: Any, from_text: bool) -> str:
        expects = f"{key} expects {_type_words(hint)}"
        given = _short(node.value if isinstance(node, ScalarNode) and not from_text else str(value))
        where, quoted = self._where(node)
        if "option" in self.place:
            where = f"--{self.place['option']} {_short(shlex.quote(self.place['value']))}"
            if from_text and _plain_key(self.place["option"]) == _plain_key(key):
                expects = f"expects {_type_words(hint)}"  # no need to repeat the key
            broken = _yaml_value_problem(self.place["value"]) if from_text else None
            if broken is not None:
                return f"{where}: not valid YAML ({broken}); {expects}"
        return _lines(f"{where}: {expects}, got {given!r}", quoted)


def _keys(node: Node | None, prefix: str = "") -> Iterable[tuple[str, Node, Node]]:
    """(dotted key, key node, value node) of every key of the nested mappings, in file order."""
    for key, value in node.value if isinstance(node, MappingNode) else []:
        yield f"{prefix}{key.value}", key, value
        yield from _keys(value, f"{prefix}{key.value}.")


def _plain_key(key: str) -> str:
    """``model.init_args.lr`` and ``model.lr`` name the same option on the command line."""
    return ".".join(p for p in key.split(".") if p != "init_args")


def _suggestion(leaf: str, names: list[str]) -> str:
    close = difflib.get_close_matches(leaf, names, n=3, cutoff=0.6)
    if close:
        return "; did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
    return "; it accepts: " + ", ".join(names) if 0 < len(names) <= 15 else ""


def _yaml_value_problem(value: str) -> str | None:
    """Why a command-line value is not valid YAML, in a few words (``None`` if it is)."""
    try:
        yaml.load(value, Loader=_loader())  # noqa: S506 - a safe loader
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


def find_source(argv: Sequence[str], key: str, given: str | None = None) -> str | None:
    """The last place of ``argv`` (``--option``, or ``path, line N`` of a ``--config`` file)
    that sets the dotted ``key`` to ``given`` (to anything when ``None``); ``None`` if none."""
    found, plain = None, _plain_key(key)
    for i, token in enumerate(argv):
        name, eq, value = token.lstrip("-").partition("=")
        value = value if eq else (argv[i + 1] if i + 1 < len(argv) else "")
        if name in ("c", "config") and os.path.isfile(value):
            with open(value, encoding="utf-8") as file:
                for at, line, node in _keys(_node(file.read())):
                    if _plain_key(at) == plain and given in (None, getattr(node, "value", None)):
                        found = f"{value}, line {line.start_mark.line + 1}"
        elif token.startswith("--") and _plain_key(name) == plain and given in (None, value):
            found = f"--{name}"
    return found


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
