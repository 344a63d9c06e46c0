"""Where a mistake in a ``--config`` file or a command-line override is: file, line, argument.

jsonargparse (under LightningCLI) reports a broken YAML file, an unknown key or a value of
the wrong type with its own parse state, often dozens of lines, and without the line of the
file. These helpers find the place the user has to edit; :class:`lightning_pc.cli.PointCloudCLI`
turns what they find into a :class:`~lightning_pc.cli.ConfigError` of a few lines.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

_CONFIG_FLAGS = ("-c", "--config")


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


def _yaml_syntax_message(path: str, text: str, error: yaml.MarkedYAMLError) -> str:
    """A YAML syntax error as ``path, line N: what is wrong`` and the line itself."""
    problem = error.problem or "not valid YAML"
    mark = error.problem_mark
    context, context_mark = error.context or "", error.context_mark
    if ("'\\t'" in problem or _at_tab(text, mark)) and mark is not None:
        where, what = mark.line, "a tab character; YAML indents with spaces only"
    elif context.startswith(("while parsing a flow sequence", "while parsing a flow mapping"))\
            and context_mark is not None:
        bracket = "[" if "sequence" in context else "{"
        closing = "]" if bracket == "[" else "}"
        where = context_mark.line
        what = f"the '{bracket}' opened here (column {context_mark.column + 1}) is not closed"
        if mark is not None:
            what += f"; expected ',' or '{closing}' at line {mark.line + 1}, column {mark.column + 1}"
    elif mark is not None:
        where = mark.line
        what = f"column {mark.column + 1}: {problem}"
        if context and context_mark is not None and context_mark.line != mark.line:
            what += f" ({context} at line {context_mark.line + 1})"
    else:
        return f"{path}: not valid YAML: {error}"
    lines = [f"{path}, line {where + 1}: {what}"]
    quoted = _quote_line(text, where)
    if quoted:
        lines.append(quoted)
    return "\n".join(lines)


def _duplicate_key(node: Node) -> tuple[str, int, int] | None:
    """The first key written twice in one mapping of ``node``: (key, first line, second line),
    1-based; YAML loaders keep the last value silently. ``<<`` merge keys are not counted,
    nor keys of different types (``1:`` is an int, ``"1":`` a string). An alias to a node
    already seen (``x: &a [*a]`` holds itself) is not walked again."""
    stack: list[Node] = [node]
    visited: set[int] = set()
    while stack:
        current = stack.pop(0)
        if id(current) in visited:
            continue
        visited.add(id(current))
        if isinstance(current, MappingNode):
            seen: dict[tuple[str, str], int] = {}
            for key_node, value_node in current.value:
                if isinstance(key_node, ScalarNode) and key_node.value != "<<":
                    line = key_node.start_mark.line + 1
                    identity = (key_node.tag, key_node.value)
                    if identity in seen:
                        return key_node.value, seen[identity], line
                    seen[identity] = line
                stack.append(value_node)
        elif isinstance(current, SequenceNode):
            stack.extend(current.value)
    return None


def _holding_itself(node: Node) -> Node | None:
    """A list or mapping of ``node`` that holds itself through an alias (``x: &a [*a]``),
    which no config can be read from (jsonargparse recurses forever), or ``None``."""
    on_path: set[int] = set()
    done: set[int] = set()
    stack: list[tuple[Node, bool]] = [(node, False)]
    while stack:
        current, leaving = stack.pop()
        if leaving:
            on_path.discard(id(current))
            done.add(id(current))
            continue
        if id(current) in on_path:
            return current
        if id(current) in done:
            continue
        if isinstance(current, MappingNode):
            children = [child for pair in current.value for child in pair]
        elif isinstance(current, SequenceNode):
            children = list(current.value)
        else:
            continue
        on_path.add(id(current))
        stack.append((current, True))
        stack.extend((child, False) for child in reversed(children))
    return None


def _loader() -> Any:
    """The YAML loader jsonargparse reads config files with (libyaml's ``CSafeLoader`` when
    PyYAML has it, with jsonargparse's own float and timestamp rules), so that a file is
    refused here only when jsonargparse would refuse it too."""
    try:
        from jsonargparse._loaders_dumpers import get_yaml_default_loader
    except ImportError:  # jsonargparse moved it: the same base it uses
        return getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return get_yaml_default_loader()


def _at_tab(text: str, mark: Any) -> bool:
    """Whether ``mark`` (a YAML error's position) is on a tab character of ``text``."""
    lines = text.splitlines()
    if mark is None or not 0 <= mark.line < len(lines):
        return False
    return lines[mark.line][mark.column:mark.column + 1] == "\t"


def _python_reader_error(
    text: str, error: yaml.MarkedYAMLError
) -> yaml.MarkedYAMLError | None:
    """The pure-Python reader's error for ``text``, which libyaml refused with ``error``:
    it says more about the same mistake (the '[' that is not closed, the indenting tab).
    That reader also refuses tabs libyaml takes (after a value, in brackets); such a tab,
    where libyaml's error is not, is read as the space it stands for, and the file read
    again. ``None`` when it finds nothing."""
    for _ in range(100):
        try:
            yaml.compose(text, Loader=yaml.SafeLoader)  # noqa: S506 - composes nodes only
        except yaml.MarkedYAMLError as plain:
            mark = plain.problem_mark
            if "'\\t'" not in (plain.problem or "") or mark is None:
                return plain
            if error.problem_mark is not None and (mark.line, mark.column) == (
                error.problem_mark.line, error.problem_mark.column
            ):
                return plain
            if not _at_tab(text, mark):
                return None
            lines = text.split("\n")
            row = lines[mark.line]
            lines[mark.line] = row[: mark.column] + " " + row[mark.column + 1:]
            text = "\n".join(lines)
        except yaml.YAMLError:
            return None
        else:
            return None
    return None


def _compose(text: str) -> Node | None:
    return yaml.compose(text, Loader=_loader())  # noqa: S506 - composes nodes only


def config_file_problem(value: str) -> str | None:
    """What is wrong with the ``--config`` value ``value``, or ``None`` when nothing is found.

    Checks that the file exists (else names the nearest file names in its folder), that it
    is valid YAML (else names the line: unclosed bracket, tab, ...), and that no mapping
    holds the same key twice (YAML keeps the last one silently: a second ``trainer:`` would
    drop every setting of the first). A value that is not a file but a YAML mapping is an
    inline config (``--config '{trainer: {max_epochs: 1}}'``): left to jsonargparse.
    """
    if not os.path.exists(value):
        try:
            inline = yaml.load(value, Loader=_loader())  # noqa: S506 - a safe loader
        except yaml.YAMLError:
            inline = None
        if isinstance(inline, dict):
            return None
        return _missing_file_message(value)
    if os.path.isdir(value):
        return f"--config {value}: a folder, not a config file"
    if value.endswith(".jsonnet"):
        return None
    try:
        with open(value, encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError) as error:
        return f"--config {value}: cannot be read ({error})"
    try:
        node = _compose(text)
    except yaml.MarkedYAMLError as error:
        return _yaml_syntax_message(value, text, _python_reader_error(text, error) or error)
    except yaml.YAMLError as error:
        return f"{value}: not valid YAML: {error}"
    if node is None:
        return None
    looped = _holding_itself(node)
    if looped is not None:
        line = looped.start_mark.line
        kind = "list" if isinstance(looped, SequenceNode) else "mapping"
        return "\n".join(part for part in [
            f"{value}, line {line + 1}: this {kind} holds itself through an alias (an '*name' "
            "inside the '&name' it refers to); a config cannot be read from it",
            _quote_line(text, line)] if part)
    duplicate = _duplicate_key(node)
    if duplicate is not None:
        key, first, second = duplicate
        return "\n".join(
            [f"{value}, line {second}: key '{key}' is already set at line {first} in the "
             "same mapping (YAML would keep only the last one); merge them or delete one",
             _quote_line(text, first - 1), _quote_line(text, second - 1)]
        )
    return None


def _missing_file_message(value: str) -> str:
    folder = os.path.dirname(value) or "."
    message = f"--config {value}: no such file (current folder: {os.getcwd()})"
    if not os.path.isdir(folder):
        return message + f"; the folder {folder} does not exist either"
    names = [n for n in os.listdir(folder) if n.endswith((".yaml", ".yml", ".json"))]
    close = difflib.get_close_matches(os.path.basename(value), names, n=3, cutoff=0.75)
    if close:
        message += "; did you mean " + " or ".join(
            os.path.join(os.path.dirname(value), name) for name in close
        ) + "?"
    return message


def find_key(path: str, key: str) -> list[tuple[int, str | None]]:
    """Each place where the dotted ``key`` (``trainer.max_epochs``, ``model.init_args.lr``)
    is written in the YAML file ``path``: its 1-based line and its value when that is a
    scalar (``None`` for a list or mapping), in file order; ``[]`` when the file does not set it.

    ``init_args`` may be left out in a file (``model: {lr: ...}``) and is skipped when the
    file has no such level; in a list each item is searched (``trainer.callbacks.every_n_epochs``
    can be in several items) unless the part is an index (``trainer.callbacks.0``).
    """
    try:
        with open(path, encoding="utf-8") as file:
            node = _compose(file.read())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []
    found: list[tuple[Node, Node]] = []
    _find_in_node(node, [p for p in key.split(".") if p], found, set())
    return [(k.start_mark.line + 1, v.value if isinstance(v, ScalarNode) else None)
            for k, v in found]


def _find_in_node(
    node: Node | None, parts: list[str], found: list[tuple[Node, Node]], walking: set[int]
) -> None:
    """Append to ``found`` the (key, value) nodes of ``parts`` under ``node``; ``walking``
    holds the lists being searched, so that a list holding itself (an alias) ends."""
    if not parts or node is None:
        return
    part, rest = parts[0], parts[1:]
    if isinstance(node, SequenceNode):
        if id(node) in walking:
            return
        if part.isdigit():
            index = int(part)
            if index < len(node.value):
                _find_in_node(node.value[index], rest, found, walking)
            return
        walking.add(id(node))
        for item in node.value:
            _find_in_node(item, parts, found, walking)
        walking.discard(id(node))
        return
    if not isinstance(node, MappingNode):
        return
    for key_node, value_node in node.value:
        if isinstance(key_node, ScalarNode) and key_node.value == part:
            if rest:
                _find_in_node(value_node, rest, found, walking)
            else:
                found.append((key_node, value_node))
            return
    if part == "init_args":
        _find_in_node(node, rest, found, walking)


# --- jsonargparse's parse errors ----------------------------------------------------------------


@dataclass
class ParseProblem:
    """What a jsonargparse parse error is about, read from its text.

    Attributes:
        kind: ``"unknown"`` (a key no class or group accepts), ``"type"`` (a value of the
            wrong type), ``"unrecognized"`` (command-line words no option takes) or
            ``"before_subcommand"`` (an option of the subcommand given before it; ``given``
            is then the subcommand).
        key: the dotted config key (``trainer.max_epochs``, ``model.init_args.lr``); for
            ``"unrecognized"`` the words themselves.
        class_path: the class whose arguments ``key`` belongs to, when there is one.
        expected: what the option accepts, in words (``int or null``).
        given: the value given, as jsonargparse printed it.
        detail: jsonargparse's reason when it is more than "expected another type" (e.g.
            ``Expected an instantiatable class, but ... is abstract``).
        owner_key: for ``"unknown"``, the key of the class arguments or group that refused
            the option (``model.init_args``, ``trainer``; ``""``: the top level).
    """

    kind: str
    key: str
    class_path: str | None = None
    expected: str = ""
    given: str = ""
    detail: str = ""
    owner_key: str = ""


_PARSER_KEY = re.compile(r'(?:- )?Parser key "([^"]+)":\s*(.*)$')
_CLASS_BRANCH = re.compile(r"- Problem with given class_path '([^']+)':")
_NOT_ACCEPTED = re.compile(r"Option '([^']+)' is not accepted")
_BEFORE_SUBCOMMAND = re.compile(r"Option '([^']+)' is not accepted before subcommand '([^']+)'")
_NESTED_ARG = re.compile(r"NestedArg\(key='([^']*)', val='(.*)'\)")
_GROUP = re.compile(r"Group '([^']+)' does not accept option '([^']+)'")
_SUBCOMMAND = re.compile(r"Subcommand '[^']+' does not accept option '([^']+)'")
_UNRECOGNIZED = re.compile(r"unrecognized arguments: (.*)$")
_EXPECTED_GOT = re.compile(r"^(?:- )?Expected an? (.+?)\. Got value: (.*)$")
_PLAIN_EXPECTED = re.compile(r"^- Expected an? (<class '[\w.]+'>|[\w.]+(\[.*\])?)(\. Got value: .*)?$")


def read_parse_error(text: str) -> ParseProblem | None:
    """The key and the problem of jsonargparse's error ``text``, or ``None`` if not understood.

    jsonargparse nests its report: ``Parser key "model":`` / a union's ``Subtypes`` and one
    ``- ...`` branch per member / ``- Problem with given class_path 'X':`` / ``Parser key
    "lr":`` / ``Expected a <class 'float'>. Got value: fast``. The branch of the given
    class path is the one followed (the others are the union's alternatives: ``None``, a
    base class, ...).
    """
    parts: list[str] = []
    class_path: str | None = None
    subtypes: str | None = None
    detail = ""
    for raw in text.splitlines():
        line = raw.strip()
        match = _PARSER_KEY.match(line)
        if match:
            nested, joined = match.group(1), ".".join(parts)
            if joined and nested.startswith(joined + "."):  # a group's config file: full key
                parts = [nested]
            else:
                parts.append(nested)
            subtypes = None
            line = match.group(2).strip()
            if not line:
                continue
        match = _CLASS_BRANCH.match(line)
        if match:
            if class_path is not None and parts and parts[-1] == "init_args":
                break  # a second class branch: the first one said nothing we understand
            parts.append("init_args")
            class_path, subtypes = match.group(1), None
            continue
        match = _BEFORE_SUBCOMMAND.search(line)
        if match:
            return ParseProblem("before_subcommand", match.group(1), given=match.group(2))
        match = _NOT_ACCEPTED.search(line)
        if match:
            owner = ".".join(parts)
            key = f"{owner}.{match.group(1)}" if owner else match.group(1)
            return ParseProblem("unknown", key, class_path, owner_key=owner)
        match = _GROUP.match(line)
        if match:
            group = match.group(1)
            return ParseProblem("unknown", f"{group}.{match.group(2)}", owner_key=group)
        match = _SUBCOMMAND.match(line)
        if match:
            return ParseProblem("unknown", match.group(1))
        match = _UNRECOGNIZED.match(line)
        if match:
            return ParseProblem("unrecognized", match.group(1).strip())
        if line.startswith("Subtypes: ") and parts:
            subtypes, detail = line[len("Subtypes: "):], ""
            continue
        if subtypes is not None and line.startswith("- ") and not detail:
            if not _PLAIN_EXPECTED.match(line):
                detail = line[2:].strip()
            continue
        match = _EXPECTED_GOT.match(line)
        if match and subtypes is None and parts:
            return ParseProblem(
                "type", ".".join(parts), class_path, _type_words(match.group(1)), match.group(2)
            )
        if line.startswith("Given value: ") and subtypes is not None and parts:
            return ParseProblem(
                "type", ".".join(parts), class_path, _type_words(subtypes),
                line[len("Given value: "):], detail,
            )
    return None


def _type_words(text: str) -> str:
    """``[<class 'int'>, <class 'NoneType'>]`` -> ``int or null``; ``typing.Literal['a',
    'b']`` -> ``one of 'a', 'b'``; module paths dropped (``list[Callback]``)."""
    text = re.sub(r"<class '([\w.]+)'>", r"\1", text.strip())
    text = re.sub(r"\b(?:[A-Za-z_]\w*\.)+([A-Za-z_]\w*)", r"\1", text)
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    members: list[str] = []
    depth, start = 0, 0
    for i, char in enumerate(text + ","):
        if char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        elif char == "," and depth == 0:
            members.append(text[start:i].strip())
            start = i + 1
    words = []
    for member in members:
        literal = re.fullmatch(r"Literal\[(.*)\]", member)
        if literal:
            words.append(f"one of {literal.group(1)}")
        elif member == "NoneType":
            words.append("null")
        elif member:
            words.append(member)
    return " or ".join(dict.fromkeys(words))


def _overrides(argv: Sequence[str]) -> list[tuple[int, str, str]]:
    """The ``--name value`` / ``--name=value`` words of ``argv``: (position, name, value);
    ``--config`` is not one (its files are searched instead)."""
    found: list[tuple[int, str, str]] = []
    for i, token in enumerate(argv):
        if not token.startswith("--") or token in _CONFIG_FLAGS or token.startswith("--config="):
            continue
        name, eq, value = token[2:].partition("=")
        if not eq:
            value = argv[i + 1] if i + 1 < len(argv) else ""
        found.append((i, name.rstrip("+"), value))
    return found


def _plain_key(key: str) -> str:
    """``model.init_args.lr`` and ``model.lr`` name the same option on the command line."""
    return ".".join(p for p in key.split(".") if p != "init_args")


@dataclass
class _Source:
    """Where the value of a key came from: a config file line, a command-line option or an
    environment variable."""

    path: str | None = None
    line: int = 0
    option: str = ""
    value: str = ""
    env: str = ""


def _same_value(text: str | None, given: str | None) -> bool:
    """Whether ``text`` (as written in a file or on the command line) is the value ``given``
    (as jsonargparse printed it: ``True`` for ``true``); a list or mapping (``None``) may be."""
    if text is None or given is None or text == given:
        return True
    try:
        return str(yaml.load(text, Loader=_loader())) == given  # noqa: S506 - a safe loader
    except yaml.YAMLError:
        return False


def _key_below(key: str, option: str) -> str | None:
    """The part of ``key`` below the option ``option`` (``trainer.max_epochs`` below
    ``trainer`` is ``max_epochs``; ``init_args`` levels skipped), ``None`` if not below it."""
    parts, wanted = key.split("."), option.split(".")
    i = 0
    for name in wanted:
        while i < len(parts) and parts[i] == "init_args" and name != "init_args":
            i += 1
        if i >= len(parts) or parts[i] != name:
            return None
        i += 1
    rest = ".".join(parts[i:])
    return rest or None


def _file_candidate(
    path: str, keys: Sequence[str], given: str | None
) -> tuple[_Source, bool] | None:
    """The line of the first of ``keys`` that file ``path`` sets, and whether its value is
    ``given``; in a list the first item that holds ``given`` (jsonargparse stops there)."""
    if not os.path.isfile(path):
        return None
    for key in keys:
        found = find_key(path, key)
        if not found:
            continue
        agreeing = [line for line, scalar in found if _same_value(scalar, given)]
        if agreeing:
            return _Source(path=path, line=agreeing[0]), True
        return _Source(path=path, line=found[0][0]), False
    return None


def find_source(
    argv: Sequence[str], key: str, given: str | None = None, subcommand: str | None = None
) -> _Source | None:
    """The place that set ``key``: an override (``--trainer.max_epochs``, also a parent such
    as ``--model '{...}'`` or a group's file ``--trainer trainer.yaml``), a line of a
    ``--config`` file (one before ``subcommand`` nests its keys under ``fit:``) or, for a
    refused value, an environment variable.

    The last one wins, as in parsing; but jsonargparse checks each value as it reads it, so
    when ``given`` (the value it refused) is known, the last place that holds that value is
    the one named (``--trainer.max_epochs ten --config c.yaml`` fails on ``ten`` although the
    file sets the key later), and none at all when no place holds it: an innocent line is
    never blamed.
    """
    plain = _plain_key(key)
    candidates: list[tuple[int, _Source, bool]] = []
    for position, name, value in _overrides(argv):
        option = _plain_key(name)
        if option == plain:
            candidates.append((position, _Source(option=name, value=value),
                               _same_value(value, given)))
        elif plain.startswith(option + "."):
            below = _key_below(key, name)
            in_file = _file_candidate(value, [below], given) if below else None
            if in_file is not None:  # --trainer trainer.yaml: the line in that file
                candidates.append((position, *in_file))
            elif not os.path.isfile(value):
                candidates.append((position, _Source(option=name, value=value), True))
    split = list(argv).index(subcommand) if subcommand and subcommand in argv else len(argv)
    for position, token in enumerate(argv):
        if token in _CONFIG_FLAGS and position + 1 < len(argv):
            position, path = position + 1, argv[position + 1]
        elif token.startswith("--config="):
            path = token.split("=", 1)[1]
        else:
            continue
        keys = [f"{subcommand}.{key}", key] if subcommand and position < split else [key]
        in_file = _file_candidate(path, keys, given)
        if in_file is not None:
            candidates.append((position, *in_file))
    if given is None:
        return max(candidates, key=lambda c: c[0])[1] if candidates else None
    agreeing = sorted((c for c in candidates if c[2]), key=lambda c: c[0])
    if agreeing:
        return agreeing[-1][1]
    return _env_source(key, given)


def _env_source(key: str, given: str) -> _Source | None:
    """An environment variable (``PL_FIT__TRAINER__MAX_EPOCHS``) holding ``given`` for ``key``."""
    endings = {"__" + k.upper().replace(".", "__") for k in (key, _plain_key(key))}
    for name, value in os.environ.items():
        if any(name.upper().endswith(e) for e in endings) and _same_value(value, given):
            return _Source(env=name, value=value)
    return None


def accepted_names(problem: ParseProblem, parser: Any) -> tuple[str, list[str]]:
    """Who owns ``problem.key`` (a class name, ``trainer``, or ``""`` for the top level) and
    the option names it accepts, from the class's ``__init__`` (following ``**kwargs`` up its
    bases) or from ``parser``'s options."""
    parent = problem.owner_key
    if problem.class_path:
        owner = problem.class_path.rsplit(".", 1)[-1]
        try:
            module, name = problem.class_path.rsplit(".", 1)
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError, ValueError):
            return owner, []
        names: list[str] = []
        for klass in getattr(cls, "__mro__", ()):
            init = klass.__dict__.get("__init__")
            if init is None:
                continue
            try:
                params = inspect.signature(init).parameters.values()
            except (TypeError, ValueError):
                break
            names += [p.name for p in params if p.name != "self" and p.kind not in
                      (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
            if not any(p.kind is p.VAR_KEYWORD for p in params):
                break
        return owner, list(dict.fromkeys(names))
    prefix = parent + "." if parent else ""
    dests = [getattr(action, "dest", "") for action in getattr(parser, "_actions", [])]
    names = [d[len(prefix):].split(".")[0] for d in dests if d.startswith(prefix) and d != prefix]
    skip = {"help", "config", "print_config", "__default_config__"}
    return parent, [n for n in dict.fromkeys(names) if n and n not in skip]


def _suggestion(leaf: str, names: list[str]) -> str:
    close = difflib.get_close_matches(leaf, names, n=3, cutoff=0.6)
    if close:
        return "; did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
    if names and len(names) <= 15:
        return "; it accepts: " + ", ".join(names)
    return ""


def _yaml_value_problem(value: str) -> str | None:
    """Why a command-line value is not valid YAML, in a few words (``None`` if it is)."""
    try:
        yaml.load(value, Loader=_loader())  # noqa: S506 - a safe loader
    except yaml.MarkedYAMLError as error:
        context = error.context or ""
        for opening, closing in ("[]", "{}"):
            if context.startswith("while parsing a flow") and value.count(opening) > value.count(closing):
                return f"a '{opening}' is not closed"
        column = f" at column {error.problem_mark.column + 1}" if error.problem_mark else ""
        return f"{error.problem}{column}"
    except yaml.YAMLError as error:
        return str(error).splitlines()[0]
    return None


def _short(value: str, limit: int = 60) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."


def parse_error_message(
    text: str, argv: Sequence[str], parser: Any, subcommand: str | None
) -> str:
    """A few lines for jsonargparse's parse error ``text``: the file and line, or the
    command-line option, that holds the mistake, and what was expected there.

    Args:
        text: the error jsonargparse raised (``str(ArgumentError)``).
        argv: the command line (its ``--config`` files are searched for the key).
        parser: the parser of ``subcommand`` (for the accepted option names).
        subcommand: ``fit``, ``test``, ... or ``None``.
    """
    problem = read_parse_error(text)
    command = f"lightning-pc {subcommand}" if subcommand else "lightning-pc"
    if problem is not None and problem.kind == "unrecognized":
        problem = _unrecognized_as_unknown(problem, argv, parser, subcommand)
        if problem is None or problem.kind == "unrecognized":
            return _unrecognized_message(text, argv, parser, subcommand, command)
    if problem is None:
        before = _options_before(argv, subcommand)
        hint = f"\n({before[0]} goes after the subcommand: {command} {before[0]} ...)" if before else ""
        return _trimmed(text) + hint
    lines: list[str] = []
    nested = _NESTED_ARG.fullmatch(problem.given) if problem.kind == "type" else None
    if problem.kind == "before_subcommand":
        return _before_subcommand_message(problem, argv, command)
    if nested is not None:  # --model.lr 0.01 read before any class of 'model' was chosen
        name, value = nested.groups()
        wanted = _plain_key(f"{problem.key}.{name}")
        option = next((n for _, n, _ in _overrides(argv) if _plain_key(n) == wanted), wanted)
        return (f"--{option} {_short(shlex.quote(value))}: given before {problem.key}'s class is "
                f"chosen; put it after the --config (or --{problem.key} CLASS) that sets "
                f"{problem.key}'s class_path")
    if problem.kind == "unknown":
        owner, names = accepted_names(problem, parser)
        leaf = problem.key[len(problem.owner_key) + 1:] if problem.owner_key else problem.key
        if names and leaf.split(".")[0] not in names:  # 'optimizer_kwargs.lr': the first part
            leaf = leaf.split(".")[0]
            problem.key = f"{problem.owner_key}.{leaf}" if problem.owner_key else leaf
        source = find_source(argv, problem.key, subcommand=subcommand)
        what = f"{owner or 'the config'} has no option '{leaf}'" + _suggestion(leaf, names)
        head = problem.key.split(".init_args", 1)[0]
        # the whole class path: two classes may share the name (Lightning's ModelCheckpoint)
        see = (f"{command} --{head}.help {problem.class_path} lists its options"
               if problem.class_path
               else f"{command} --help lists the options")
        if source is not None and source.path is not None:
            lines = [f"{source.path}, line {source.line}: {what}", _quote_file_line(source)]
        elif source is not None:
            lines = [f"--{source.option}: {what}"]
        else:
            lines = [f"{problem.key}: {what}"]
        lines.append(f"({see})")
    else:
        source = find_source(argv, problem.key, problem.given, subcommand)
        if problem.detail:
            problem.expected = f"{problem.expected or 'another value'} ({problem.detail})"
        expects = f"{problem.key} expects {problem.expected or 'another value'}"
        if source is not None and source.path is not None:
            lines = [f"{source.path}, line {source.line}: {expects}, got {_short(problem.given)!r}",
                     _quote_file_line(source)]
        elif source is not None and source.env:
            lines = [f"environment variable {source.env}={_short(shlex.quote(source.value))}: "
                     f"{expects}, got {_short(problem.given)!r}"]
        elif source is not None:
            given = f"--{source.option} {_short(shlex.quote(source.value))}"
            if _plain_key(source.option) == _plain_key(problem.key):  # no need to repeat it
                expects = f"expects {problem.expected or 'another value'}"
            broken = _yaml_value_problem(source.value)
            if broken is not None:
                lines = [f"{given}: not valid YAML ({broken}); {expects}"]
            else:
                lines = [f"{given}: {expects}, got {_short(problem.given)!r}"]
        else:
            lines = [f"{expects}, got {_short(problem.given)!r}"]
    return "\n".join(line for line in lines if line)


def _before_subcommand_message(problem: ParseProblem, argv: Sequence[str], command: str) -> str:
    """An option of the subcommand (``trainer...``) given before it, where only the top-level
    parser (``--config`` with ``fit:`` at the top) reads it."""
    subcommand = problem.given
    source = find_source(argv, problem.key)
    if source is not None and source.path is not None:
        return "\n".join(line for line in [
            f"{source.path}, line {source.line}: '{problem.key}' is an option of '{subcommand}'; "
            f"a config file without '{subcommand}:' at its top goes after the subcommand "
            f"({command} --config {source.path})", _quote_file_line(source)] if line)
    if source is not None and source.option:
        return (f"--{source.option}: an option of '{subcommand}'; it goes after the subcommand "
                f"({command} --{source.option} ...)")
    return (f"'{problem.key}' is an option of '{subcommand}'; give it (or the --config that sets "
            f"it) after the subcommand: {command} ...")


def _quote_file_line(source: _Source) -> str:
    try:
        with open(str(source.path), encoding="utf-8") as file:
            return _quote_line(file.read(), source.line - 1)
    except (OSError, UnicodeDecodeError):
        return ""


def _unrecognized_as_unknown(
    problem: ParseProblem, argv: Sequence[str], parser: Any, subcommand: str | None
) -> ParseProblem | None:
    """jsonargparse reports a top-level key of a config file that the subcommand does not
    take as ``unrecognized arguments: fit``: find that key in the ``--config`` files."""
    if subcommand is None or problem.key != subcommand:
        return problem
    _, names = accepted_names(ParseProblem("unknown", "x"), parser)
    for path in reversed(config_arguments(argv)):
        try:
            with open(path, encoding="utf-8") as file:
                node = _compose(file.read())
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        if not isinstance(node, MappingNode):
            continue
        for key_node, _ in node.value:
            if isinstance(key_node, ScalarNode) and key_node.value not in names:
                return ParseProblem("unknown", key_node.value)
    return problem


def _unrecognized_message(
    text: str, argv: Sequence[str], parser: Any, subcommand: str | None, command: str
) -> str:
    problem = read_parse_error(text)
    words = problem.key if problem is not None else text
    before = _options_before(argv, subcommand)
    if words == subcommand and before:
        return f"{before[0]}: options go after the subcommand ({command} {before[0]} ...)"
    option = next((w.split("=")[0] for w in words.split() if w.startswith("--")), None)
    if option is None:
        return f"unrecognized arguments: {_short(words, 200)}"
    options = [s for a in getattr(parser, "_actions", []) for s in a.option_strings]
    close = difflib.get_close_matches(option, options, n=3, cutoff=0.6)
    hint = ("; did you mean " + " or ".join(close) + "?") if close else ""
    return f"{option}: no such option{hint}\n({command} --help lists the options)"


def _options_before(argv: Sequence[str], subcommand: str | None) -> list[str]:
    """The options (but ``--config``) written before the subcommand, where only the
    top-level parser reads them."""
    if subcommand is None or subcommand not in argv:
        return []
    return [t.split("=")[0] for t in argv[: list(argv).index(subcommand)]
            if t.startswith("--") and t not in _CONFIG_FLAGS and not t.startswith("--config=")]


def _trimmed(text: str, max_lines: int = 6, width: int = 160) -> str:
    """jsonargparse's own message, cut to a few lines (the rest is in the traceback)."""
    lines = [line.rstrip() for line in text.strip().splitlines() if line.strip()]
    lines = [line if len(line) <= width else line[: width - 3] + "..." for line in lines]
    if len(lines) > max_lines:
        lines = [*lines[:max_lines], f"... ({len(lines) - max_lines} more lines)"]
    return "\n".join(lines)
