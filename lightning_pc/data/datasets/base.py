"""Base dataset over a packed cache split: read rows memory-mapped, transform, emit ``Data``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset
from torch_geometric.data import Data

from lightning_pc.data.errors import CacheCorruptedError
from lightning_pc.data.packed import PackedArrays
from lightning_pc.data.seeding import sample_generator

TransformFn = Callable[[Data, "torch.Generator | None"], Data]


class PointDataset(Dataset):
    """Shared sample pipeline: build ``Data``, apply the transform, pack features into ``x``.

    Every sample also carries ``idx`` (``[1]``, its index in the dataset). A dataset that
    knows its source files exposes ``names``, indexed like the dataset: ``names[i]`` is the
    source of sample ``i``, and each sample carries it as ``source`` (a string; a list in a
    batch, see the batch schema in :mod:`lightning_pc.data.collate`): guards, prediction
    writers and evaluations name clouds by it.

    Args:
        transform: per-sample transform called as ``transform(data, generator)``.
        feature_keys: per-point attributes concatenated (in order) into ``x`` after the
            transform, then removed (e.g. ``("normal",)``); empty for no ``x``.

    Attributes:
        rank: global rank mixed into the per-sample seed (set by the data module).
    """

    def __init__(self, transform: TransformFn | None = None, feature_keys: Sequence[str] = ()):
        self.transform = transform
        self.feature_keys = tuple(feature_keys)
        self.rank = 0

    def __len__(self) -> int:
        raise NotImplementedError

    def raw_sample(self, index: int, generator: torch.Generator) -> Data:
        """The untransformed sample ``index``."""
        raise NotImplementedError

    def source(self, index: int) -> str | None:
        """``names[index]``: the sample's ``source`` (``None``: the dataset has no names)."""
        names = getattr(self, "names", None)
        return None if names is None else str(names[index])

    def __getitem__(self, index: int | tuple[int, int]) -> Data:
        sample_seed = None
        if isinstance(index, tuple):  # (index, seed) from EpochSampler
            index, sample_seed = index
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        generator = sample_generator(self.rank, sample_seed)
        data = self.raw_sample(index, generator)
        if self.transform is not None:
            data = self.transform(data, generator)
        if self.feature_keys:
            feats = [data[k].reshape(data.pos.size(0), -1) for k in self.feature_keys]
            for key in self.feature_keys:
                del data[key]
            x = torch.cat([data.x, *feats], dim=1) if data.x is not None else torch.cat(feats, 1)
            data.x = x
        # the sample's index, [1] per cloud ([B] in a batch): lets the tasks name the source
        # file of a cloud with non-finite values (not named *index*, which collate offsets)
        data.idx = torch.tensor([index])
        source = self.source(index)
        if source is not None:
            data.source = source
        return data


class PackedDataset(PointDataset):
    """A dataset over one split of a packed cache.

    Args:
        folder: split folder written by :class:`~lightning_pc.data.packed.PackedWriter`.
        point_keys: packed field -> ``Data`` attribute (e.g. ``{"pos": "pos", "part": "y"}``).
        sample_keys: per-sample field -> ``Data`` attribute (stored as a ``[1]`` tensor).
        num_points: points kept per sample (``None`` keeps all); clouds with fewer keep all.
        sampling: ``"random"`` (a random subset, training), ``"first"`` (the first
            ``num_points``, e.g. FPS-ordered releases) or ``"strided"`` (evenly spaced).
        transform: per-sample transform.
        feature_keys: attributes packed into ``x`` after the transform.
    """

    def __init__(
        self,
        folder: str | Path,
        point_keys: dict[str, str],
        sample_keys: dict[str, str] | None = None,
        num_points: int | None = None,
        sampling: Literal["random", "first", "strided"] = "random",
        transform: TransformFn | None = None,
        feature_keys: Sequence[str] = (),
    ) -> None:
        super().__init__(transform, feature_keys)
        self.store = PackedArrays(folder)
        self.point_keys = dict(point_keys)
        self.sample_keys = dict(sample_keys or {})
        self.samples = {key: self.store.sample(key) for key in self.sample_keys}
        self.num_points = num_points
        self.sampling = sampling

    def __len__(self) -> int:
        return len(self.store)

    @property
    def names(self) -> list[str]:
        """Sample names (raw file paths relative to the dataset root), ``names[i]`` for sample
        ``i``."""
        return self.store.names

    def rows(self, index: int, generator: torch.Generator) -> np.ndarray | None:
        """Which rows of sample ``index`` to read (``None`` for all)."""
        n = self.store.num_points(index)
        k = self.num_points
        if k is None or n <= k:
            return None
        if self.sampling == "random":
            rng = _numpy_rng(int(torch.randint(0, 1 << 62, (1,), generator=generator)))
            return rng.choice(n, k, replace=False)  # O(k) work, unlike randperm(n)
        if self.sampling == "first":
            return np.arange(k)
        return (np.arange(k) * n) // k

    def point_field(self, index: int, field: str, rows: np.ndarray | None) -> np.ndarray:
        """Point array ``field`` of cache row ``index``: a memory-mapped view of every point
        (``rows`` is ``None``), else a copy of ``rows``."""
        if rows is None:
            return self.store.view(index, field)
        return self.store.points(index, field, rows)

    def raw_sample(self, index: int, generator: torch.Generator) -> Data:
        rows = self.rows(index, generator)
        data = Data()
        for field, attr in self.point_keys.items():
            arr = self.point_field(index, field, rows)
            data[attr] = torch.from_numpy(torch_friendly(arr))
        for field, attr in self.sample_keys.items():
            data[attr] = torch.tensor([self.samples[field][index]])
        return self.check_finite(data, index)

    def check_finite(self, data: Data, sample: int) -> Data:
        """Refuse a sample with NaN or infinity in a float attribute.

        The builders reject non-finite input, so such values mean the cache's bytes changed
        after the build (the quick check on open does not read the big arrays; this costs a
        pass over the sample only).

        Raises:
            CacheCorruptedError: naming the cache split and the sample.
        """
        for key in self.point_keys.values():
            value = data[key]
            if value.is_floating_point():
                if not np.isfinite(value.numpy()).all():
                    raise CacheCorruptedError(
                        self.store.folder,
                        f"sample {sample} ({self.store.names[sample]!r}) has non-finite {key}; "
                        "`lightning-pc cache verify --full` sets the cache aside, the next "
                        "prepare_data() rebuilds it",
                    )
        return data


_PCG = np.random.PCG64(0)
_RNG = np.random.Generator(_PCG)


def _numpy_rng(seed: int) -> np.random.Generator:
    """A process-wide numpy generator re-seeded by setting its state (no SeedSequence hashing)."""
    state = _PCG.state
    state["state"] = {"state": seed, "inc": 0x5851F42D4C957F2D}
    state["has_uint32"], state["uinteger"] = 0, 0
    _PCG.state = state
    return _RNG


def torch_friendly(arr: np.ndarray) -> np.ndarray:
    """A writable array torch can take: 1-D small ints -> int64 labels, 2-D uint8 -> RGB in
    0-1 (float32), anything else copied as is (``arr`` may be a read-only memory map)."""
    if arr.dtype == np.uint8:
        if arr.ndim == 1:
            return arr.astype(np.int64)
        return np.multiply(arr, np.float32(1 / 255), dtype=np.float32)
    if arr.dtype in (np.int8, np.int16, np.int32, np.uint16):
        return arr.astype(np.int64)
    return np.array(arr, copy=not arr.flags.writeable or None, order="C")
