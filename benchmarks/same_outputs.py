"""Same networks before and after a refactor: outputs, parameters and checkpoints.

Builds every registered network (tiny widths from ``tests/conftest.py``) with a fixed seed in
this checkout and in another one (``--against``, e.g. the main branch's), each in its own
process, runs one training-mode and one evaluation-mode forward pass on the same batch,
and prints per network: parameter counts, whether the state-dict keys are the same, the
largest difference of the outputs, and the largest difference after loading the other
checkout's state dict into this checkout's network (old checkpoints load).

    python benchmarks/same_outputs.py --against /work/main
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

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
torch.manual_seed(1)
train = model.train()(batch).detach()
if load:  # strict: every key of the other checkout's state dict must map to one here
    model.load_state_dict(torch.load(load, weights_only=True))
model.eval()
with torch.no_grad():
    evaluation = model(batch)
params = sum(p.numel() for p in model.parameters())
torch.save(dict(train=train, eval=evaluation, state=model.state_dict(), params=params), out)
"""


def run(tree: Path, name: str, kwargs: dict, out: Path, load: Path | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    extra = [] if load is None else [str(load)]
    subprocess.run(
        [sys.executable, "-c", WORKER, name, json.dumps(kwargs), str(out), *extra],
        env=env,
        check=True,
        cwd=tree,
    )
    return torch.load(out, weights_only=False)  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, required=True, help="the other checkout")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.conftest import TINY_MODELS

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, tiny in sorted(TINY_MODELS.items()):
            kwargs = dict(tiny, in_channels=2)
            if "part_seg" in name:
                kwargs["num_categories"] = 2
            ours = run(ROOT, name, kwargs, Path(tmp) / "ours.pt")
            theirs = run(args.against, name, kwargs, Path(tmp) / "theirs.pt")
            torch.save(theirs["state"], Path(tmp) / "state.pt")
            loaded = run(ROOT, name, kwargs, Path(tmp) / "loaded.pt", Path(tmp) / "state.pt")
            rows.append(
                (
                    name,
                    ours["params"],
                    theirs["params"],
                    list(ours["state"]) == list(theirs["state"]),
                    (ours["train"] - theirs["train"]).abs().max().item(),
                    (ours["eval"] - theirs["eval"]).abs().max().item(),
                    (loaded["eval"] - theirs["eval"]).abs().max().item(),
                )
            )
    print(
        "| network | params (this) | params (other) | same keys | max diff train | "
        "max diff eval | max diff eval, other's weights loaded here |"
    )
    print("|---|---:|---:|---|---:|---:|---:|")
    for name, p1, p2, keys, dt, de, dl in rows:
        print(f"| {name} | {p1:,} | {p2:,} | {keys} | {dt:.2e} | {de:.2e} | {dl:.2e} |")


if __name__ == "__main__":
    main()
