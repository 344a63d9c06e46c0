"""Collate: a list of per-cloud ``Data`` into the one packed batch every model takes.

The result is a PyG ``Batch`` identical to ``Batch.from_data_list`` (same attributes,
``batch``/``ptr`` and the slice/increment records that ``to_data_list`` needs), built with a
few vectorised operations. Inside a DataLoader worker the batch travels to the main process
as one shared-memory buffer instead of a dozen small tensors (each of which costs a
shared-memory segment and a file-descriptor transfer): that transfer, not the collation, was
what capped the loader at about half the rate of the workers.

Batch schema (``B`` clouds, ``N`` points in all):

=================  =============  ===========================================================
key                shape          meaning
=================  =============  ===========================================================
``pos``            ``[N, 3]``     coordinates (float32), after the transforms
``batch``          ``[N]``        cloud index of each point
``ptr``            ``[B + 1]``    offsets: cloud ``i`` is points ``ptr[i]:ptr[i + 1]``
``x``              ``[N, C]``     optional: per-point input features (RGB, intensity,
                                  normals ... in the data module's order)
``y``              ``[B]``/``[N]`` optional: class per cloud (classification) or per point
                                  (segmentation; ``ignore_index`` marks unlabelled points)
``idx``            ``[B]``        the cloud's sample index in its dataset (every dataset
                                  of :mod:`lightning_pc.data.datasets`)
``source``         ``list[str]``  optional, one per cloud: the cloud's source, its
                                  dataset's ``names[idx]``: a cached sample's raw file
                                  under the data root (a sample inside a file:
                                  ``file.h5:3``, ``Area_5/office_1``), the scan file of a
                                  scene fragment. Datasets without names (procedural
                                  shapes) leave it out.
``category``       ``[B]``        optional: object category (part segmentation)
``inverse_index``  ``[N_full]``   optional: each original point -> its kept point (voxel
                                  grid with ``keep_inverse``; offset like ``batch``)
``y_full``         ``[N_full]``   optional: the label of every original point
``room``           ``[B]``        optional: S3DIS cache row of the room
``source_rows``    ``[N_full]``   optional, scene fragments: each covered point's row in
                                  its scan (``inverse_index`` maps it to a kept point)
``num_fragments``  ``[B]``        optional, scene fragments: fragments of the scan
``scan_points``    ``[B]``        optional, scene fragments: points of the scan
=================  =============  ===========================================================

Attributes named ``*index*`` are offset by the points of the clouds before (PyG's rule);
tensors are concatenated along their first dimension (one-element tensors per cloud
become ``[B]``); strings become a list with one entry per cloud.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import get_worker_info
from torch_geometric.data import Batch, Data

_ALIGN = 8


def _increments(key: str) -> bool:
    return "index" in key or key == "face"  # PyG's default ``Data.__inc__``


def _fast_path_ok(samples: Sequence[Data]) -> bool:
    first = samples[0]
    if type(first) is not Data or getattr(first, "pos", None) is None:
        return False
    keys = set(first.keys())
    for d in samples:
        if type(d) is not Data or set(d.keys()) != keys:
            return False
        for key in keys:
            value = d[key]
            if isinstance(value, str) and isinstance(first[key], str):
                continue  # one string per cloud (``source``): a list in the batch
            if not torch.is_tensor(value) or value.is_sparse:
                return False
            if _increments(key) and value.dim() > 1:
                return False  # PyG concatenates these along the last dimension
    return "batch" not in keys and "ptr" not in keys


Values = dict[str, "torch.Tensor | list[str]"]


def _collate_tensors(samples: Sequence[Data]) -> tuple[Values, dict[str, torch.Tensor]]:
    """Concatenate every attribute; return the values and each tensor's per-sample sizes
    (strings: a list, one per sample)."""
    counts = torch.tensor([d.pos.size(0) for d in samples])
    values: Values = {}
    sizes: dict[str, torch.Tensor] = {"__nodes__": counts}
    # the store's own (insertion) order, as PyG's collate takes it: ``Data.keys()`` comes out
    # of a set, in an order that changes with the interpreter's string hash seed
    for key in samples[0].stores[0].keys():
        if isinstance(samples[0][key], str):
            values[key] = [d[key] for d in samples]
            continue
        parts = [d[key] if d[key].dim() else d[key].unsqueeze(0) for d in samples]
        if _increments(key):
            offsets = torch.cumsum(counts, 0) - counts
            parts = [p + int(o) for p, o in zip(parts, offsets)]
        values[key] = parts[0] if len(parts) == 1 else torch.cat(parts, 0)
        sizes[key] = torch.tensor([p.size(0) for p in parts])
    return values, sizes


def _offsets(sizes: torch.Tensor) -> torch.Tensor:
    """``[0, s0, s0 + s1, ...]`` (``[B + 1]``)."""
    out = np.zeros(sizes.numel() + 1, dtype=np.int64)
    np.cumsum(sizes.numpy(), out=out[1:])
    return torch.from_numpy(out)


def _build_batch(values: Values, sizes: dict[str, torch.Tensor]) -> Batch:
    # numpy for the index arithmetic: in the main process, torch's intra-op threads would
    # spin after each small parallel op and steal the cores the loader workers need.
    counts = sizes["__nodes__"]
    num = counts.numel()
    out = Batch(_base_cls=Data)
    ptr = _offsets(counts)
    slice_dict: dict[str, torch.Tensor] = {}
    inc_dict: dict[str, torch.Tensor | None] = {}
    zeros = torch.zeros(num, dtype=torch.long)
    for key, value in values.items():
        out[key] = value
        if isinstance(value, list):  # as PyG collates a non-tensor: sliced per cloud
            slice_dict[key] = torch.arange(num + 1)
            inc_dict[key] = None
            continue
        slice_dict[key] = _offsets(sizes[key])
        inc_dict[key] = ptr[:-1] if _increments(key) else zeros
    out.batch = torch.from_numpy(np.repeat(np.arange(num, dtype=np.int64), counts.numpy()))
    out.ptr = ptr
    out._num_graphs = num
    out._slice_dict = slice_dict
    out._inc_dict = inc_dict
    return out


def _unpack(
    buffer: torch.Tensor,
    layout: list[tuple[str, str, torch.dtype, list[int], int]],
    strings: dict[str, list[str]] | None = None,
    order: list[str] | None = None,
) -> Batch:
    values: Values = {}
    sizes: dict[str, torch.Tensor] = {}
    for group, key, dtype, shape, offset in layout:
        numel = 1
        for s in shape:
            numel *= s
        nbytes = numel * torch.empty((), dtype=dtype).element_size()
        tensor = buffer[offset : offset + nbytes].view(dtype).view(shape)
        (values if group == "v" else sizes)[key] = tensor
    if strings:
        values.update(strings)
    if order is not None:
        values = {key: values[key] for key in order}  # the samples' attribute order
    return _build_batch(values, sizes)


class PackedBatch:
    """A collated batch on its way out of a DataLoader worker: all tensors in one buffer.

    Unpickling it (in the main process) returns a PyG ``Batch``.
    """

    def __init__(self, values: Values, sizes: dict[str, torch.Tensor]) -> None:
        self.values, self.sizes = values, sizes

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        layout = []
        offset = 0
        tensors = {k: v for k, v in self.values.items() if torch.is_tensor(v)}
        strings = {k: v for k, v in self.values.items() if not torch.is_tensor(v)}
        items = [(g, k, t) for g, ts in (("v", tensors), ("s", self.sizes)) for k, t in ts.items()]
        for group, key, t in items:
            layout.append((group, key, t.dtype, list(t.shape), offset))
            nbytes = t.numel() * t.element_size()
            offset += nbytes + (-nbytes) % _ALIGN
        # Written straight into shared memory: pickling then moves no bytes.
        buffer = torch.empty(offset, dtype=torch.uint8)
        buffer.share_memory_()
        for (_, _, t), (_, _, _, _, start) in zip(items, layout):
            raw = t.contiguous().reshape(-1).view(torch.uint8)
            buffer[start : start + raw.numel()] = raw
        if not strings:
            return _unpack, (buffer, layout)
        return _unpack, (buffer, layout, strings, list(self.values))

    def to_batch(self) -> Batch:
        """The PyG ``Batch`` (without the round trip through pickling)."""
        return _build_batch(self.values, self.sizes)


def collate(samples: Sequence[Data]) -> Batch:
    """Pack clouds of any sizes into a PyG ``Batch``.

    The batch has ``pos [N, 3]``, optional ``x [N, C]``, ``y`` (``[B]`` per cloud or ``[N]``
    per point), ``batch [N]`` (cloud index of each point) and ``ptr [B + 1]`` (offsets), and
    the optional keys of the module's batch schema (``idx``, ``source``, ``category`` ...).
    Attributes named ``*index*`` (e.g. ``inverse_index`` from
    :class:`~lightning_pc.data.transforms.GridSubsample`) are offset by the points of the
    clouds before, as in PyG; string attributes become a list, one per cloud.

    Args:
        samples: clouds with the same attributes.

    Returns:
        The packed batch (inside a DataLoader worker, an object that unpickles into it).
    """
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    if not _fast_path_ok(samples):
        return Batch.from_data_list(list(samples))
    values, sizes = _collate_tensors(samples)
    packed = PackedBatch(values, sizes)
    if get_worker_info() is not None:
        return packed  # type: ignore[return-value]
    return packed.to_batch()


def merge_clouds(first: Data, second: Data) -> Data:
    """One cloud made of two: every per-point attribute of ``first`` followed by that of
    ``second``; the per-cloud attributes (``idx``, ``source``, ``category`` ...) are
    ``first``'s. Both clouds must have the same attributes."""
    if set(first.keys()) != set(second.keys()):
        raise ValueError(
            f"cannot merge clouds with different attributes: {sorted(first.keys())} and "
            f"{sorted(second.keys())}"
        )
    n1, n2 = first.pos.size(0), second.pos.size(0)
    out = Data()
    for key in first.stores[0].keys():
        a, b = first[key], second[key]
        per_point = (
            torch.is_tensor(a)
            and torch.is_tensor(b)
            and a.dim() >= 1
            and b.dim() >= 1
            and a.size(0) == n1
            and b.size(0) == n2
            and key not in _PER_CLOUD
        )
        if per_point and _increments(key):
            raise ValueError(
                f"cannot merge clouds holding {key!r} (an index into the cloud's points): "
                "Mix3D mixes training clouds, before any inverse map is made"
            )
        out[key] = torch.cat([a, b], 0) if per_point else a
    return out


