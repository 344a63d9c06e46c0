"""The ``lightning-pc`` command line (also ``python -m lightning_pc``): a LightningCLI.

``model`` is any :class:`~lightning_pc.tasks.BaseTask` subclass and ``data`` any
:class:`~lightning_pc.data.PointCloudDataModule` subclass (short class names work for the
built-in ones). ``data.num_classes`` is linked to ``model.init_args.num_classes``.

Example::

    lightning-pc fit --config configs/quickstart.yaml
    lightning-pc test --config configs/quickstart.yaml --ckpt_path best
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import shlex
import sys
import textwrap
from argparse import ArgumentError
from datetime import timedelta
from typing import Any

import torch
from jsonargparse import DefaultHelpFormatter, Namespace
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

import lightning_pc.data  # noqa: F401  (registers the data modules for short names)
import lightning_pc.tasks  # noqa: F401  (registers the tasks for short names)
from lightning_pc.callbacks.checkpoint_io import (
    DamagedCheckpointError,
    SafeCheckpointIO,
    checkpoint_problem,
    damaged_checkpoint_message,
)
from lightning_pc.callbacks.preemption import Preemption
from lightning_pc.cli_config import config_arguments, config_file_problem
from lightning_pc.cli_walk import parse_error_message
from lightning_pc.data import PointCloudDataModule
from lightning_pc.data.errors import DataFormatError, MissingDataError
from lightning_pc.data.transforms import TransformSpecError, build_transforms
from lightning_pc.tasks import BaseTask

#: environment variable read when ``--ddp_timeout`` is not given
DDP_TIMEOUT_ENV = "LIGHTNING_PC_DDP_TIMEOUT"


class ConfigError(ValueError):
    """A command-line configuration that cannot work; ``main`` prints it in a few lines."""


class DDPTimeoutError(RuntimeError):
    """A rank waited longer than the DDP timeout for the others at a collective operation."""


_BATCH_LIMITS = tuple(
    f"trainer.{name}"
    for name in (
        "limit_train_batches",
        "limit_val_batches",
        "limit_test_batches",
        "limit_predict_batches",
        "overfit_batches",
    )
)


def _prefer_int(parser: LightningArgumentParser, dests: tuple[str, ...]) -> None:
    """Parse ``float | int`` options as ``int`` first, so ``1`` stays one batch.

    jsonargparse tries the members of a union in order and the Trainer annotates these
    options ``Union[float, int, None]``. This swaps the order on the parser's actions (a
    private attribute of jsonargparse's ``ActionTypeHint``; left alone if it is missing).
    """
    for action in parser._actions:
        if action.dest in dests and hasattr(action, "_typehint"):
            action._typehint = int | float | None


def _num_classes_default(cls: type) -> object:
    """The default of ``num_classes`` in the first ``__init__`` along ``cls``'s MRO that names
    it (a user's subclass often passes it on through ``**kwargs``, as the parser does too)."""
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        param = inspect.signature(init).parameters.get("num_classes")
        if param is not None:
            return param.default
    return None


class HelpFormatter(DefaultHelpFormatter):
    """jsonargparse's help, with two changes: descriptions and epilogs keep their line
    breaks (the lists of tasks, networks and data modules), and an option typed
    ``nn.Module`` (a task's ``model``: a registered name or a module instance) does not list
    every ``torch.nn`` class jsonargparse finds (~700 lines); the registered networks are
    listed at the end of the help instead."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n".join(
            self._indent_fill(line, width, indent) if line.strip() else ""
            for line in text.splitlines()
        )

    def _indent_fill(self, line: str, width: int, indent: str) -> str:
        stripped = line.lstrip()
        hanging = indent + " " * (len(line) - len(stripped))
        extra = "    " if stripped.startswith("- ") or ":" in stripped[:40] else ""
        return textwrap.fill(
            stripped, width, initial_indent=hanging, subsequent_indent=hanging + extra
        )

    def _get_help_string(self, action: Any) -> str:
        text = super()._get_help_string(action)
        if _takes_module(action):
            text = re.sub(r", known subclasses: [^)]*", ", networks: see below", text)
        return text


def _takes_module(action: Any) -> bool:
    """Whether a parser option accepts an ``nn.Module`` (jsonargparse lists its subclasses)."""
    typehint = getattr(action, "_typehint", None)
    if typehint is None:
        return False
    members = getattr(typehint, "__args__", None) or (typehint,)
    return any(isinstance(t, type) and issubclass(t, nn.Module) for t in members)


class PointCloudArgumentParser(LightningArgumentParser):
    """LightningCLI's parser with :class:`HelpFormatter`; a task's help
    (``--model.help ClassificationTask``) ends with the registered networks."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def add_class_arguments(self, class_type: Any, *args: Any, **kwargs: Any) -> list[str]:
        added = super().add_class_arguments(class_type, *args, **kwargs)
        if isinstance(class_type, type) and issubclass(class_type, BaseTask):
            self.epilog = networks_help()
        return added


#: config keys that hold transform specs, checked before anything is built
_TRANSFORM_KEYS = (
    "data.init_args.train_transforms",
    "data.init_args.eval_transforms",
    "model.init_args.tta_transforms",
)


def _check_transform_specs(config: Any) -> None:
    """Build every transform spec of the config once, so a typo or a bad argument stops the
    run before the data module or the model is built, with its config location.

    Raises:
        ConfigError: e.g. ``data.init_args.train_transforms[2]: unknown transform
            'RandomRotat'; did you mean 'RandomRotate'?``
    """
    for key in _TRANSFORM_KEYS:
        try:
            specs = config.get(key)
        except (KeyError, AttributeError, TypeError):
            continue
        if specs is None:
            continue
        try:
            build_transforms(specs, key)
        except TransformSpecError as error:
            raise ConfigError(str(error)) from None


class PointCloudCLI(LightningCLI):
    """LightningCLI in subclass mode for tasks and data modules.

    Differences from LightningCLI's defaults:

    - the saved ``config.yaml`` is overwritten on a second run
      (``save_config_kwargs={"overwrite": True}``);
    - ``--trainer.limit_*_batches=1`` means one batch, as for ``Trainer(limit_train_batches=1)``
      (the Trainer annotates these ``float | int``, so jsonargparse alone reads ``1`` as
      ``1.0``, i.e. 100 %); ``1.0`` still means 100 %;
    - ``validate``, ``test`` and ``predict`` warn when no ``--ckpt_path`` is given (the
      weights are then the freshly initialised ones);
    - ``fit`` ends (on global rank zero) by printing the best and last checkpoints, the log
      folder and the command that tests the best checkpoint with the run's saved config;
    - checkpoints are written atomically and a damaged one is named on resume
      (:class:`~lightning_pc.callbacks.checkpoint_io.SafeCheckpointIO`, unless the trainer
      was given another ``CheckpointIO``);
    - SIGTERM stops the run after the current step with a checkpoint that resumes
      exactly, the command that resumes it, and exit status 143
      (:class:`~lightning_pc.callbacks.preemption.Preemption`);
    - ``--ddp_timeout SECONDS`` (else the ``LIGHTNING_PC_DDP_TIMEOUT`` environment
      variable, else Lightning's 1800 s) is how long a DDP rank waits for the others at a
      collective operation before it stops with :class:`DDPTimeoutError`, e.g. when another
      rank was killed or hangs;
    - ``--imports MODULE ...`` (a list, also as ``imports:`` in a config) imports the user's
      modules before anything is built, so a network registered there with
      :func:`~lightning_pc.models.register_model` is found by name (``model: my_net``); the
      current folder is on the module path, as for ``python -m``;
    - the help lists the tasks, registered networks and data modules with one line each
      (a task's ``--model.help`` lists the networks instead of every ``torch.nn`` class);
    - transform specs (``data.init_args.train_transforms`` / ``eval_transforms``,
      ``model.init_args.tta_transforms``) are built once before anything else, so a typo or
      a bad argument is reported with its config location before data or model are built;
    - a mistake in the configuration raises :class:`ConfigError` (``main`` prints it in a
      few lines) instead of jsonargparse's usage and parse report: a ``--config`` file that
      does not exist, is not valid YAML (unclosed bracket, tab) or sets a key twice in one
      mapping (YAML would keep the last silently) names the file and line; an unknown key or
      a value of the wrong type names the file and line that set it, or the command-line
      option, and what is accepted there (``exit_on_error=False`` for the parsers).

    Args:
        args: command-line arguments (``None``: ``sys.argv``), as ``LightningCLI``.
        **kwargs: forwarded to ``LightningCLI``.
    """

    def __init__(self, args: Any = None, **kwargs: Any) -> None:
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("model_class", BaseTask)
        kwargs.setdefault("datamodule_class", PointCloudDataModule)
        kwargs.setdefault("auto_configure_optimizers", True)
        kwargs.setdefault("parser_class", PointCloudArgumentParser)
        parser_kwargs = dict(kwargs.pop("parser_kwargs", None) or {})
        parser_kwargs.setdefault("description", cli_description())
        parser_kwargs.setdefault("exit_on_error", False)  # parse_arguments reports the error
        for subcommand in self.subcommands():
            summary = inspect.getdoc(getattr(Trainer, subcommand)) or ""
            sub_kwargs = dict(parser_kwargs.get(subcommand) or {})
            sub_kwargs.setdefault(
                "description", summary.split("\n\n")[0].replace("\n", " ") + "\n\n" + catalogue()
            )
            parser_kwargs[subcommand] = sub_kwargs
        kwargs["parser_kwargs"] = parser_kwargs
        # this run's arguments, for the command that resumes it after a SIGTERM
        self._resume_argv: list[str] | None = None
        if not isinstance(args, (dict, Namespace)):
            self._resume_argv = sys.argv[1:] if args is None else [str(a) for a in args]
        super().__init__(args=args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        _prefer_int(parser, _BATCH_LIMITS)
        parser.add_argument(
            "--ddp_timeout",
            type=float | None,
            default=None,
            help=(
                "Seconds a DDP rank waits for the others at a collective operation before it "
                f"stops with an error (default: ${DDP_TIMEOUT_ENV}, else Lightning's 1800)."
            ),
        )
        parser.add_argument(
            "--imports",
            type=list[str],
            default=[],
            help=(
                "Python modules imported before the model and data are built, e.g. the user's "
                "module that registers a network with lightning_pc.models.register_model "
                "(the current folder is on the module path)."
            ),
        )
        # the data modules expose num_classes right after __init__ (static metadata)
        parser.link_arguments(
            "data.num_classes", "model.init_args.num_classes", apply_on="instantiate"
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """LightningCLI's, after checking the ``--config`` files (exist, valid YAML, no key
        twice); a parse error becomes a :class:`ConfigError` naming the file and line, or the
        command-line option, of the mistake (jsonargparse's report is its ``__cause__``)."""
        if isinstance(args, (dict, Namespace)):
            super().parse_arguments(parser, args)
            return
        argv = sys.argv[1:] if args is None else [str(a) for a in args]
        for value in config_arguments(argv):
            problem = config_file_problem(value)
            if problem is not None:
                raise ConfigError(problem)
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as error:
            subcommand = next((a for a in argv if a in self.subcommands()), None)
            parsers = getattr(self, "_subcommand_parsers", {})
            raise ConfigError(
                parse_error_message(str(error), argv, parsers.get(subcommand, parser), subcommand)
            ) from error

    def before_instantiate_classes(self) -> None:
        """Import the modules named by ``--imports``, then check the transform specs."""
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else self.config
        for name in config.get("imports") or []:
            try:
                importlib.import_module(name)
            except ImportError as error:
                raise ImportError(
                    f"--imports: cannot import {name!r} ({error}); the module path is the "
                    f"current folder {os.getcwd()} and the installed packages"
                ) from error
        _check_transform_specs(config)

    def instantiate_classes(self) -> None:
        """LightningCLI's, then refuses a ``model.init_args.num_classes`` that the data module
        overrode (the CLI links ``data.num_classes`` to it): the user asked for another count.

        A value equal to the task's default cannot be told apart from no value (the parser
        fills the default in), so that one alone is not reported."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        init_args = config.get("model", {}).get("init_args") if config.get("model") else None
        requested = init_args.get("num_classes") if init_args is not None else None
        super().instantiate_classes()
        actual = getattr(self.datamodule, "num_classes", None)
        default = _num_classes_default(type(self.model))
        if requested is not None and requested != default and actual is not None and int(requested) != int(actual):
            raise ConfigError(
                f"--model.init_args.num_classes {requested} disagrees with the data module "
                f"({type(self.datamodule).__name__}), which has {actual} classes; the number of "
                "classes comes from the data: leave num_classes out (or change the data)"
            )

    def _parse_ckpt_path(self) -> None:
        """LightningCLI reads ``--ckpt_path``'s hyperparameters before the trainer loads it:
        a damaged file raises :class:`DamagedCheckpointError` here already."""
        try:
            super()._parse_ckpt_path()
            self._classes_from_checkpoint()
        except Exception as error:
            subcommand = self.config.get("subcommand")
            path = self.config[subcommand].get("ckpt_path") if subcommand else None
            problem = checkpoint_problem(path) if path and os.path.isfile(path) else None
            if problem is None and isinstance(error, ArgumentError):
                parsers = getattr(self, "_subcommand_parsers", {})
                message = parse_error_message(str(error), [], parsers.get(subcommand), subcommand)
                raise ConfigError(
                    f"--ckpt_path {path}: the hyperparameters saved in the checkpoint do not fit "
                    f"this command's options: {message}"
                ) from error
            if problem is None or path is None:
                raise
            raise DamagedCheckpointError(damaged_checkpoint_message(path, problem)) from error

    def _classes_from_checkpoint(self) -> None:
        """``predict`` with :class:`PredictScenesDataModule` and neither ``num_classes`` nor
        ``class_names``: take the model's ``num_classes`` from ``--ckpt_path``."""
        subcommand = self.config.get("subcommand")
        if subcommand != "predict":
            return
        config = self.config[subcommand]
        data = config.get("data")
        args = data.get("init_args") if data is not None else None
        if data is None or args is None or "PredictScenes" not in str(data.get("class_path")):
            return
        if args.get("num_classes") is not None or args.get("class_names") is not None:
            return
        model = config.get("model")
        model_args = model.get("init_args") if model is not None else None
        num = model_args.get("num_classes") if model_args is not None else None
        if num is None and config.get("ckpt_path"):
            ckpt = torch.load(config["ckpt_path"], weights_only=True, map_location="cpu")
            num = ckpt.get("hyper_parameters", {}).get("num_classes")
        if num is not None:
            args["num_classes"] = int(num)

    def ddp_timeout(self) -> float | None:
        """``--ddp_timeout``, else ``$LIGHTNING_PC_DDP_TIMEOUT`` (seconds; ``None``: neither)."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        value = config.get("ddp_timeout")
        if value is None:
            env = os.environ.get(DDP_TIMEOUT_ENV)
            if env is None or not env.strip():
                return None
            try:
                value = float(env)
            except ValueError:
                raise ValueError(
                    f"{DDP_TIMEOUT_ENV} must be a number of seconds, got {env!r}"
                ) from None
        if value <= 0:
            raise ValueError(f"the DDP timeout must be positive seconds, got {value}")
        return float(value)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The trainer, with :class:`SafeCheckpointIO` and the DDP timeout (see the class
        docstring)."""
        trainer = super().instantiate_trainer(**kwargs)
        strategy = trainer.strategy
        if type(strategy.checkpoint_io) is TorchCheckpointIO:  # Lightning's default
            strategy.checkpoint_io = SafeCheckpointIO()
        Preemption.install(trainer, self._resume_argv)
        timeout = self.ddp_timeout()
        if timeout is not None:
            if hasattr(strategy, "_timeout"):  # DDPStrategy / FSDPStrategy(timeout=...)
                strategy._timeout = timedelta(seconds=timeout)
            elif trainer.world_size > 1:
                rank_zero_warn(f"--ddp_timeout has no effect on {type(strategy).__name__}")
        return trainer

    def _warn_random_weights(self) -> None:
        subcommand = self.subcommand
        if subcommand is None:
            return
        pretrained = getattr(self.model, "hparams", {}).get("pretrained")
        if self.config[subcommand].get("ckpt_path") is None and not pretrained:
            rank_zero_warn(
                f"`{subcommand}` without --ckpt_path evaluates the model's initial weights; "
                "pass --ckpt_path path/to/checkpoint.ckpt to evaluate a trained model."
            )

    def before_validate(self) -> None:
        self._warn_random_weights()

    def before_test(self) -> None:
        self._warn_random_weights()

    def before_predict(self) -> None:
        self._warn_random_weights()
        from lightning_pc.callbacks.prediction_writer import ScenePredictionWriter
        from lightning_pc.data.modules.predict import PredictScenesDataModule

        if isinstance(self.datamodule, PredictScenesDataModule) and not any(
            isinstance(c, ScenePredictionWriter)
            for c in self.trainer.callbacks  # type: ignore[attr-defined]
        ):
            self.trainer.callbacks.append(ScenePredictionWriter())  # type: ignore[attr-defined]

    def after_fit(self) -> None:
        # trainer.log_dir can be a collective (it broadcasts): every rank asks, rank 0 prints
        log_dir = self.trainer.log_dir
        if self.trainer.is_global_zero:
            self._save_config_beside_checkpoints()
            print(self.fit_summary(log_dir), flush=True)

    def _checkpoint_dir(self) -> str | None:
        checkpoint = next(
            (cb for cb in self.trainer.callbacks if isinstance(cb, ModelCheckpoint)),  # type: ignore[attr-defined]
            None,
        )
        path = (checkpoint.best_model_path or checkpoint.last_model_path) if checkpoint else ""
        return os.path.dirname(path) if path else None

    def _save_config_beside_checkpoints(self) -> None:
        """Writes this run's full config as ``config.yaml`` in its checkpoint folder.

        With loggers whose ``log_dir`` is shared by every run (Weights & Biases, MLflow: the
        trainer's save folder), LightningCLI's ``config.yaml`` there is replaced by the next
        run; the copy beside the checkpoints stays with the weights it describes, and the
        printed evaluate command uses it.
        """
        folder = self._checkpoint_dir()
        if folder is None or not os.path.isdir(folder) or self.subcommand is None:
            return
        try:
            self._parser(self.subcommand).save(
                self.config.get(self.subcommand, self.config), os.path.join(folder, "config.yaml"),
                skip_none=False, overwrite=True, multifile=False,
            )
        except Exception as error:  # noqa: BLE001 - the run itself succeeded
            rank_zero_warn(f"could not save config.yaml beside the checkpoints: {error}")

    def fit_summary(self, log_dir: str | None) -> str:
        """Where the run left its checkpoints and logs, and how to evaluate it.

        The command uses this run's ``config.yaml`` beside the checkpoints (it holds every
        command-line override of this run), else the one LightningCLI saved in the log
        folder, else the ``--config`` files given to this run.

        Args:
            log_dir: the trainer's log folder (``trainer.log_dir``).

        Returns:
            A few lines of text.
        """
        checkpoint = next(
            (cb for cb in self.trainer.callbacks if isinstance(cb, ModelCheckpoint)),  # type: ignore[attr-defined]
            None,
        )
        best = checkpoint.best_model_path if checkpoint is not None else ""
        last = checkpoint.last_model_path if checkpoint is not None else ""
        lines = ["", "Training finished."]
        if best:
            lines.append(f"  best checkpoint: {best}")
        if last:
            lines.append(f"  last checkpoint: {last}")
        if log_dir:
            lines.append(f"  logs:            {log_dir}")
        evaluate = best or last
        if evaluate:
            beside = os.path.join(os.path.dirname(evaluate), "config.yaml")
            saved = os.path.join(log_dir, "config.yaml") if log_dir else ""
            if os.path.isfile(beside):
                configs = [beside]
            elif saved and os.path.isfile(saved):
                configs = [saved]
            else:
                configs = [str(c) for c in self.config.get("fit", {}).get("config") or []]
            args = ["lightning-pc", "test"]
            for config in configs:
                args += ["--config", config]
            args += ["--ckpt_path", evaluate]
            lines.append("Evaluate it with:")
            lines.append("  " + shlex.join(args))
        return "\n".join(lines)


def main(args: list[str] | None = None) -> None:
    """Entry point of the ``lightning-pc`` console script.

    A configuration error (a config file that is missing or not valid YAML, an unknown
    option or name, a bad option value, a missing data folder, a malformed data file) prints
    ``error: <message>`` (naming the config file and line, or the command-line option) and
    exits with status 2; set
    ``LIGHTNING_PC_TRACEBACK=1`` to get the exception and its traceback instead.

    ``lightning-pc cache ...`` manages the preprocessing caches
    (:mod:`lightning_pc.data.cache_admin`), ``lightning-pc embed ...`` writes per-point
    features of scans (:mod:`lightning_pc.embed`); everything else goes to
    :class:`PointCloudCLI`.

    Args:
        args: command-line arguments (``None``: ``sys.argv[1:]``).
    """
    argv = sys.argv[1:] if args is None else list(args)
    if os.getcwd() not in sys.path and "" not in sys.path:  # as `python -m` does
        sys.path.insert(0, os.getcwd())
    if argv[:1] == ["cache"]:
        from lightning_pc.data.cache_admin import main as cache_main

        sys.exit(cache_main(argv[1:]))
    if argv[:1] == ["embed"]:  # per-point features of scans (lightning_pc.embed)
        from lightning_pc.embed import main as embed_main

        sys.exit(embed_main(argv[1:]))
    try:
        PointCloudCLI(args=args)
    except Exception as error:
        message = _collective_timeout_message(error)
        if message is None:
            plain = plain_config_error(error)
            if plain is None:
                plain = checkpoint_mismatch_message(error)
            if isinstance(error, (ConfigError, MissingDataError, DataFormatError)):
                plain = f"error: {error}\n(set {TRACEBACK_ENV}=1 for the full traceback)"
            if plain is None or os.environ.get(TRACEBACK_ENV):
                raise
            print(plain, file=sys.stderr, flush=True)
            sys.exit(2)
        raise DDPTimeoutError(message) from error
    finally:
        _destroy_process_group()


#: set to 1 to see the full traceback of a configuration error
TRACEBACK_ENV = "LIGHTNING_PC_TRACEBACK"

_UNION_WRAPPER = "Does not validate against any of the Union subtypes"


def _first_line(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.split("\n\n")[0].replace("\n", " ").replace("``", "").strip()


def _our_subclasses(base: type) -> list[type]:
    """The concrete subclasses of ``base`` defined in lightning_pc, by name."""
    seen: dict[str, type] = {}
    stack: list[type] = list(base.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls.__module__.startswith("lightning_pc.") and not inspect.isabstract(cls):
            seen[cls.__name__] = cls
    return [seen[name] for name in sorted(seen)]


def networks_help() -> str:
    """The registered networks, one line each: name and description (the builder's docstring)."""
    from lightning_pc.models.registry import describe_model, list_models

    lines = ["Networks (--model.init_args.model NAME; a module of yours with --imports):"]
    lines += [f"  {name}: {describe_model(name) or '(no description)'}" for name in list_models()]
    from lightning_pc.models.pretrained import get_pretrained, list_pretrained

    lines.append(
        "Pretrained cards (--model.init_args.model CARD --model.init_args.pretrained true):"
    )
    for name in list_pretrained():
        card = get_pretrained(name)
        lines.append(f"  {name}: {card.summary} [{card.licence}]")
    return "\n".join(lines)


def catalogue() -> str:
    """Tasks, networks and data modules with one line each, for the help texts."""
    tasks = [f"  {cls.__name__}: {_first_line(cls)}" for cls in _our_subclasses(BaseTask)]
    data = [
        f"  {cls.__name__}: {_first_line(cls)}" for cls in _our_subclasses(PointCloudDataModule)
    ]
    return "\n".join(
        ["Tasks (--model NAME; its options: --model.help NAME):", *tasks,
         networks_help(),
         "Data modules (--data NAME; its options: --data.help NAME):", *data]
    )


def cli_description() -> str:
    """The text ``lightning-pc --help`` opens with: what it does, and the names it knows."""
    return (
        "Train and evaluate point-cloud models (lightning_pc). Subcommands: fit, validate, "
        "test, predict; `lightning-pc cache --help` manages preprocessing caches; "
        "`lightning-pc embed --help` writes per-point features of scans.\n"
        "Example: lightning-pc fit --config configs/quickstart.yaml\n\n" + catalogue()
    )


def plain_config_error(error: BaseException) -> str | None:
    """A few lines for a configuration error that jsonargparse wrapped in its union report.

    jsonargparse tries each member of ``model: BaseTask | None`` (and ``data``) and, when
    instantiation raises, reports "Does not validate against any of the Union subtypes" with
    every member's error and the whole namespace; our own message is one line inside. This
    picks out the lines that are not jsonargparse's own ("Expected a <class 'NoneType'>",
    "Given value...").

    Returns:
        ``"error: <our message>"`` plus a hint, or ``None`` when ``error`` is not such a
        report.
    """
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    text = next((str(e) for e in chain if _UNION_WRAPPER in str(e)), None)
    if text is None:
        return None
    found: list[str] = []
    in_errors = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("Errors:"):
            in_errors = True
            continue
        if stripped.startswith(("Given value", "Subtypes:")):
            in_errors = False
            continue
        if not in_errors or not stripped.startswith("- "):
            continue
        item = stripped[2:].strip()
        if item.startswith("Expected a") or _UNION_WRAPPER in item or not item:
            continue
        if len(item) >= 2 and item[0] == item[-1] and item[0] in "\"'":
            item = item[1:-1]
        found.append(item.replace("\\'", "'"))
    if not found:
        return None
    lines = [f"error: {found[0]}"] + [f"       {extra}" for extra in dict.fromkeys(found[1:])]
    lines.append(f"(set {TRACEBACK_ENV}=1 for the full traceback)")
    return "\n".join(lines)


_SIZE_MISMATCH = re.compile(
    r"size mismatch for ([\w.]+): copying a param with shape torch\.Size\(\[([\d, ]*)\]\) "
    r"from checkpoint, the shape in current model is torch\.Size\(\[([\d, ]*)\]\)"
)


def checkpoint_mismatch_message(error: BaseException) -> str | None:
    """A few lines for ``load_state_dict``'s size mismatches: which weights differ, and how.

    The last layer's first dimension is the number of classes, so a checkpoint trained on
    other data shows up as a mismatch there; the message says so.

    Returns:
        ``"error: ..."`` lines, or ``None`` when ``error`` holds no size mismatch.
    """
    found = _SIZE_MISMATCH.findall(str(error))
    if not found:
        return None
    lines = [
        f"error: the checkpoint does not fit this model: {len(found)} weight(s) have other "
        "shapes (checkpoint vs this model):"
    ]
    lines += [f"  {name}: [{ckpt}] vs [{model}]" for name, ckpt, model in found[:6]]
    if len(found) > 6:
        lines.append(f"  ... and {len(found) - 6} more")
    name, ckpt, model = found[-1]
    c_dims, m_dims = ckpt.split(","), model.split(",")
    if c_dims[0] != m_dims[0] and c_dims[1:] == m_dims[1:]:
        lines.append(
            f"The last of them looks like the class count: the checkpoint has {c_dims[0].strip()} "
            f"classes, this model {m_dims[0].strip()} (from the data module); use the data the "
            "checkpoint was trained on, or its config.yaml."
        )
    lines.append(f"(set {TRACEBACK_ENV}=1 for the full traceback)")
    return "\n".join(lines)


def _collective_timeout_message(error: BaseException) -> str | None:
    """A clear message when ``error`` is a collective operation that timed out, else ``None``.

    gloo raises ``DistBackendError`` ("Timed out waiting ... ms"); NCCL's watchdog aborts the
    process with its own message instead, which cannot be caught here.
    """
    import torch.distributed as dist

    text = str(error)
    if not isinstance(error, dist.DistError) and "gloo" not in text.lower():
        return None
    if "timed out" not in text.lower() and "timeout" not in text.lower():
        return None
    rank = os.environ.get("RANK") or os.environ.get("LOCAL_RANK") or "?"
    world = os.environ.get("WORLD_SIZE", "?")
    if dist.is_available() and dist.is_initialized():
        rank, world = str(dist.get_rank()), str(dist.get_world_size())
    return (
        f"DDP rank {rank} of {world} gave up waiting for the other ranks at a collective "
        "operation: another rank stopped (killed, crashed, out of memory) or is stuck (e.g. "
        "on slow I/O). Look in the other ranks' output for the first error. The wait is "
        f"set by --ddp_timeout or the {DDP_TIMEOUT_ENV} environment variable (seconds; "
        f"Lightning's default 1800). Original error: {text.strip()[:500]}"
    )


def _destroy_process_group() -> None:
    """Shuts down the DDP process group (Lightning leaves it up) while the interpreter is
    fully alive: at interpreter exit, gloo's worker threads can still hold tensors, and
    releasing them then aborts the process (``terminate called without an active
    exception``, exit code -6, seen here in about one run in five)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
