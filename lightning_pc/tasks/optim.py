"""Parameter groups and learning-rate schedules of the tasks' default optimiser.

What :meth:`BaseTask.configure_optimizers <lightning_pc.tasks.BaseTask.configure_optimizers>`
builds from the task's options:

**Learning-rate scales by keyword** (``lr_scales``), Pointcept's ``param_dicts``: a mapping
from keywords to learning-rate multipliers, e.g. ``{block: 0.1}`` (PTv3's recipe: the
transformer blocks train at a tenth of ``lr``). A parameter takes the first keyword, in the
mapping's order, that it matches; parameters matching none keep ``lr``. A keyword matches a
parameter when it is a substring of the parameter's name in the task
(``model.backbone.enc.0.1.attn.qkv.weight``), as in Pointcept, or equals, ignoring case, the
class name of a module that holds it: ``block`` matches PTv3's ``Block`` modules, whose
parameters are those Pointcept's ``block`` keyword matches in its own names
(``enc.enc0.block0...``; not the stem, the pooling layers or the head). A value is a scale,
or a mapping ``{lr_scale: 0.1, weight_decay: 0.0}`` giving that group its own weight decay;
as in Pointcept, every other parameter (norms and biases included) decays by the task's
``weight_decay``.

**Layer-wise learning-rate decay** (``layer_decay``, BEiT's recipe, as Sonata's and
Concerto's configs write it out by hand): the backbone's layers are numbered from the stem
(0) to the deepest (``L - 1``) by :func:`layer_ids`; layer ``i`` trains at
``lr * layer_decay ** (L - i)`` and the head at ``lr``. So the deepest backbone layer takes
``layer_decay``, the stem ``layer_decay ** L``. It multiplies the ``lr_scales`` scale.

**Schedules** (:func:`build_scheduler`), each scaling every group's own learning rate:

- ``cosine``: from ``lr`` to ``min_lr`` over the epochs (over the optimiser steps when only
  ``max_steps`` is set); with several groups each goes to ``min_lr`` times its scale.
- ``onecycle``: PyTorch's ``OneCycleLR`` stepped at every optimiser step, as Pointcept's
  trainer does, over all the run's optimiser steps (``trainer.estimated_stepping_batches``:
  gradient accumulation counted), peaking at each group's learning rate (Pointcept's
  ``max_lr`` list). ``scheduler_kwargs`` passes its arguments; the defaults are the values of
  Pointcept's PTv3 configs (:data:`ONECYCLE_DEFAULTS`: ``pct_start=0.05``,
  ``anneal_strategy="cos"``, ``div_factor=10``, ``final_div_factor=1000``, and PyTorch's
  momentum cycling, which Pointcept keeps: AdamW's beta1 or SGD's momentum goes from 0.95 to
  0.85 and back).
- ``poly``: Pointcept's ``PolyLR``, ``(1 - step / (total + 1)) ** power`` at every
  optimiser step (``scheduler_kwargs``: ``power``, default 0.9).
- ``step``: the PointNet++ release's decay, ``max(lr * gamma ** (epoch // step_size),
  min_lr)`` per epoch (``scheduler_kwargs``: ``step_size``, default 20, and ``gamma``,
  default 0.7; the floor scales with each group's ``lr_scale``).
- ``none``: constant.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

#: OneCycleLR arguments of Pointcept's PTv3 / Sonata configs (``scheduler_kwargs`` overrides)
ONECYCLE_DEFAULTS: dict[str, Any] = {
    "pct_start": 0.05,
    "anneal_strategy": "cos",
    "div_factor": 10.0,
    "final_div_factor": 1000.0,
    "cycle_momentum": True,
    "base_momentum": 0.85,
    "max_momentum": 0.95,
    "three_phase": False,
}
#: PolyLR arguments (Pointcept's defaults)
POLY_DEFAULTS: dict[str, Any] = {"power": 0.9}
#: step decay arguments (the PointNet++ classification release's)
STEP_DEFAULTS: dict[str, Any] = {"step_size": 20, "gamma": 0.7}
#: schedules the task's ``scheduler`` option names
SCHEDULERS = ("cosine", "onecycle", "poly", "step", "none")


def _module_path(root: nn.Module, name: str) -> list[nn.Module]:
    """The modules holding parameter ``name`` of ``root``, outermost first."""
    modules = [root]
    for part in name.split(".")[:-1]:
        modules.append(getattr(modules[-1], part))
    return modules


def keyword_matches(keyword: str, name: str, holders: Iterable[nn.Module]) -> bool:
    """Whether ``keyword`` selects parameter ``name`` (see the module): a substring of the
    name, or the class name (any case) of one of the modules holding it."""
    if keyword in name:
        return True
    low = keyword.lower()
    return any(type(m).__name__.lower() == low for m in holders)


def _scale_spec(keyword: str, value: Any) -> tuple[float, float | None]:
    """``(lr_scale, weight_decay or None)`` of one ``lr_scales`` entry."""
    if isinstance(value, Mapping):
        unknown = set(value) - {"lr_scale", "weight_decay"}
        if unknown or "lr_scale" not in value:
            raise ValueError(
                f"lr_scales[{keyword!r}] must be a number or {{lr_scale, weight_decay}}, "
                f"got keys {sorted(value)}"
            )
        scale, decay = value["lr_scale"], value.get("weight_decay")
    else:
        scale, decay = value, None
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale >= 0:
        raise ValueError(f"lr_scales[{keyword!r}]: the scale must be a number >= 0, got {scale!r}")
    if decay is not None and (
        isinstance(decay, bool) or not isinstance(decay, (int, float)) or not decay >= 0
    ):
        raise ValueError(f"lr_scales[{keyword!r}]: weight_decay must be >= 0, got {decay!r}")
    return float(scale), None if decay is None else float(decay)


# --- layer ids --------------------------------------------------------------------------
def _ptv3_layers(backbone: nn.Module) -> list[list[str]] | None:
    """Module-name prefixes of each layer of a PTv3-shaped backbone in execution order:
    stem; per encoder stage its pooling with its first block, then each further block;
    per decoder stage its unpooling with its first block, then each further block.
    ``None`` when ``backbone`` does not have PTv3's layout."""
    enc, down = getattr(backbone, "enc", None), getattr(backbone, "down", None)
    if not isinstance(enc, nn.ModuleList) or not isinstance(down, nn.ModuleList):
        return None
    if not hasattr(backbone, "embedding"):
        return None
    up = getattr(backbone, "up", None) or nn.ModuleList()
    dec = getattr(backbone, "dec", None) or nn.ModuleList()
    if len(down) != max(len(enc) - 1, 0) or len(up) != len(dec):
        return None
    layers: list[list[str]] = [["embedding."]]

    def stage(blocks: nn.Module, prefix: str, entry: str | None) -> None:
        if not isinstance(blocks, (nn.ModuleList, nn.Sequential)):
            raise TypeError
        pending = [entry] if entry is not None else []
        for b in range(len(blocks)):
            layers.append([*pending, f"{prefix}.{b}."])
            pending = []
        if pending:  # a stage without blocks: its (un)pooling is a layer of its own
            layers.append(pending)

    try:
        for s in range(len(enc)):
            stage(enc[s], f"enc.{s}", f"down.{s - 1}." if s > 0 else None)
        for k in range(len(dec)):
            stage(dec[k], f"dec.{k}", f"up.{k}.")
    except TypeError:
        return None
    return layers


