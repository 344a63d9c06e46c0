"""Checkpoint files: finding them (a path, or the Hugging Face hub at a pinned revision),
checking them (sha256), reading them (``.pth`` / ``.pt`` / ``.ckpt`` through
``torch.load(weights_only=True)``, ``.safetensors``), unwrapping Pointcept's and Lightning's
layouts, and loading a converted state dict strictly with a readable report.

Layouts read (:func:`unwrap`):

- a bare state dict (``{name: tensor}``);
- a dict with ``state_dict`` (Pointcept's trainer checkpoints, which add ``epoch``,
  ``optimizer``, ...; Sonata-family files, which add the model's ``config``; Lightning
  checkpoints) or ``model`` holding it;
- ``module.`` prefixes (Pointcept trains under DistributedDataParallel) and, for a Lightning
  checkpoint of one of our tasks, the ``model.`` prefix of the task's network.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn


class PretrainedError(RuntimeError):
    """A pretrained checkpoint could not be found, read, verified or loaded."""


class PretrainedUnavailable(PretrainedError):
    """The checkpoint file is neither on disk nor obtainable from the hub."""


class ChecksumError(PretrainedError):
    """The file's sha256 is not the one the card pins."""


@dataclass(frozen=True)
class HubFile:
    """One file of a Hugging Face model repository.

    Args:
        repo_id: ``owner/name``.
        filename: path of the file in the repository.
        revision: commit hash the card pins (``"main"`` where none was published: then the
            card says so, and :func:`hub_path` warns).
        sha256: sha256 of the file's content where the hub gives it (its LFS object id),
            else ``None``.
    """

    repo_id: str
    filename: str
    revision: str
    sha256: str | None = None

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo_id}/blob/{self.revision}/{self.filename}"

    @property
    def pinned(self) -> bool:
        """Whether the revision is a full commit hash (else a branch that may move)."""
        return len(self.revision) == 40 and all(c in "0123456789abcdef" for c in self.revision)


