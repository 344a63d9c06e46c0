"""Times Open3D's bundled torch ops on the cases of ops.py; prints JSON to stdout.

Open3D's ``open3d.ml.torch`` ops are compiled against a CUDA build of torch, so they do not
load beside the CPU torch of our environment. ``ops.py`` runs this file in a separate
environment that has one (``make bench-peers`` builds it in ``.venv-o3d``), on the same
arrays, in the same run. Usage: ``python open3d_peer.py cases.npz``.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch
from common import median_time  # benchmarks/ (this script's folder) is on sys.path


def main() -> None:
    import open3d.ml.torch as ml3d

    data = np.load(sys.argv[1])
    repeat = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    knn_layer = ml3d.layers.KNNSearch(index_dtype=torch.int64)
    radius_layer = ml3d.layers.FixedRadiusSearch(index_dtype=torch.int64)
    out = {}
    for case in json.loads(str(data["cases"])):
        x = torch.from_numpy(data[case["x"]])
        y = torch.from_numpy(data[case["y"]])
        rx = torch.from_numpy(data[case["rx"]])
        ry = torch.from_numpy(data[case["ry"]])
        if case["op"] == "knn":
            fn = lambda x=x, y=y, k=case["k"], rx=rx, ry=ry: knn_layer(x, y, k, rx, ry)  # noqa: E731
        else:  # returns every neighbour within r (no cap), built on a spatial hash table
            fn = lambda x=x, y=y, r=case["r"], rx=rx, ry=ry: radius_layer(x, y, r, rx, ry)  # noqa: E731
        out[case["name"]] = median_time(fn, repeat=repeat, budget_s=float("inf"))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
