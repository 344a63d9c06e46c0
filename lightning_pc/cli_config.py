"""Where a mistake in a ``--config`` file or a command-line override is: file, line, argument.

Before parsing, each ``--config`` file is checked with the YAML loader jsonargparse uses
(exists, valid YAML, no key twice, no alias holding itself). When jsonargparse refuses the
configuration, :func:`lightning_pc.cli_walk.parse_error_message` finds the place of the
mistake without reading jsonargparse's report. :class:`lightning_pc.cli.PointCloudCLI` turns
either into a :class:`~lightning_pc.cli.ConfigError` of a few lines.
"""

from __future__ import annotations

import difflib
import os
import shlex
from collections.abc import Iterable, Sequence
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

_CONFIG_FLAGS = ("-c", "--config")
_META = {"help", "config", "print_config", "__default_config__"}


def config_arguments(argv: Sequence[str]) -> list[str]:
    """The values given to ``-c`` / ``--config`` (``--config X`` and ``--config=X``), in order."""
    values: list[str] = []
    for i, token in enumerate(argv):
        if token in _CONFIG_FLAGS and i + 1 < len(argv):
            values.append(argv[i + 1])
        elif token.startswith("--config="):
            values.append(token.split("=", 1)[1])
    return values


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
                            _quote_line(text, line) if line != first else "",
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
    if not os.path.exists(value):  # inline YAML, or a missing file
        node = _node(value)
        if isinstance(node, MappingNode):
            return _structure_problem(node, f"--config {shlex.quote(value)}", value)
        return _missing_file_message(value)
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
        return _yaml_syntax_message(value, text, error)
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


def _keys(node: Node | None, prefix: str = "") -> Iterable[tuple[str, Node, Node]]:
    """(dotted key, key node, value node) of every key of the nested mappings, in file order."""
    for key, value in node.value if isinstance(node, MappingNode) else []:
        yield f"{prefix}{key.value}", key, value
        yield from _keys(value, f"{prefix}{key.value}.")


def _plain_key(key: str) -> str:
    """``model.init_args.lr`` and ``model.lr`` name the same option on the command line."""
    return ".".join(p for p in key.split(".") if p != "init_args")


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
