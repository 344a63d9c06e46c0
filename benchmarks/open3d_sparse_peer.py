"""Times Open3D's bundled ``open3d.ml.torch.ops.sparse_conv`` on the cases of sparse_conv.py.

Open3D's torch ops are compiled against a CUDA build of torch, so they do not load beside
our CPU torch: ``sparse_conv.py`` runs this file in an environment that has one
(``.venv-o3d``), on the same arrays (a temporary ``.npz``) in the same run, and reads one
line of JSON from stdout.

Usage: ``python open3d_sparse_peer.py cases.npz time REPEAT`` (every size: op and layer
times) or ``python open3d_sparse_peer.py cases.npz memory NAME`` (one size, fresh process:
peak resident memory of one forward + backward of the op).
"""

from __future__ import annotations

import gc
import json
import sys

import numpy as np
import torch
from common import median_time  # benchmarks/ (this script's folder) is on sys.path


def vm(field: str) -> int:
    """``VmRSS`` / ``VmHWM`` of this process in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def case_tensors(data, name: str):
    feats = torch.from_numpy(data[f"{name}_feats"]).requires_grad_()  # [N, C]
    w = torch.from_numpy(data["weight"])  # [27, C_in, C_out]
    filters = w.reshape(3, 3, 3, w.shape[1], w.shape[2]).clone().requires_grad_()
    nbr = torch.from_numpy(data[f"{name}_nbr"])  # [P] int32, grouped by output site
    kidx = torch.from_numpy(data[f"{name}_kidx"])  # [P] uint8
    splits = torch.from_numpy(data[f"{name}_splits"])  # [N + 1] int64
    grad = torch.from_numpy(data[f"{name}_grad"])  # [N, C_out]
    return feats, filters, nbr, kidx, splits, grad


def main() -> None:
    import open3d.ml.torch as ml3d

    data = np.load(sys.argv[1])
    mode = sys.argv[2]
    names = json.loads(str(data["names"]))
    empty = torch.zeros(0)

    def op_step(feats, filters, nbr, kidx, splits, grad):
        out = ml3d.ops.sparse_conv(filters, feats, empty, nbr, kidx, empty, splits)
        out.backward(grad)
        return out

    if mode == "memory":
        name = sys.argv[3]
        args = case_tensors(data, name)
        del data
        op_step(*args)  # warm-up: code pages, thread pool
        args[0].grad = args[1].grad = None
        gc.collect()
        base = vm("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        op_step(*args)
        print(json.dumps({"peak_extra": vm("VmHWM") - base}))
        return

    repeat = int(sys.argv[3])
    out: dict[str, dict[str, float]] = {}
    for name in names:
        feats, filters, nbr, kidx, splits, grad = case_tensors(data, name)
        res = op_step(feats, filters, nbr, kidx, splits, grad)
        ref = data.get(f"{name}_out") if f"{name}_out" in data.files else None
        args = (feats, filters, nbr, kidx, splits, grad)
        entry = {
            "op": median_time(
                lambda args=args: op_step(*args), repeat=repeat, budget_s=float("inf")
            )
        }
        if ref is not None:
            entry["max_abs_diff"] = float((res.detach() - torch.from_numpy(ref)).abs().max())
        # The layer with its own neighbour search (a hash table of voxel centres).
        layer = ml3d.layers.SparseConv(
            in_channels=feats.shape[1],
            filters=filters.shape[-1],
            kernel_size=[3, 3, 3],
            use_bias=False,
        )
        layer.kernel.data.copy_(filters.detach())
        centres = torch.from_numpy(data[f"{name}_xyz"]).float() + 0.5  # [N, 3] voxel units
        voxel = torch.tensor(1.0)

        def layer_step(layer=layer, feats=feats, centres=centres, voxel=voxel, grad=grad):
            y = layer(feats, centres, centres, voxel)
            y.backward(grad)

        entry["layer"] = median_time(layer_step, repeat=repeat, budget_s=float("inf"))
        out[name] = entry
    print(json.dumps(out))


if __name__ == "__main__":
    main()