def _generic_layers(backbone: nn.Module) -> list[list[str]]:
    """One layer per child module of the backbone in registration order, lists and
    sequentials opened into their elements (recursively)."""
    layers: list[list[str]] = []

    def walk(module: nn.Module, prefix: str) -> None:
        for name, child in module.named_children():
            if isinstance(child, (nn.ModuleList, nn.Sequential)):
                walk(child, f"{prefix}{name}.")
            elif any(True for _ in child.parameters()):
                layers.append([f"{prefix}{name}."])

    walk(backbone, "")
    return layers


def layer_ids(backbone: nn.Module) -> tuple[dict[str, int], int]:
    """Layer number of every parameter of ``backbone`` (by its name in ``backbone``), from
    0 (the stem) to ``L - 1`` (the deepest layer), and ``L``.

    - A backbone with a ``layer_ids()`` method returning ``{parameter name: id}`` is taken
      at its word (``L`` is the largest id plus one).
    - PTv3-shaped backbones (``embedding``, ``enc``/``down``, ``dec``/``up``:
      :class:`~lightning_pc.models.ptv3.PTv3Backbone`, encoder-only ones included) are
      numbered in execution order: the stem is 0, then every block of the encoder stages
      and then of the decoder stages is one layer (a stage's pooling or unpooling shares
      the layer of the stage's first block). PT-v3m1 base has ``1 + 14 + 8 = 23`` layers.
    - Any other backbone: one layer per child module in registration order (lists and
      sequentials opened into their elements), which for the registered networks is the
      order of their forward pass.

    Parameters outside every layer (tokens or parameters held by the backbone itself) are
    put with the stem, as BEiT does with its class token.
    """
    custom = getattr(backbone, "layer_ids", None)
    names = [n for n, _ in backbone.named_parameters()]
    if callable(custom):
        ids = {str(k): int(v) for k, v in dict(custom()).items()}
        missing = [n for n in names if n not in ids]
        if missing:
            raise ValueError(f"the backbone's layer_ids() leaves out {missing[:3]}")
        return ids, max(ids.values(), default=-1) + 1
    layers = _ptv3_layers(backbone) or _generic_layers(backbone)
    ids = {}
    for n in names:
        ids[n] = next(
            (i for i, prefixes in enumerate(layers) if any(n.startswith(p) for p in prefixes)), 0
        )
    return ids, max(len(layers), 1)