def sha256_of(path: str | Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file's content, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify(path: str | Path, expected: str | None, what: str) -> None:
    """Check ``path``'s sha256 against ``expected`` (nothing to check when ``None``).

    Raises:
        ChecksumError: they differ (the message names ``what``, the file and both sums).
    """
    if expected is None:
        return
    got = sha256_of(path)
    if got != expected.lower():
        raise ChecksumError(
            f"{what}: {path} has sha256 {got}, the card expects {expected}. The download is "
            "damaged or the file changed upstream: delete it (for the hub cache: "
            "`hf cache rm` or remove the file under the cache folder) and load again; if "
            "it persists the published file changed since the card was written."
        )


def hub_path(file: HubFile, what: str) -> Path:
    """The local path of ``file``: from the Hugging Face cache, downloaded at the pinned
    revision when it is not there and the hub is reachable. ``huggingface_hub`` honours its
    own settings (``HF_HOME`` / ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE=1``, tokens).

    Raises:
        PretrainedUnavailable: ``huggingface_hub`` is not installed, or the file is not in
            the cache and cannot be downloaded (offline, no network, no such file); the
            message names ``what``, the file and the ways out.
    """
    how = (
        f"download {file.url} (e.g. `hf download {file.repo_id} {file.filename} --revision "
        f"{file.revision}`) and pass its path as pretrained='/path/to/"
        f"{Path(file.filename).name}'"
    )
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise PretrainedUnavailable(
            f"{what}: {file.filename} of {file.repo_id} is not on this machine and "
            f"huggingface_hub is not installed: `pip install huggingface_hub` (or "
            f"lightning-pc[hub]), or {how}"
        ) from None
    try:
        return Path(hf_hub_download(file.repo_id, file.filename, revision=file.revision))
    except Exception as e:  # offline, network, missing file, gated repository...
        from huggingface_hub import constants

        offline = " (HF_HUB_OFFLINE is set)" if constants.HF_HUB_OFFLINE else ""
        raise PretrainedUnavailable(
            f"{what}: cannot get {file.filename} of {file.repo_id} at revision "
            f"{file.revision}{offline}: it is not in the Hugging Face cache "
            f"({constants.HF_HUB_CACHE}) and the download failed ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}). Connect and retry, or {how}"
        ) from e


class _Opaque:
    """Stands for an object a checkpoint pickles beside its weights that is neither a tensor
    nor a plain container (a numpy scalar, a learning-rate scheduler): built from nothing,
    holding nothing, so no code named by the file runs."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _Opaque:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> _Opaque:
        return _Opaque()

    def append(self, item: Any) -> None:
        pass

    def extend(self, items: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass


class _WeightsUnpickler(pickle.Unpickler):
    """``torch.load(weights_only=True)``'s allow-list (tensors, storages, dtypes, plain
    containers); every other global becomes an inert :class:`_Opaque` instead of an error.
    Reads Pointcept's trainer checkpoints, whose ``best_metric_value`` is a numpy scalar and
    whose scheduler state may hold a pickled bound method."""

    def find_class(self, module: str, name: str) -> Any:
        from torch import _weights_only_unpickler

        allowed = _weights_only_unpickler._get_allowed_globals()
        found = allowed.get(f"{module}.{name}")
        if found is not None:
            return found
        return type(f"Opaque[{module}.{name}]", (_Opaque,), {})


_WEIGHTS_PICKLE = types.ModuleType("lightning_pc_weights_pickle")
_WEIGHTS_PICKLE.Unpickler = _WeightsUnpickler  # type: ignore[attr-defined]
_WEIGHTS_PICKLE.load = pickle.load  # type: ignore[attr-defined]
_WEIGHTS_PICKLE.__dict__["UnpicklingError"] = pickle.UnpicklingError


def read_file(path: str | Path) -> Any:
    """The object a checkpoint file holds: ``.safetensors`` through ``safetensors``, anything
    else through ``torch.load(weights_only=True)`` on the CPU; when that refuses objects
    beside the weights (Pointcept's trainer checkpoints pickle a numpy scalar and scheduler
    state), again with the same allow-list and those objects replaced by inert stand-ins.
    No code named by the file runs either way.

    Raises:
        PretrainedUnavailable: no such file.
        PretrainedError: a file that is not a checkpoint (the message names it).
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise PretrainedUnavailable(f"no checkpoint file at {p}")
    if p.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise PretrainedError(
                f"{p}: reading .safetensors needs the safetensors package "
                "(`pip install safetensors`, or lightning-pc[hub])"
            ) from None
        try:
            return load_file(str(p), device="cpu")
        except Exception as e:
            raise PretrainedError(f"{p}: not a readable safetensors file ({e})") from e
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = e
    except Exception as e:
        raise PretrainedError(f"{p}: not a readable PyTorch checkpoint ({e})") from e
    try:
        return torch.load(p, map_location="cpu", weights_only=False, pickle_module=_WEIGHTS_PICKLE)
    except Exception as e:
        raise PretrainedError(
            f"{p}: not a readable weights file: torch.load(weights_only=True) refused it "
            f"({str(first).splitlines()[0]}) and reading its tensors alone failed ({e})"
        ) from e


def _is_state(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())
    )


