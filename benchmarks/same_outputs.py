"""Same networks before and after a refactor: weights, outputs and state dicts.

For every registered network (tiny widths from ``tests/conftest.py``), builds it with a
fixed seed in this checkout and at another revision (``--against``: a git revision, checked
out in a temporary ``git worktree``, or the path of another checkout), each in its own
process with ``PYTHONPATH`` pointing at its tree. Then it loads the other revision's freshly
built weights into this checkout's network and runs, on the same batch and with the same
seed, one training-mode forward pass (dropout, random sampling starts, order shuffles and
batch-norm statistics all in play) and one evaluation-mode pass, and compares them with the
other revision's outputs, and the state dicts after the training-mode pass.

Key mapping rule: the state-dict keys may be renamed (a new module tree), never reordered
or reshaped: the ``i``-th entry of the other revision's state dict goes to the ``i``-th entry
of this one's, and the two must have the same shape and dtype and the same number of
entries (else the network is reported as not mappable). The table lists, per network, the
renames as ``old part -> new part`` (the keys with their common ending removed).

    python benchmarks/same_outputs.py --against 5822510
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]

WORKER = r"""
import json, sys, torch
from torch_geometric.data import Batch, Data
from lightning_pc.models import create_model

name, kwargs, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
load = sys.argv[4] if len(sys.argv) > 4 else None
g = torch.Generator().manual_seed(1)
clouds = []
for i, n in enumerate([70, 50, 61]):
    pos = torch.rand(n, 3, generator=g) * 2 - 1
    x = torch.randn(n, 2, generator=g)
    clouds.append(Data(pos=pos, x=x, category=torch.tensor([i % 2])))
batch = Batch.from_data_list(clouds)
torch.manual_seed(0)
model = create_model(name, num_classes=5, **kwargs)
if load:  # strict: every key must be given
    model.load_state_dict(torch.load(load, weights_only=True))
init = {k: v.clone() for k, v in model.state_dict().items()}
torch.manual_seed(1)
train = model.train()(batch).detach()
final = {k: v.clone() for k, v in model.state_dict().items()}
model.eval()
with torch.no_grad():
    evaluation = model(batch)
params = sum(p.numel() for p in model.parameters())
torch.save(dict(train=train, eval=evaluation, init=init, final=final, params=params), out)
"""


def run(tree: Path, name: str, kwargs: dict[str, Any], out: Path, load: Path | None = None) -> Any:
    """The worker's results for ``name`` built from the package in ``tree``."""
    # ``tree`` first; the rest of the caller's path (side packages) after it, without this
    # checkout, whose package must not shadow the other's
    rest = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    rest = [p for p in rest if Path(p).resolve() != ROOT]
    path = os.pathsep.join([str(tree), *rest])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    extra = [] if load is None else [str(load)]
    subprocess.run(
        [sys.executable, "-c", WORKER, name, json.dumps(kwargs), str(out), *extra],
        env=env,
        check=True,
        cwd=tree,
    )
    return torch.load(out, weights_only=False)


def key_map(old: dict[str, torch.Tensor], new: dict[str, torch.Tensor]) -> dict[str, str] | str:
    """Old key -> new key by position (see the module docstring), or why there is none."""
    if len(old) != len(new):
        return f"{len(old)} entries before, {len(new)} now"
    mapping = {}
    for (ko, vo), (kn, vn) in zip(old.items(), new.items(), strict=True):
        if vo.shape != vn.shape or vo.dtype != vn.dtype:
            return f"{ko} {tuple(vo.shape)} vs {kn} {tuple(vn.shape)}"
        mapping[ko] = kn
    return mapping


def renames(mapping: dict[str, str]) -> list[str]:
    """Distinct ``old part -> new part`` renames (keys without their common ending)."""
    out: dict[str, None] = {}
    for ko, kn in mapping.items():
        if ko == kn:
            continue
        a, b = ko.split("."), kn.split(".")
        while a and b and a[-1] == b[-1]:
            a.pop()
            b.pop()
        out[f"`{'.'.join(a) or '(root)'}` -> `{'.'.join(b)}`"] = None
    return list(out)


