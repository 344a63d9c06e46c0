"""`make demo`: a small real job on the neighbour-ops layer.

Deforms points sampled on a sphere into a torus by gradient descent on the Chamfer
distance (whose nearest neighbours come from :func:`lightning_pc.ops.knn`), with farthest
point sampling to pick the starting points, and prints the loss as it falls. It runs in
seconds on a laptop CPU. ``lightning-pc fit --config configs/quickstart.yaml`` takes its
place once the CLI lands.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from lightning_pc import ops


def torus(n: int, generator: torch.Generator) -> torch.Tensor:
    u = torch.rand(n, generator=generator) * 2 * math.pi
    v = torch.rand(n, generator=generator) * 2 * math.pi
    return torch.stack(
        [(0.7 + 0.25 * v.cos()) * u.cos(), (0.7 + 0.25 * v.cos()) * u.sin(), 0.25 * v.sin()], 1
    )


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    g = torch.Generator().manual_seed(args.seed)
    target = torus(20_000, g)
    sphere = torch.randn(8 * args.points, 3, generator=g)
    sphere = sphere / sphere.norm(dim=1, keepdim=True)
    torch.manual_seed(args.seed)
    start = sphere[ops.fps(sphere, ratio=1 / 8)]  # evenly spread starting points
    pts = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([pts], lr=0.01)
    t0 = time.perf_counter()
    first = float(ops.chamfer_distance(pts.detach(), target))
    print(f"fitting {args.points} points to a torus of {len(target)} points (Chamfer, squared L2)")
    for step in range(1, args.steps + 1):
        opt.zero_grad()
        loss = ops.chamfer_distance(pts, target)
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == 1:
            print(f"  step {step:4d}  chamfer {float(loss):.5f}")
    last = float(ops.chamfer_distance(pts.detach(), target))
    print(f"chamfer {first:.4f} -> {last:.5f} in {time.perf_counter() - t0:.1f} s")
    return last


if __name__ == "__main__":
    main()
