"""The point structure: one packed batch of clouds, as every network takes it.

A :class:`Point` holds the packed rows of a batch of clouds (``pos`` [N, 3], optional
features ``x`` [N, C], the cloud index ``batch`` [N] and the offsets ``ptr`` [B + 1]) and
computes on demand what the network families need from them:

- :meth:`Point.grid`: integer grid coordinates at a voxel size (cached per size and origin);
- :meth:`Point.voxelize`: the voxels of the batch as a new :class:`Point` (one row per
  occupied voxel, its ``grid_coord``, and ``inverse``, the voxel of every input point);
- :meth:`Point.serialization`: space-filling-curve codes and orders of a voxel
  :class:`Point` (:mod:`lightning_pc.nn.serialization`); a point may carry one as
  :attr:`Point.serialized` (:meth:`Point.with_serialization`), the order PTv3's attention
  and pooling read at that level;
- :meth:`Point.sparse_tensor`: the :class:`~lightning_pc.nn.sparse.SparseTensor` view of a
  voxel :class:`Point`, for the sparse convolutions.

A PyG ``Batch`` (or ``Data``, or any object with ``pos``, ``x``, ``batch``, ``ptr``) becomes
a :class:`Point` in one place, :func:`as_point`, which every network calls at its entry, so
``model(batch)`` keeps working. Backbones return a :class:`Point` whose ``x`` holds their
features (:meth:`Point.with_features`), and the heads of :mod:`lightning_pc.models.heads`
read it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import torch
from torch import Tensor

from lightning_pc.nn.segment import lengths_from_ptr, ptr_from_index
from lightning_pc.nn.serialization import serialize, serialize_voxels
from lightning_pc.nn.sparse.tensor import Reduce, SparseTensor, voxelize

Origin = Literal["zero", "cloud_min"]
"""Where the grid of :meth:`Point.grid` starts: at the coordinate origin (``floor(pos / s)``,
shared by the clouds), or at each cloud's minimum corner (``floor((pos - min) / s)``,
non-negative, as Pointcept's ``GridSample`` and PTv3's serialisation need)."""

T = TypeVar("T")


@dataclass(frozen=True)
class Serialization:
    """Space-filling-curve orders of the rows of a voxel :class:`Point`.

    Attributes:
        depth: [] ``int64`` bits per grid axis of the codes (a tensor: it is read from the
            data, and so stays inside a compiled graph).
        code: [K, N] codes, one row per order (the cloud index in the high bits).
        order: [K, N] permutation sorting each row of ``code``.
        inverse: [K, N] inverse of ``order``.
    """

    depth: Tensor
    code: Tensor
    order: Tensor
    inverse: Tensor

    def shuffled(self) -> Serialization:
        """The same serialisations in a random order (PTv3's per-level order shuffle)."""
        perm = torch.randperm(self.code.size(0)).to(self.code.device)
        return Serialization(self.depth, self.code[perm], self.order[perm], self.inverse[perm])


class Point:
    """A packed batch of point clouds (rows of every cloud back to back, clouds in order).

    Build one with :func:`as_point` from a PyG batch, or directly.

    Args:
        pos: [N, 3] coordinates.
        x: [N, C] features, or ``None``.
        batch: [N] cloud index, sorted; from ``ptr`` when omitted (all zeros without ``ptr``).
        ptr: [B + 1] offsets of the clouds; from ``batch`` when omitted.
        category: [B] object category of each cloud (part segmentation), or ``None``.
        grid_coord: [N, 3] ``int64`` grid coordinates of the rows, for a voxel point.
        grid_size: voxel edge of ``grid_coord``.
        inverse: [M] row of this point for each row of the point it was voxelised from.
        sparse: the sparse tensor on ``(batch, grid_coord)`` (its kernel-map cache is shared
            by every view of this point).
        serialized: the serialisation of the rows a network reads at this level (PTv3), or
            ``None`` (see :meth:`with_serialization`).
    """

    def __init__(
        self,
        pos: Tensor,
        x: Tensor | None = None,
        batch: Tensor | None = None,
        ptr: Tensor | None = None,
        *,
        category: Tensor | None = None,
        grid_coord: Tensor | None = None,
        grid_size: float | None = None,
        inverse: Tensor | None = None,
        sparse: SparseTensor | None = None,
        serialized: Serialization | None = None,
    ) -> None:
        self.pos = pos
        self.x = x
        self.category = category
        self.grid_coord = grid_coord
        self.grid_size = grid_size
        self.inverse = inverse
        self.serialized = serialized
        self._batch = batch
        self._ptr = ptr
        self._sparse = sparse
        self._pos_x: Tensor | None = None
        self._cache: dict[tuple[Any, ...], Any] = {}

    # --- packing ---------------------------------------------------------------------
    @property
    def batch(self) -> Tensor:
        """[N] cloud index of every row."""
        if self._batch is None:
            if self._ptr is None:
                self._batch = torch.zeros(self.num_rows, dtype=torch.long, device=self.pos.device)
            else:
                clouds = torch.arange(self._ptr.numel() - 1, device=self.pos.device)
                self._batch = torch.repeat_interleave(clouds, lengths_from_ptr(self._ptr))
        return self._batch

    @property
    def ptr(self) -> Tensor:
        """[B + 1] offsets: cloud ``b`` holds rows ``ptr[b]:ptr[b + 1]``."""
        if self._ptr is None:
            batch = self.batch
            num_clouds = int(batch.max()) + 1 if batch.numel() else 0
            self._ptr = ptr_from_index(batch, num_clouds)
        return self._ptr

    @property
    def num_rows(self) -> int:
        """Rows (points, or voxels) of the batch."""
        return self.pos.size(0)

    @property
    def num_clouds(self) -> int:
        """Clouds of the batch (some may have no row)."""
        return self.ptr.numel() - 1

    @property
    def pos_x(self) -> Tensor:
        """[N, 3 + C] coordinates and features side by side (``pos`` alone without ``x``)."""
        if self._pos_x is None:
            self._pos_x = self.pos if self.x is None else torch.cat([self.pos, self.x], 1)
        return self._pos_x

    def features(self, in_channels: int) -> Tensor | None:
        """The features a network built for ``in_channels`` reads: ``x`` checked to be
        [N, in_channels], or ``None`` when ``in_channels`` is 0 (``x`` is then ignored).

        Raises:
            ValueError: ``x`` missing or of another width.
        """
        if in_channels <= 0:
            return None
        x = self.x
        if x is None or x.dim() != 2 or x.size(1) != in_channels:
            raise ValueError(
                f"the model was built for in_channels={in_channels} point features, "
                f"got batch.x of shape {getattr(x, 'shape', None)}"
            )
        return x

    def for_channels(self, in_channels: int) -> Point:
        """The point as a network built for ``in_channels`` features reads it: ``x`` checked
        (see :meth:`features`), or dropped when ``in_channels`` is 0."""
        x = self.features(in_channels)
        return self if x is self.x else self.with_features(x)

    def with_features(self, x: Tensor | None) -> Point:
        """The same rows (clouds, grid, inverse map, sparse sites) carrying features ``x``."""
        if x is not None and x.size(0) != self.num_rows:
            raise ValueError(f"expected features of {self.num_rows} rows, got {x.size(0)}")
        out = Point(
            self.pos,
            x,
            self._batch,
            self._ptr,
            category=self.category,
            grid_coord=self.grid_coord,
            grid_size=self.grid_size,
            inverse=self.inverse,
            sparse=self._sparse,
            serialized=self.serialized,
        )
        # what depends on the rows alone carries over; voxels reduce the old features
        out._cache = {k: v for k, v in self._cache.items() if k[0] != "voxelize"}
        return out

    def with_serialization(self, serialized: Serialization) -> Point:
        """The same rows and features carrying ``serialized`` (see :meth:`serialization`)
        as :attr:`serialized`, the order the next layers read."""
        out = self.with_features(self.x)
        out._pos_x = self._pos_x
        out.serialized = serialized
        return out

    def cached(self, key: tuple[Any, ...], compute: Callable[[], T]) -> T:
        """``compute()``, computed once per ``key`` for these rows: what depends on the rows
        alone (not on ``x``), such as attention patch plans. Views made by
        :meth:`with_features` start with the values computed so far."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]  # type: ignore[no-any-return]

    @classmethod
    def from_sparse(
        cls, sparse: SparseTensor, num_clouds: int, voxel_size: float, inverse: Tensor | None = None
    ) -> Point:
        """The sites of a sparse tensor (any stride) as a voxel point: ``x`` its features,
        ``pos`` the voxel centres of a grid that starts at the origin (``origin="zero"``).

        Args:
            sparse: the tensor; its sites must be sorted by cloud (as voxelisation and
                strided convolutions leave them).
            num_clouds: clouds of the batch.
            voxel_size: voxel edge of the stride-1 grid.
            inverse: the site of every input point (stride 1 only).
        """
        sites = sparse.coords.long()
        batch = sites[:, 0].contiguous()
        size = float(voxel_size) * sparse.stride
        return cls(
            (sites[:, 1:].to(sparse.feats.dtype) + 0.5) * size,
            sparse.feats,
            batch,
            ptr_from_index(batch, num_clouds),
            grid_coord=sites[:, 1:],
            grid_size=size,
            inverse=inverse,
            sparse=sparse,
        )

    # --- grids and voxels ------------------------------------------------------------
    def _local(self, origin: Origin) -> Tensor:
        if origin == "zero":
            return self.pos
        if origin != "cloud_min":
            raise ValueError(f"origin must be 'zero' or 'cloud_min', got {origin!r}")
        key = ("cloud_min",)
        if key not in self._cache:
            # the offsets only feed ``floor`` (zero gradient): the op sees no autograd input
            self._cache[key] = cloud_min_offsets(self.pos.detach(), self.batch, self.num_clouds)
        return self._cache[key]  # type: ignore[no-any-return]

    def grid(self, voxel_size: float, origin: Origin = "zero") -> Tensor:
        """[N, 3] ``int64`` grid coordinates ``floor((pos - o) / voxel_size)`` (cached), with
        ``o`` the coordinate origin or each cloud's minimum (see :data:`Origin`)."""
        _check_size(voxel_size)
        key = ("grid", float(voxel_size), origin)
        if key not in self._cache:
            self._cache[key] = torch.floor(self._local(origin) / voxel_size).long()
        return self._cache[key]  # type: ignore[no-any-return]

    def voxelize(
        self, voxel_size: float, reduce: Reduce = "mean", origin: Origin = "zero"
    ) -> Point:
        """The occupied voxels of the batch, as a :class:`Point` (cached per arguments).

        Each voxel's ``pos`` and ``x`` reduce those of its points (``mean``, ``max``, or the
        ``first`` point's); its ``grid_coord`` is its grid cell (:meth:`grid`); voxels are
        sorted by cloud, then by grid cell; ``inverse`` [N] is the voxel of every point.

        Raises:
            ValueError: a non-positive voxel size, NaN coordinates with
                ``origin="cloud_min"``, or coordinates too far out for the sparse keys.
        """
        _check_size(voxel_size)
        key = ("voxelize", float(voxel_size), reduce, origin)
        if key not in self._cache:
            feats = (
                self.pos if self.x is None else torch.cat([self.pos, self.x.to(self.pos.dtype)], 1)
            )
            sparse, inverse = voxelize(self._local(origin), feats, self.batch, voxel_size, reduce)
            reduced = sparse.feats  # [M, 3 + C]
            sites = sparse.coords.long()
            batch = sites[:, 0].contiguous()
            vox = Point(
                reduced[:, :3],
                None if self.x is None else reduced[:, 3:],
                batch,
                ptr_from_index(batch, self.num_clouds),
                category=self.category,
                grid_coord=sites[:, 1:],
                grid_size=float(voxel_size),
                inverse=inverse,
                sparse=sparse,
            )
            vox._pos_x = reduced
            self._cache[key] = vox
        return self._cache[key]  # type: ignore[no-any-return]

    def _require_grid(self, what: str) -> Tensor:
        if self.grid_coord is None:
            raise ValueError(f"{what} needs grid coordinates: call voxelize(voxel_size) first")
        return self.grid_coord

    def sparse_tensor(self, feats: Tensor | None = None) -> SparseTensor:
        """The sparse-tensor view of a voxel point: sites ``(batch, grid_coord)``, features
        ``feats`` (default :attr:`pos_x`). Views share one kernel-map cache."""
        grid = self._require_grid("sparse_tensor()")
        feats = self.pos_x if feats is None else feats
        if self._sparse is None:
            coords = torch.cat([self.batch.view(-1, 1).long(), grid.long()], 1)
            self._sparse = SparseTensor(coords, feats)
            return self._sparse
        return self._sparse.replace(feats)

    def serialization(
        self, orders: tuple[str, ...] | list[str], depth: int | None = None, shuffle: bool = False
    ) -> Serialization:
        """Space-filling-curve codes of the rows of a voxel point (non-negative grid,
        ``origin="cloud_min"``), one per order (``z``, ``z-trans``, ``hilbert``,
        ``hilbert-trans``); cached unless ``shuffle`` puts the orders in a random order.

        Without ``depth`` this runs as one custom op
        (:func:`~lightning_pc.nn.serialization.serialize_voxels`), so ``torch.compile``
        traces it without a graph break (PTv3's path).

        Args:
            orders: serialisation orders.
            depth: bits per axis; the smallest that holds the grid when ``None``.
            shuffle: permute the orders (PTv3 in training).

        Raises:
            ValueError: no grid (not a voxel point), an unknown order, or a grid that does
                not fit ``depth`` bits (see :func:`~lightning_pc.nn.serialization.encode`).
        """
        grid = self._require_grid("serialization()")
        key = ("serialization", tuple(orders), depth)
        if key not in self._cache:
            if depth is None:
                code, order, inverse, d = serialize_voxels(grid, self.batch, ",".join(orders))
            else:
                code, order, inverse = serialize(grid, self.batch, depth, tuple(orders))
                d = torch.tensor(depth, device=grid.device)
            self._cache[key] = Serialization(d, code, order, inverse)
        s: Serialization = self._cache[key]
        return s.shuffled() if shuffle else s

    def __repr__(self) -> str:
        width = 0 if self.x is None else self.x.size(1)
        grid = "" if self.grid_size is None else f", grid_size={self.grid_size}"
        return f"Point(rows={self.num_rows}, clouds={self.num_clouds}, channels={width}{grid})"


@torch.library.custom_op("lightning_pc::cloud_min_offsets", mutates_args=())
def cloud_min_offsets(pos: Tensor, batch: Tensor, num_clouds: int) -> Tensor:
    """``pos - min_cloud(pos)`` [N, 3]: each point's offset from its cloud's minimum corner.

    A custom op so that the finite-coordinate check, which reads the data, runs eagerly inside
    its kernel and ``torch.compile`` / ``torch.export`` trace it without a graph break.

    Raises:
        ValueError: NaN or infinite coordinates.
    """
    if not bool(torch.isfinite(pos).all()):
        raise ValueError("batch.pos holds NaN or infinite coordinates")
    lo = pos.new_full((num_clouds, 3), float("inf"))
    index = batch.view(-1, 1).expand_as(pos)
    lo = lo.scatter_reduce(0, index, pos, reduce="amin")
    return pos - lo[batch]


@cloud_min_offsets.register_fake
def _cloud_min_offsets_fake(pos: Tensor, batch: Tensor, num_clouds: int) -> Tensor:
    return torch.empty_like(pos)


def _check_size(voxel_size: float) -> None:
    if not voxel_size > 0:
        raise ValueError(f"voxel size must be positive, got {voxel_size}")


def as_point(data: Any) -> Point:
    """The one conversion from a batch to a :class:`Point` (a :class:`Point` is returned as is).

    Reads ``pos``, ``x``, ``batch``, ``ptr`` and ``category`` of a PyG ``Batch`` or ``Data``
    (or of any object with those attributes); ``batch`` and ``ptr`` default to one cloud.

    Raises:
        ValueError: ``pos`` missing or not [N, 3].
    """
    if isinstance(data, Point):
        return data
    pos = getattr(data, "pos", None)
    if pos is None or pos.dim() != 2 or pos.size(1) != 3:
        raise ValueError(f"expected batch.pos of shape [N, 3], got {getattr(pos, 'shape', None)}")
    batch = getattr(data, "batch", None)
    ptr = getattr(data, "ptr", None)
    if batch is None and ptr is None:
        batch = torch.zeros(pos.size(0), dtype=torch.long, device=pos.device)
    return Point(
        pos,
        getattr(data, "x", None),
        batch,
        ptr,
        category=getattr(data, "category", None),
    )