def unwrap(obj: Any, source: str) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The state dict a checkpoint object holds, without wrapping prefixes, and the rest of
    the object (``config``, ``epoch``, ...; empty for a bare state dict).

    Raises:
        PretrainedError: no state dict found (the message names ``source`` and the keys).
    """
    meta: dict[str, Any] = {}
    state = obj
    if not _is_state(obj) and isinstance(obj, Mapping):
        for name in ("state_dict", "model", "model_state_dict"):
            if _is_state(obj.get(name)):
                state = obj[name]
                meta = {k: v for k, v in obj.items() if k != name}
                break
    if not _is_state(state):
        keys = list(obj)[:8] if isinstance(obj, Mapping) else type(obj).__name__
        raise PretrainedError(
            f"{source}: no state dict found (a mapping of names to tensors, bare or under "
            f"'state_dict' / 'model'); it holds {keys}"
        )
    out = dict(state)
    for prefix in ("module.", "model."):  # DDP; a Lightning checkpoint of our tasks
        if all(k.startswith(prefix) for k in out):
            out = {k[len(prefix) :]: v for k, v in out.items()}
    return out, meta


@dataclass
class LoadReport:
    """What strict loading found. Empty lists: every parameter and buffer came from the file."""

    source: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    reinitialised: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        lines = [f"loading {self.source}:"]
        if self.mismatched:
            lines.append(f"  {len(self.mismatched)} shape mismatches (name: file -> model):")
            lines += [f"    {k}: {list(a)} -> {list(b)}" for k, a, b in self.mismatched]
        if self.missing:
            lines.append(f"  {len(self.missing)} missing from the file (model keys):")
            lines += [f"    {k}" for k in self.missing]
        if self.unexpected:
            lines.append(f"  {len(self.unexpected)} unexpected (file keys the model lacks):")
            lines += [f"    {k.lstrip('?')}" + ("  (no key-map rule)" if k.startswith("?") else "")
                      for k in self.unexpected]  # fmt: skip
        if self.ignored:
            lines.append(f"  {len(self.ignored)} in the file, not used by this network:")
            lines += [f"    {k}" for k in self.ignored]
        if self.reinitialised:
            lines.append(f"  {len(self.reinitialised)} left at their initialisation (new head):")
            lines += [f"    {k}" for k in self.reinitialised]
        if len(lines) == 1:
            lines.append("  every parameter and buffer loaded")
        return "\n".join(lines)


def load_state(
    model: nn.Module,
    state: Mapping[str, Tensor],
    source: str,
    *,
    skip: tuple[str, ...] = (),
    optional: tuple[str, ...] = (),
    strict: bool = True,
) -> LoadReport:
    """Load ``state`` (our keys) into ``model``.

    Args:
        model: the network.
        state: its keys, as a key map returns them (``"?name"``: a key no rule placed).
        source: what the weights are, for the report and errors.
        skip: key prefixes left at their initialisation (a new head): neither loaded nor
            reported missing.
        optional: keys the file may hold that the network may lack (a pretraining mask
            token, unused at inference): dropped and reported as ignored.
        strict: raise unless every parameter and buffer (outside ``skip``) is in ``state``
            with its shape and nothing else is; else load what matches.

    Raises:
        PretrainedError: with ``strict``, any missing, unexpected or mismatched key (the
            message is the :class:`LoadReport`).
    """
    own = model.state_dict()
    report = LoadReport(source)
    good: dict[str, Tensor] = {}
    for k, v in state.items():
        if k.startswith(skip):
            continue
        if k not in own and k in optional:
            report.ignored.append(k)
        elif k not in own:
            report.unexpected.append(k)
        elif tuple(v.shape) != tuple(own[k].shape):
            report.mismatched.append((k, tuple(v.shape), tuple(own[k].shape)))
        else:
            good[k] = v
    for k in own:
        if k.startswith(skip):
            report.reinitialised.append(k)
        elif k not in state:
            report.missing.append(k)
    if strict and not report.ok:
        raise PretrainedError(str(report))
    with torch.no_grad():
        for k, v in good.items():
            own[k].copy_(v)  # state_dict() tensors share storage with the model's
    return report


def cache_root() -> Path:
    """Where huggingface_hub caches downloads (``HF_HUB_CACHE`` / ``HF_HOME``)."""
    try:
        from huggingface_hub import constants

        return Path(constants.HF_HUB_CACHE)
    except ImportError:
        home = os.environ.get("HF_HOME", str(Path.home() / ".cache" / "huggingface"))
        return Path(os.environ.get("HF_HUB_CACHE", str(Path(home) / "hub")))
