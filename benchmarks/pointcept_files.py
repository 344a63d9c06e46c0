"""Pointcept's model files for the oracle scripts, loaded at run time with stand-ins.

Shared by ``ptv3_oracle.py`` (PT-v3m1) and ``sonata_oracle.py`` (PT-v3m2 / PT-v3m3, and the
standalone ``sonata`` package): the files a model needs are read from a checkout or a
(bare) git directory, at a revision, and copied to a temporary directory outside the
repository, beside stand-ins for the modules they import but do not use on the evaluation
path (Pointcept's registry, PDNorm and hook base; ``torch_scatter.segment_csr`` on
``torch.segment_reduce``; timm's ``DropPath`` as identity). Nothing of Pointcept's is kept
in the repository.
"""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import torch
from torch import nn

#: what every PTv3 model file of Pointcept imports (modules, structure, serialisation)
POINTCEPT_FILES = [
    "pointcept/models/modules.py",
    "pointcept/models/utils/misc.py",
    "pointcept/models/utils/structure.py",
    "pointcept/models/utils/serialization/__init__.py",
    "pointcept/models/utils/serialization/default.py",
    "pointcept/models/utils/serialization/z_order.py",
    "pointcept/models/utils/serialization/hilbert.py",
]
#: stand-ins for the package files and the imports unused on the evaluation path
POINTCEPT_STANDINS = {
    "pointcept/__init__.py": "",
    "pointcept/engines/__init__.py": "",
    "pointcept/engines/hooks.py": "class HookBase:\n    pass\n",
    "pointcept/models/__init__.py": "",
    "pointcept/models/builder.py": (
        "class _Registry:\n"
        "    def register_module(self, name=None):\n"
        "        return lambda cls: cls\n"
        "MODELS = _Registry()\n"
    ),
    "pointcept/models/point_prompt_training.py": "PDNorm = None\n",
    "pointcept/models/point_transformer_v3/__init__.py": "",
    "pointcept/models/utils/__init__.py": (
        "from . import misc as _misc\n"
        "from .misc import offset2batch, offset2bincount, batch2offset\n"
        "bincount2offset = getattr(_misc, 'bincount2offset', None)  # not in v1.5.1\n"
        "from .serialization import encode, decode\n"
    ),
}


def read_file(src: Path, rel: str, rev: str = "HEAD") -> str:
    """``rel`` at ``rev`` from a checkout (its working tree at ``HEAD``) or a git directory."""
    if rev == "HEAD" and (src / rel).exists():
        return (src / rel).read_text()
    out = subprocess.run(
        ["git", "-C", str(src), "show", f"{rev}:{rel}"], capture_output=True, text=True
    )
    if out.returncode:
        raise SystemExit(f"cannot read {rel} at {rev} from {src}: {out.stderr.strip()}")
    return out.stdout


def copy_files(
    src: Path, tmp: Path, files: list[str], standins: dict[str, str], rev: str = "HEAD"
) -> None:
    """``files`` of ``src`` at ``rev`` and the ``standins`` (path: text) written under ``tmp``."""
    for rel in files:
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_text(read_file(src, rel, rev))
    for rel, text in standins.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_text(text)


def install_standins() -> None:
    """``torch_scatter`` (``segment_csr``) and timm's ``DropPath`` (identity: evaluation;
    ``timm.layers``, and ``timm.models.layers`` that v1.5.1 imports) in ``sys.modules``."""
    scatter = types.ModuleType("torch_scatter")

    def segment_csr(src: torch.Tensor, indptr: torch.Tensor, reduce: str = "sum") -> torch.Tensor:
        return torch.segment_reduce(src, reduce, offsets=indptr, axis=0)

    scatter.segment_csr = segment_csr  # type: ignore[attr-defined]
    timm = types.ModuleType("timm")
    layers = types.ModuleType("timm.layers")
    models = types.ModuleType("timm.models")

    class DropPath(nn.Identity):
        def __init__(self, p: float = 0.0) -> None:
            super().__init__()

    layers.DropPath = DropPath  # type: ignore[attr-defined]
    sys.modules.update(
        {
            "torch_scatter": scatter,
            "timm": timm,
            "timm.layers": layers,
            "timm.models": models,
            "timm.models.layers": layers,
        }
    )


def cpu_eval(ref: nn.Module, pooling: str) -> nn.Module:
    """An official model in evaluation mode for spconv's CPU kernels, which add a bias only
    on the training path (its ``SubMConv3d`` run in training mode: same result), with the
    order shuffling of its pooling layers (class name ``pooling``) switched off: they
    shuffle in evaluation too."""
    ref.eval()
    for m in ref.modules():
        if type(m).__name__ == "SubMConv3d":
            m.train()
        if type(m).__name__ == pooling:
            m.shuffle_orders = False
    return ref