def layer_scales(model: nn.Module, decay: float) -> dict[str, float]:
    """Learning-rate multiplier of every parameter of a network with a ``backbone`` (names
    as in ``model``): ``decay ** (L - layer id)`` in the backbone (:func:`layer_ids`), 1
    elsewhere (the head)."""
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, nn.Module):
        raise ValueError(
            f"layer_decay needs a network with a backbone and a head (PointNetwork); "
            f"{type(model).__name__} has no .backbone"
        )
    ids, num_layers = layer_ids(backbone)
    scales = {n: 1.0 for n, _ in model.named_parameters()}
    for n, i in ids.items():
        scales[f"backbone.{n}"] = float(decay) ** (num_layers - i)
    return scales


# --- groups -------------------------------------------------------------------------------
def param_groups(
    module: nn.Module,
    lr: float,
    weight_decay: float,
    lr_scales: Mapping[str, Any] | None = None,
    layer_decay: float | None = None,
    network: str = "model",
    exclude: Iterable[str] = (),
    keep_frozen: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """Parameter groups of ``module`` (a task) for its optimiser (see the module).

    Args:
        module: the task (parameter names as ``module.named_parameters()``).
        lr: base learning rate.
        weight_decay: weight decay of every group without its own.
        lr_scales: ``{keyword: scale | {lr_scale, weight_decay}}``, first match wins.
        layer_decay: layer-wise decay over ``module.<network>.backbone`` (``None``: none).
        network: attribute of ``module`` holding the network (for ``layer_decay``).
        exclude: name prefixes left out of the optimiser (a frozen backbone).
        keep_frozen: name prefixes kept in the optimiser while they do not require
            gradients (a backbone frozen for a warm-up only: no gradient, no update).

    Returns:
        Groups ``{"params", "lr", "weight_decay", "lr_scale", "name"}`` in the order their
        first parameter comes, one per distinct (scale, weight decay); ``lr_scale`` is the
        group's multiplier of ``lr``, ``name`` what ``LearningRateMonitor`` logs it as
        (``default``, the keyword, ``layer_<i>``, ``head``; none when there is one group).
        Parameters that do not require
        gradients are left out, unless their name is under ``keep_frozen``.
    """
    specs = [(k, *_scale_spec(k, v)) for k, v in (lr_scales or {}).items()]
    decays: dict[str, float] = {}
    if layer_decay is not None:
        if not 0.0 < float(layer_decay) <= 1.0:
            raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}")
        net = getattr(module, network)
        decays = {f"{network}.{n}": s for n, s in layer_scales(net, float(layer_decay)).items()}
        ids, _ = layer_ids(net.backbone)
    excluded, kept = tuple(exclude), tuple(keep_frozen)
    groups: dict[tuple[float, float], dict[str, Any]] = {}
    for name, param in module.named_parameters():
        if excluded and name.startswith(excluded):
            continue
        if not param.requires_grad and not (kept and name.startswith(kept)):
            continue
        label, scale, decay = "default", 1.0, weight_decay
        holders = _module_path(module, name)
        for keyword, kscale, kdecay in specs:
            if keyword_matches(keyword, name, holders):
                label, scale = keyword, kscale
                decay = weight_decay if kdecay is None else kdecay
                break
        if name in decays:
            scale *= decays[name]
            if name.startswith(f"{network}.backbone."):
                layer = ids[name[len(f"{network}.backbone.") :]]
                label = f"layer_{layer}" if label == "default" else f"{label}/layer_{layer}"
            else:
                label = "head" if label == "default" else label
        key = (scale, decay)
        group = groups.get(key)
        if group is None:
            group = groups[key] = {
                "params": [],
                "lr": lr * scale,
                "weight_decay": decay,
                "lr_scale": scale,
                "name": label,
            }
        group["params"].append(param)
    out = list(groups.values())
    seen: dict[str, int] = {}
    for group in out:  # LearningRateMonitor refuses two groups of one name
        n = seen[group["name"]] = seen.get(group["name"], 0) + 1
        if n > 1:
            group["name"] = f"{group['name']}_{n}"
    if len(out) == 1:  # one group: logged as before, under the optimiser's name alone
        del out[0]["name"]
    return out