#: per-cloud attributes of the batch schema, kept from the first cloud by merge_clouds (a
#: cloud of one point would otherwise look per-point)
_PER_CLOUD = frozenset({"idx", "category", "room", "num_fragments", "scan_points"})


class Mix3DCollate:
    """:func:`collate` with Mix3D (Nekrasov et al. 2021): with probability ``mix_prob``, the
    clouds of a batch are merged in consecutive pairs (0 with 1, 2 with 3, ...; an odd last
    cloud stays alone) before collation, as Pointcept's ``point_collate_fn(batch, mix_prob)``
    concatenates pairs of scenes, so a batch of ``B`` clouds holds ``ceil(B / 2)`` mixed
    scenes. The scenes keep their own coordinates: centre them in the transforms (e.g.
    ``CenterShift(apply_z=False)`` last, as Pointcept's recipes) so that they overlap.

    The draw is made from the run's seed (``seed_everything``) and the batch's sample
    indices (``idx``), so it is the same in a resumed run as in an uninterrupted one;
    batches without ``idx`` draw from the process's torch generator.

    Args:
        mix_prob: probability of mixing a batch.
    """

    def __init__(self, mix_prob: float) -> None:
        if not 0 <= mix_prob <= 1:
            raise ValueError(f"mix_prob must be a probability in [0, 1], got {mix_prob}")
        self.mix_prob = mix_prob

    def _draw(self, samples: Sequence[Data]) -> float:
        from lightning_pc.data.seeding import _mix, current_rank, global_seed

        idx = [getattr(d, "idx", None) for d in samples]
        if not all(torch.is_tensor(i) for i in idx):
            return float(torch.rand(1).item())
        seed = _mix(global_seed(), current_rank())
        for i in idx:
            assert isinstance(i, torch.Tensor)
            for v in i.reshape(-1).tolist():
                seed = _mix(seed, int(v))
        return float(torch.rand(1, generator=torch.Generator().manual_seed(seed)).item())

    def __call__(self, samples: Sequence[Data]) -> Batch:
        if len(samples) > 1 and self.mix_prob > 0 and self._draw(samples) < self.mix_prob:
            pairs = [
                merge_clouds(samples[i], samples[i + 1]) for i in range(0, len(samples) - 1, 2)
            ]
            samples = pairs + ([samples[-1]] if len(samples) % 2 else [])
        return collate(samples)

    def __repr__(self) -> str:
        return f"Mix3DCollate(mix_prob={self.mix_prob})"
