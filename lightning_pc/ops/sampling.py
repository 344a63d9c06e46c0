"""Farthest point sampling with torch-cluster's signature and a reproducible random start."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lightning_pc.ops._backend import Call, resolve
from lightning_pc.ops._checks import check_points, num_clouds, require_tensors, sort_clouds


def num_samples(counts: Tensor, ratio: float | Tensor) -> Tensor:
    """``ceil(n * ratio)`` per cloud, computed in float32 exactly as torch-cluster does."""
    r = ratio if isinstance(ratio, Tensor) else torch.tensor(float(ratio))
    return (counts.to(torch.float32) * r.to(torch.float32).cpu()).ceil().to(torch.long)


def fps(
    src: Tensor,
    batch: Tensor | None = None,
    ratio: float | Tensor | None = 0.5,
    random_start: bool = True,
    batch_size: int | None = None,
    ptr: Tensor | list[int] | None = None,
    *,
    backend: str | None = None,
) -> Tensor:
    r"""Farthest point sampling: iteratively picks the point farthest from those picked.

    Each cloud keeps ``ceil(n * ratio)`` points. The first pick is the cloud's first point,
    or with ``random_start`` a uniformly random one drawn from torch's global generator, so
    ``torch.manual_seed`` makes the result reproducible on every backend (torch-cluster's
    CPU kernel draws from C ``rand()`` instead).

    Args:
        src: ``[N, D]`` points (half precision is sampled in float32).
        batch: ``[N]`` cloud index per point (need not be sorted).
        ratio: fraction kept, in ``(0, 1]``: a float, a one-element tensor or a ``[B]``
            tensor (one per cloud); ``None`` means 0.5, as in torch-cluster.
        random_start: start each cloud at a random point instead of its first.
        batch_size: number of clouds, if known.
        ptr: ``[B + 1]`` offsets of sorted clouds (a tensor or a list of ints), an
            alternative to ``batch``.
        backend: force a backend.

    Returns:
        ``[S]`` indices into ``src``, cloud by cloud, each cloud's in pick order.
    """
    require_tensors(src=src, batch=batch)
    if ratio is None:
        ratio = 0.5
    if not isinstance(ratio, Tensor) and not 0.0 < float(ratio) <= 1.0:
        raise ValueError(f"ratio must lie in (0, 1], got {ratio}")
    if ptr is not None and batch is not None:
        raise ValueError("pass either batch or ptr, not both")
    if ptr is not None and not isinstance(ptr, Tensor):
        ptr = torch.as_tensor(ptr)
    ratio_t = ratio if isinstance(ratio, Tensor) else None
    ratio_f = 0.5 if isinstance(ratio, Tensor) else float(ratio)
    return fps_op(src, batch, ptr, ratio_f, ratio_t, bool(random_start), batch_size, backend)


@torch.library.custom_op("lightning_pc::fps", mutates_args=())
def fps_op(
    src: Tensor,
    batch: Tensor | None,
    ptr: Tensor | None,
    ratio: float,
    ratio_t: Tensor | None,
    random_start: bool,
    batch_size: int | None,
    backend: str | None,
) -> Tensor:
    """The custom op behind :func:`fps` (``ratio_t``, where given, replaces ``ratio``): all
    data checks, the random start and the backend dispatch run in here, eagerly."""
    src = check_points("src", src)
    r: float | Tensor = ratio
    if ratio_t is not None:
        if ratio_t.numel() == 0 or bool(((ratio_t <= 0) | (ratio_t > 1)).any()):
            raise ValueError("every ratio must lie in (0, 1]")
        r = ratio_t
    if ptr is not None:
        offsets = ptr.cpu()
        if offsets.dim() != 1 or offsets.numel() < 2 or offsets.dtype.is_floating_point:
            raise ValueError(
                f"ptr must be a 1-D list or tensor of B + 1 integer offsets, got {ptr.tolist()}"
            )
        counts = (offsets[1:] - offsets[:-1]).long()
        if int(offsets[0]) != 0 or int(offsets[-1]) != src.size(0) or bool((counts < 0).any()):
            raise ValueError(
                f"ptr must be ascending offsets from 0 to {src.size(0)}, got {offsets.tolist()}"
            )
        batch = torch.repeat_interleave(torch.arange(counts.numel()), counts).to(src.device)
        batch_size = counts.numel()
    size = num_clouds(batch, batch_size=batch_size)
    clouds = sort_clouds("src", src, batch, size)
    counts = clouds.counts()
    if isinstance(r, Tensor) and r.numel() not in (1, size):
        raise ValueError(f"ratio has {r.numel()} entries for {size} clouds")
    m = num_samples(counts, r)
    if random_start:
        start = (torch.rand(size) * counts).long().clamp_max((counts - 1).clamp_min(0))
    else:
        start = torch.zeros(size, dtype=torch.long)
    if src.size(0) == 0:
        return torch.empty(0, dtype=torch.long, device=src.device)
    call = Call(src.device, clouds.pos.dtype, clouds.pos.numel())
    idx = resolve("fps", call, backend)(clouds, m, r, start)
    return clouds.original(idx)


@fps_op.register_fake
def _fps_fake(src: Tensor, *_: Any) -> Tensor:
    num_samples = torch.library.get_ctx().new_dynamic_size()
    return src.new_empty((num_samples,), dtype=torch.long)