def diff(a: torch.Tensor, b: torch.Tensor) -> str:
    """``equal`` (bitwise) or the largest absolute difference."""
    if a.shape != b.shape:
        return f"shapes {tuple(a.shape)} vs {tuple(b.shape)}"
    if torch.equal(a, b):
        return "equal"
    return f"{(a.double() - b.double()).abs().max().item():.1e}"


def state_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> str:
    """Worst :func:`diff` over the entries of two state dicts with the same keys."""
    worst, where = 0.0, ""
    for k, v in a.items():
        d = diff(
            v.double() if v.is_floating_point() else v,
            b[k].double() if b[k].is_floating_point() else b[k],
        )
        if d != "equal":
            value = float(d) if d[0].isdigit() else float("inf")
            if value >= worst:
                worst, where = value, k
    return "equal" if not where else f"{worst:.1e} ({where})"


def checkout(rev: str, tmp: Path) -> Path:
    """A path holding the package at ``rev``: the path itself when it is a directory,
    else a detached ``git worktree`` of this repository at ``rev`` under ``tmp``."""
    if Path(rev).is_dir():
        return Path(rev).resolve()
    tree = tmp / "against"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tree), rev], check=True
    )
    return tree


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--against", required=True, help="git revision (or path of a checkout) to compare with"
    )
    parser.add_argument("--only", nargs="*", help="network names (default: every registered one)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from lightning_pc.models import list_models
    from tests.conftest import TINY_MODELS

    names = args.only or list_models()
    missing = [n for n in names if n not in TINY_MODELS]
    if missing:
        raise SystemExit(f"no tiny kwargs in tests/conftest.py for {', '.join(missing)}")
    rows, rules = [], {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        other = checkout(args.against, tmp)
        try:
            for name in names:
                kwargs = dict(TINY_MODELS[name], in_channels=2)
                if "part_seg" in name:
                    kwargs["num_categories"] = 2
                theirs = run(other, name, kwargs, tmp / "theirs.pt")
                ours = run(ROOT, name, kwargs, tmp / "ours.pt")
                mapping = key_map(theirs["init"], ours["init"])
                if isinstance(mapping, str):
                    rows.append((name, theirs["params"], ours["params"], mapping, "", "", "", ""))
                    continue
                rules[name] = renames(mapping)
                init_same = all(
                    torch.equal(v, ours["init"][mapping[k]]) for k, v in theirs["init"].items()
                )
                mapped = {mapping[k]: v for k, v in theirs["init"].items()}
                torch.save(mapped, tmp / "state.pt")
                loaded = run(ROOT, name, kwargs, tmp / "loaded.pt", tmp / "state.pt")
                final = {mapping[k]: v for k, v in theirs["final"].items()}
                rows.append(
                    (
                        name,
                        theirs["params"],
                        ours["params"],
                        f"{len(mapping)} by position",
                        "yes" if init_same else "no",
                        diff(loaded["train"], theirs["train"]),
                        diff(loaded["eval"], theirs["eval"]),
                        state_diff(loaded["final"], final),
                    )
                )
        finally:
            if other.parent == tmp:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(other)],
                    check=False,
                )
    print(f"against {args.against}; outputs and states of this checkout with the other's weights")
    print(
        "| network | params (other) | params (this) | keys mapped | same init (same seed) | "
        "train-mode output | eval output | state after the train-mode pass |"
    )
    print("|---|---:|---:|---|---|---|---|---|")
    for name, p_other, p_this, keys, init, dt, de, ds in rows:
        print(f"| {name} | {p_other:,} | {p_this:,} | {keys} | {init} | {dt} | {de} | {ds} |")
    print("\nkey renames (old part -> new part):")
    for name, rule in rules.items():
        print(f"- {name}: {', '.join(rule) if rule else 'none'}")


if __name__ == "__main__":
    main()
