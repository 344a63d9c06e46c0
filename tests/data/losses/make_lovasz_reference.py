"""Write ``lovasz_reference.npz``: Pointcept's Lovasz-softmax loss on fixed logits.

Not run by the test suite: ``tests/tasks/test_losses.py`` reads the ``.npz`` it wrote. Run it
in an environment with torch (the PTv3 oracle side environment will do), pointing at a
Pointcept checkout or bare git directory; ``pointcept/models/losses/lovasz.py`` is read from
it at run time into a temporary directory outside the repository (with a stand-in for the
loss registry it imports), never copied into the repository::

    python tests/data/losses/make_lovasz_reference.py --pointcept /path/to/Pointcept

For every case it stores the logits ``{case}_logits [N, C]`` (float32: the reference's
``_lovasz_grad`` works in float32), the labels
``{case}_target [N]``, the ignored label ``{case}_ignore``, and the reference's loss value
``{case}_loss`` and gradient ``{case}_grad`` of
``LovaszLoss(mode="multiclass", ignore_index=...)``, and the same for
cross-entropy plus Lovasz (``criteria`` of Pointcept's PTv3 configs, weights 1 and 1):
``{case}_ce_lovasz_loss`` and ``{case}_ce_lovasz_grad``.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
LOVASZ = "pointcept/models/losses/lovasz.py"
BUILDER_STANDIN = """
class _Registry:
    def register_module(self, module=None, name=None, force=False):
        if module is not None:
            return module
        return lambda cls: cls


LOSSES = _Registry()
"""


def _read(pointcept: Path, path: str) -> str:
    if (pointcept / path).is_file():
        return (pointcept / path).read_text()
    return subprocess.run(
        ["git", "-C", str(pointcept), "show", f"HEAD:{path}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def load_reference(pointcept: Path, tmp: Path):
    package = tmp / "refloss"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "builder.py").write_text(BUILDER_STANDIN)
    (package / "lovasz.py").write_text(_read(pointcept, LOVASZ))
    sys.path.insert(0, str(tmp))
    spec = importlib.util.find_spec("refloss.lovasz")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cases() -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    rng = np.random.default_rng(20261207)
    out = {}
    # a batch with ignored points, every class present
    n, c = 300, 6
    logits = rng.normal(0, 2, (n, c)).astype(np.float32)
    target = rng.integers(0, c, n)
    target[rng.random(n) < 0.2] = -1
    out["mixed"] = (logits, target, -1)
    # classes 1 and 4 absent from the labels (they still receive probability mass)
    n, c = 200, 7
    logits = rng.normal(0, 1.5, (n, c)).astype(np.float32)
    target = rng.choice(np.array([0, 2, 3, 5, 6]), n)
    target[:17] = 255
    out["absent"] = (logits, target, 255)
    # one class present, no ignored points
    n, c = 50, 4
    out["single"] = (rng.normal(0, 1, (n, c)), np.full(n, 2), -100)
    # one labelled point
    n, c = 9, 3
    target = np.full(n, -1)
    target[4] = 1
    out["one_point"] = (rng.normal(0, 1, (n, c)), target, -1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pointcept", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=HERE / "lovasz_reference.npz")
    args = parser.parse_args()
    arrays: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        ref = load_reference(args.pointcept, Path(tmp))
        for name, (logits, target, ignore) in cases().items():
            for combined in (False, True):
                x = torch.tensor(logits, dtype=torch.float32, requires_grad=True)
                y = torch.tensor(target, dtype=torch.long)
                loss = ref.LovaszLoss(mode="multiclass", ignore_index=ignore)(x, y)
                if combined:
                    ce = torch.nn.CrossEntropyLoss(ignore_index=ignore)(x, y)
                    loss = ce * 1.0 + loss
                loss.backward()
                key = f"{name}_ce_lovasz" if combined else name
                arrays[f"{key}_loss"] = np.asarray(loss.detach().numpy())
                arrays[f"{key}_grad"] = x.grad.numpy()
            arrays[f"{name}_logits"] = logits.astype(np.float32)
            arrays[f"{name}_target"] = target.astype(np.int64)
            arrays[f"{name}_ignore"] = np.asarray(ignore, dtype=np.int64)
            print(f"{name}: lovasz {float(arrays[name + '_loss']):.10f}")
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
