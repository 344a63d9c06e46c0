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
    return f"  {line + 1} | {lines[line].rstrip().replace(chr(9), '⇥   ')}"


def _yaml_syntax_message(path: str, text: str, error: yaml.MarkedYAMLError) -> str:
    """A YAML syntax error as ``path, line N: what is wrong`` and the line itself."""
    problem = error.problem or "not valid YAML"
    mark = error.problem_mark
    context, context_mark = error.context or "", error.context_mark
    if "'\\t'" in problem and mark is not None:
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
    1-based; YAML loaders keep the last value silently. ``<<`` merge keys are not counted."""
    stack: list[Node] = [node]
    while stack:
        current = stack.pop(0)
        if isinstance(current, MappingNode):
            seen: dict[str, int] = {}
            for key_node, value_node in current.value:
                if isinstance(key_node, ScalarNode) and key_node.value != "<<":
                    line = key_node.start_mark.line + 1
                    if key_node.value in seen:
                        return key_node.value, seen[key_node.value], line
                    seen[key_node.value] = line
                stack.append(value_node)
        elif isinstance(current, SequenceNode):
            stack.extend(current.value)
    return None


def _compose(text: str) -> Node | None:
    return yaml.compose(text, Loader=yaml.SafeLoader)  # noqa: S506 - composes nodes only


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
            inline = yaml.safe_load(value)
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
        return _yaml_syntax_message(value, text, error)
    except yaml.YAMLError as error:
        return f"{value}: not valid YAML: {error}"
    if node is None:
        return None
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


def find_key(path: str, key: str) -> tuple[int, str | None] | None:
    """The 1-based line where the dotted ``key`` (``trainer.max_epochs``,
    ``model.init_args.lr``) is written in the YAML file ``path``, and its value when that is
    a scalar (``None`` for a list or mapping); ``None`` when the file does not set it.

    ``init_args`` may be left out in a file (``model: {lr: ...}``) and is skipped when the
    file has no such level; in a list each item is searched (``trainer.callbacks.every_n_epochs``)
    unless the part is an index (``trainer.callbacks.0``).
    """
    try:
        with open(path, encoding="utf-8") as file:
            node = _compose(file.read())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    found = _find_in_node(node, [p for p in key.split(".") if p])
    if found is None:
        return None
    key_node, value_node = found
    value = value_node.value if isinstance(value_node, ScalarNode) else None
    return key_node.start_mark.line + 1, value


def _find_in_node(node: Node | None, parts: list[str]) -> tuple[Node, Node] | None:
    if not parts:
        return None
    part, rest = parts[0], parts[1:]
    if isinstance(node, SequenceNode):
        if part.isdigit():
            index = int(part)
            return _find_in_node(node.value[index], rest) if index < len(node.value) else None
        for item in node.value:
            found = _find_in_node(item, parts)
            if found is not None:
                return found
        return None
    if not isinstance(node, MappingNode):
        return None
    for key_node, value_node in node.value:
        if isinstance(key_node, ScalarNode) and key_node.value == part:
            return (key_node, value_node) if not rest else _find_in_node(value_node, rest)
    if part == "init_args":
        return _find_in_node(node, rest)
    return None


# --- jsonargparse's parse errors ----------------------------------------------------------------


@dataclass
class ParseProblem:
    """What a jsonargparse parse error is about, read from its text.

    Attributes:
        kind: ``"unknown"`` (a key no class or group accepts), ``"type"`` (a value of the
            wrong type) or ``"unrecognized"`` (command-line words no option takes).
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


_PARSER_KEY = re.compile(r'Parser key "([^"]+)":\s*(.*)$')
_CLASS_BRANCH = re.compile(r"- Problem with given class_path '([^']+)':")
_NOT_ACCEPTED = re.compile(r"Option '([^']+)' is not accepted")
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
            parts.append(match.group(1))
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
    """Where the value of a key came from: a config file line or a command-line option."""

    path: str | None = None
    line: int = 0
    option: str = ""
    value: str = ""


def find_source(argv: Sequence[str], key: str, given: str | None = None) -> _Source | None:
    """The place in ``argv`` that set ``key``: an override (``--trainer.max_epochs``, also a
    parent such as ``--model '{...}'``) or a line of a ``--config`` file.

    The last one wins, as in parsing; but jsonargparse checks each value as it reads it, so
    when ``given`` (the value it refused) is known, the last place that holds that value is
    preferred (``--trainer.max_epochs ten --config c.yaml`` fails on ``ten`` although the
    file sets the key later).
    """
    plain = _plain_key(key)
    candidates: list[tuple[int, _Source, bool]] = []
    for position, name, value in _overrides(argv):
        option = _plain_key(name)
        if option == plain:
            candidates.append((position, _Source(option=name, value=value), value == given))
        elif plain.startswith(option + "."):
            candidates.append((position, _Source(option=name, value=value), True))
    for position, token in enumerate(argv):
        if token in _CONFIG_FLAGS and position + 1 < len(argv):
            position, path = position + 1, argv[position + 1]
        elif token.startswith("--config="):
            path = token.split("=", 1)[1]
        else:
            continue
        found = find_key(path, key) if os.path.isfile(path) else None
        if found is not None:
            line, scalar = found
            candidates.append((position, _Source(path=path, line=line), scalar in (None, given)))
    if not candidates:
        return None
    candidates.sort(key=lambda c: c[0])
    agreeing = [c for c in candidates if c[2]] if given is not None else []
    return (agreeing or candidates)[-1][1]


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
        yaml.safe_load(value)
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
    if problem.kind == "unknown":
        owner, names = accepted_names(problem, parser)
        leaf = problem.key[len(problem.owner_key) + 1:] if problem.owner_key else problem.key
        if names and leaf.split(".")[0] not in names:  # 'optimizer_kwargs.lr': the first part
            leaf = leaf.split(".")[0]
            problem.key = f"{problem.owner_key}.{leaf}" if problem.owner_key else leaf
        source = find_source(argv, problem.key)
        what = f"{owner or 'the config'} has no option '{leaf}'" + _suggestion(leaf, names)
        head = problem.key.split(".init_args", 1)[0]
        see = (f"{command} --{head}.help {owner} lists its options" if problem.class_path
               else f"{command} --help lists the options")
        if source is not None and source.path is not None:
            lines = [f"{source.path}, line {source.line}: {what}", _quote_file_line(source)]
        elif source is not None:
            lines = [f"--{source.option}: {what}"]
        else:
            lines = [f"{problem.key}: {what}"]
        lines.append(f"({see})")
    else:
        source = find_source(argv, problem.key, problem.given)
        if problem.detail:
            problem.expected = f"{problem.expected or 'another value'} ({problem.detail})"
        expects = f"{problem.key} expects {problem.expected or 'another value'}"
        if source is not None and source.path is not None:
            lines = [f"{source.path}, line {source.line}: {expects}, got {_short(problem.given)!r}",
                     _quote_file_line(source)]
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