# --- schedules ------------------------------------------------------------------------------
def _kwargs(defaults: Mapping[str, Any], given: Mapping[str, Any] | None, what: str) -> dict:
    kwargs = dict(defaults)
    for key, value in (given or {}).items():
        if key not in defaults:
            raise ValueError(
                f"scheduler_kwargs: {key!r} is not an argument of the {what} schedule; "
                f"known: {', '.join(defaults)}"
            )
        kwargs[key] = value
    return kwargs


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    name: str,
    *,
    total_steps: float | Callable[[], float],
    max_epochs: int | None = None,
    min_lr: float = 0.0,
    scheduler_kwargs: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The ``lr_scheduler`` entry of ``configure_optimizers`` for schedule ``name`` (see the
    module), or ``None`` for ``"none"``.

    Args:
        optimizer: the optimiser, its groups' ``lr`` their peak learning rates.
        name: one of :data:`SCHEDULERS`.
        total_steps: optimiser steps of the whole run (``inf`` when unknown), or a function
            giving them (called only by the schedules that need them).
        max_epochs: epochs of the run (``cosine`` steps per epoch when given and positive).
        min_lr: final learning rate of ``cosine`` (times each group's ``lr_scale``).
        scheduler_kwargs: arguments of the ``onecycle`` or ``poly`` schedule.
    """
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; known: {', '.join(SCHEDULERS)}")
    if name == "none":
        if scheduler_kwargs:
            raise ValueError("scheduler_kwargs given for scheduler 'none'")
        return None
    if name == "cosine":
        if scheduler_kwargs:
            raise ValueError("scheduler_kwargs is for the onecycle, poly and step schedules")
        if max_epochs is not None and max_epochs > 0:
            total, interval = max_epochs, "epoch"
        else:
            total, interval = _steps(total_steps, name), "step"
        scheduler: torch.optim.lr_scheduler.LRScheduler
        if len(optimizer.param_groups) == 1:
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                optimizer, T_max=total, eta_min=min_lr
            )
        else:
            scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer, [_cosine(total, min_lr, g) for g in optimizer.param_groups]
            )
        return {"scheduler": scheduler, "interval": interval}
    if name == "step":
        kwargs = _kwargs(STEP_DEFAULTS, scheduler_kwargs, name)
        step_size, gamma = int(kwargs["step_size"]), float(kwargs["gamma"])
        if step_size < 1 or not 0.0 < gamma <= 1.0:
            raise ValueError(f"step schedule: step_size >= 1 and 0 < gamma <= 1, got {kwargs}")
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            [_Step(step_size, gamma, _floor(min_lr, g)) for g in optimizer.param_groups],
        )
        return {"scheduler": scheduler, "interval": "epoch"}
    total = _steps(total_steps, name)
    if name == "onecycle":
        kwargs = _kwargs(ONECYCLE_DEFAULTS, scheduler_kwargs, name)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=[float(g["lr"]) for g in optimizer.param_groups],
            total_steps=total,
            **kwargs,
        )
    else:
        power = float(_kwargs(POLY_DEFAULTS, scheduler_kwargs, name)["power"])
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _Poly(total, power))
    return {"scheduler": scheduler, "interval": "step"}


def _steps(total_steps: float | Callable[[], float], name: str) -> int:
    if callable(total_steps):
        total_steps = total_steps()
    if not math.isfinite(total_steps):
        raise ValueError(
            f"the {name} schedule needs the run's length: set trainer.max_epochs or "
            "trainer.max_steps"
        )
    return max(int(total_steps), 1)


class _Cosine:
    """Cosine factor from 1 to ``min_lr / lr`` over ``total`` steps (picklable)."""

    def __init__(self, total: int, floor: float) -> None:
        self.total, self.floor = total, floor

    def __call__(self, step: int) -> float:
        t = min(step, self.total) / self.total
        return self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * t))


def _floor(min_lr: float, group: Mapping[str, Any]) -> float:
    """``min_lr`` as a factor of a group's learning rate, the group's ``lr_scale`` applied to
    both (the groups of :func:`param_groups` carry it; 1 for others)."""
    scale = float(group.get("lr_scale", 1.0))
    base = float(group["lr"]) / scale if scale > 0 else 0.0
    return min_lr / base if base > 0 else 0.0


def _cosine(total: int, min_lr: float, group: Mapping[str, Any]) -> _Cosine:
    """A group's cosine factor: its learning rate goes to ``min_lr`` times its ``lr_scale``."""
    return _Cosine(total, _floor(min_lr, group))


class _Step:
    """``max(gamma ** (epoch // step_size), floor)`` (picklable)."""

    def __init__(self, step_size: int, gamma: float, floor: float) -> None:
        self.step_size, self.gamma, self.floor = step_size, gamma, floor

    def __call__(self, epoch: int) -> float:
        return max(self.gamma ** (epoch // self.step_size), self.floor)


class _Poly:
    """Pointcept's PolyLR factor ``(1 - step / (total + 1)) ** power`` (picklable)."""

    def __init__(self, total: int, power: float) -> None:
        self.total, self.power = total, power

    def __call__(self, step: int) -> float:
        return max(1.0 - step / (self.total + 1), 0.0) ** self.power
