"""Precise evaluation of whole scenes: fragments, test-time augmentation, votes on every point.

The ``test/miou`` of :class:`~lightning_pc.tasks.SemanticSegmentationTask` is computed on
what the network sees: each scene voxelised once (one point kept per voxel), the kept
point's prediction copied to the other points of its voxel. :class:`PreciseSceneEvaluation`
adds Pointcept's "precise evaluation" beside it, logged as ``{split}/miou_precise``,
``{split}/oa_precise`` and ``{split}/iou_precise_<class>``:

1. every scene is cut into overlapping square blocks in x-y
   (:class:`~lightning_pc.data.datasets.scenes.ScanBlocks`, as whole-scan prediction cuts
   scans; ``block_size``, ``stride`` apart; by default the data module's training crop size,
   or the whole scene for data modules that train on whole scenes), each moved like a
   training crop (x-y centre of its bounding box to the origin, its floor to ``z = 0``);
2. every block is augmented by each view of ``tta`` (rotation about z, flips, scale);
3. each view is grid-sampled in passes: pass ``i`` keeps the ``i``-th point of every voxel
   (cycling through the points of voxels with fewer), so with the default
   ``voxel_passes=None`` every point is, in some pass, a point the network sees;
4. the class probabilities (softmax) of every pass are added to the points the pass kept;
   points that no pass keeps (only when ``voxel_passes`` is smaller than the fullest voxel)
   receive the probabilities of their voxel's kept point instead;
5. the predicted class of each original point is the arg-max of its summed votes, scored
   against its own label (points labelled ``ignore_index`` left out).

Scenes are produced one at a time from the test (or validation) dataset's untransformed
samples, so memory holds one scene, its votes (``[N, num_classes]`` float32) and one batch of
fragments. Under DDP scene ``k`` goes to rank ``k mod world_size``; the confusion matrices
are summed over the ranks once, at the end, so every scene counts once.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, Literal, NamedTuple, TypedDict

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torch_geometric.data import Data
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from lightning_pc.data.collate import collate
from lightning_pc.data.datasets.scenes import ScanBlocks
from lightning_pc.data.grid import voxel_sort

Split = Literal["val", "test"]
#: passes per fragment above which ``voxel_passes=None`` warns
MANY_PASSES = 64


class TTAView(TypedDict, total=False):
    """One test-time view of a fragment: rotation about z (degrees), then a flip (``"x"``
    negates x, ``"y"`` negates y, ``"xy"`` both), then an isotropic scale. Missing keys:
    no rotation, no flip, scale 1."""

    rotate: float
    flip: Literal["x", "y", "xy"] | None
    scale: float


def view_matrix(view: TTAView) -> np.ndarray:
    """The ``[3, 3]`` linear map of ``view`` (applied as ``pos @ matrix.T``).

    Raises:
        ValueError: an unknown key, flip, or a non-positive or non-finite scale / angle.
    """
    unknown = set(view) - {"rotate", "flip", "scale"}
    if unknown:
        raise ValueError(f"unknown TTA view keys {sorted(unknown)}; use rotate, flip, scale")
    angle, flip, scale = view.get("rotate", 0.0), view.get("flip"), view.get("scale", 1.0)
    if not math.isfinite(angle):
        raise ValueError(f"TTA rotate must be a finite angle in degrees, got {angle}")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"TTA scale must be positive, got {scale}")
    if flip not in (None, "x", "y", "xy"):
        raise ValueError(f"TTA flip must be 'x', 'y', 'xy' or null, got {flip!r}")
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    if angle % 90 == 0:  # exact quarter turns: no 6e-17 leaking into the other axis
        c, s = round(c), round(s)
    matrix = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    signs = np.array(
        [-1.0 if "x" in (flip or "") else 1.0, -1.0 if "y" in (flip or "") else 1.0, 1.0]
    )
    return scale * signs[:, None] * matrix


class VoxelGroups(NamedTuple):
    """The points of a cloud grouped by voxel: ``order`` sorts the points by voxel,
    ``starts``/``counts`` delimit each voxel's run in that order, ``voxel [n]`` is each
    point's voxel and ``rank [n]`` its place among its voxel's points."""

    order: np.ndarray
    starts: np.ndarray
    counts: np.ndarray
    voxel: np.ndarray
    rank: np.ndarray

    def kept(self, i: int) -> np.ndarray:
        """Pass ``i``: one point per voxel (the ``i mod count``-th), in voxel order."""
        return self.order[self.starts + i % self.counts]


def voxel_groups(pos: np.ndarray, voxel_size: float) -> VoxelGroups:
    """Group ``pos [n, 3]`` by voxels of edge ``voxel_size`` (grid anchored at the minimum);
    points of a voxel stay in their input order."""
    n = len(pos)
    grid = voxel_sort(pos, voxel_size)
    starts = np.flatnonzero(grid.first)
    counts = np.diff(np.append(starts, n))
    rank = np.empty(n, dtype=np.int64)
    rank[grid.order] = np.arange(n) - starts[grid.sorted_voxel]
    return VoxelGroups(grid.order, starts, counts, grid.voxel, rank)


class FragmentPass(NamedTuple):
    """One forward pass' input and where its votes go.

    ``data`` holds ``pos``, ``x`` (when the scene has features) and ``y`` of the kept points;
    the probabilities of kept point ``j`` go to scene point ``rows[j]``, and those of kept
    point ``spread_index[j]`` also to scene point ``spread_rows[j]``."""

    data: Data
    rows: Tensor
    spread_rows: Tensor
    spread_index: Tensor


def scene_passes(
    pos: np.ndarray,
    x: np.ndarray | None,
    y: np.ndarray,
    block_size: float | None,
    stride: float | None,
    voxel_size: float | None,
    views: Sequence[TTAView] = ({},),
    voxel_passes: int | None = None,
) -> Iterator[FragmentPass]:
    """Every forward pass of one scene's precise evaluation, produced lazily.

    Args:
        pos: ``[N, 3]`` scene coordinates.
        x: ``[N, F]`` features, or ``None``.
        y: ``[N]`` labels (handed to the network's input as ``data.y``).
        block_size: side of the square fragments (``None``: the whole scene, coordinates
            as given).
        stride: step between fragments (``None``: ``block_size / 2``).
        voxel_size: grid of the passes (``None``: every point, one pass).
        views: test-time views (see :class:`TTAView`).
        voxel_passes: passes per view (``None``: as many as the fullest voxel has points).
    """
    n = len(pos)
    if n == 0:
        return
    matrices = [view_matrix(v) for v in views]
    if block_size is None:
        fragments: Iterator[np.ndarray] = iter([np.arange(n)])
    else:
        blocks = ScanBlocks(pos[:, :2].astype(np.float64), block_size, stride or block_size / 2)
        fragments = (rows for _, _, rows in blocks)
    for rows in fragments:
        local = pos[rows].astype(np.float64)
        if block_size is not None:  # like a training crop: bbox x-y centre to 0, floor to 0
            lo, hi = local.min(0), local.max(0)
            local -= [(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]]
        rows_t = torch.from_numpy(rows.astype(np.int64))
        for matrix in matrices:
            viewed = local @ matrix.T
            yield from _view_passes(viewed, x, y, rows, rows_t, voxel_size, voxel_passes)


def _view_passes(
    viewed: np.ndarray,
    x: np.ndarray | None,
    y: np.ndarray,
    rows: np.ndarray,
    rows_t: Tensor,
    voxel_size: float | None,
    voxel_passes: int | None,
) -> Iterator[FragmentPass]:
    none = torch.zeros(0, dtype=torch.long)
    if not voxel_size:
        yield FragmentPass(_data(viewed, x, y, rows), rows_t, none, none)
        return
    groups = voxel_groups(viewed, voxel_size)
    fullest = int(groups.counts.max())
    passes = fullest if voxel_passes is None else min(voxel_passes, fullest)
    if voxel_passes is None and fullest > MANY_PASSES:
        warnings.warn(
            f"precise evaluation: a voxel holds more than {MANY_PASSES} points (duplicates?), "
            "so each fragment takes as many forward passes; set voxel_passes to cap them "
            "(the points left out then take their voxel's votes)",
            UserWarning,
            stacklevel=2,
        )
    missed = groups.rank >= passes  # points no pass keeps: they take their voxel's votes
    spread_rows = torch.from_numpy(rows[missed].astype(np.int64))
    spread_index = torch.from_numpy(groups.voxel[missed])
    for i in range(passes):
        kept = groups.kept(i)
        yield FragmentPass(
            _data(viewed[kept], x, y, rows[kept]),
            rows_t[torch.from_numpy(kept)],
            spread_rows,
            spread_index,
        )


def _data(pos: np.ndarray, x: np.ndarray | None, y: np.ndarray, rows: np.ndarray) -> Data:
    data = Data(pos=torch.from_numpy(pos.astype(np.float32)))
    if x is not None:
        data.x = torch.from_numpy(np.ascontiguousarray(x[rows]))
    data.y = torch.from_numpy(np.ascontiguousarray(y[rows]))
    return data


def scene_arrays(dataset: Any, index: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """``pos [N, 3]``, ``x [N, F]`` (or ``None``) and ``y [N]`` of scene ``index`` of a
    :class:`~lightning_pc.data.datasets.base.PointDataset`, untransformed (every point).

    Raises:
        TypeError: the dataset cannot give untransformed samples.
        ValueError: the scene has no per-point labels.
    """
    raw = getattr(dataset, "raw_sample", None)
    if raw is None:
        raise TypeError(
            f"precise evaluation needs a point dataset with raw_sample() (the scene data "
            f"modules: S3DIS, ScanNet, SemanticKITTI); got {type(dataset).__name__}"
        )
    data = raw(index, torch.Generator().manual_seed(0))
    keys = tuple(getattr(dataset, "feature_keys", ()))
    pos = data.pos.numpy()
    feats = [data[k].reshape(len(pos), -1) for k in keys]
    if getattr(data, "x", None) is not None:
        feats.insert(0, data.x.reshape(len(pos), -1))
    x = torch.cat(feats, 1).numpy() if feats else None
    y = getattr(data, "y", None)
    if y is None or y.numel() != len(pos):
        raise ValueError(
            f"precise evaluation needs a label per point; scene {index} of "
            f"{type(dataset).__name__} has none"
        )
    return pos, x, y.view(-1).numpy()


class PreciseSceneEvaluation(L.Callback):
    """Pointcept's "precise evaluation" of whole scenes, beside the voxelised metric.

    At the end of the test epoch (and of validation epochs, with ``splits: [val, test]``),
    every scene of the split is evaluated as the module docstring
    (:mod:`lightning_pc.callbacks.scene_evaluation`) describes, and
    ``{split}/miou_precise``, ``{split}/oa_precise`` and ``{split}/iou_precise_<class>``
    are logged (same definitions as ``{split}/miou``, ``{split}/oa``, ``{split}/iou_<class>``).
    Every scene of the split is evaluated whatever ``limit_test_batches`` says;
    :attr:`evaluated` lists the scenes this process did.

    For :class:`~lightning_pc.tasks.SemanticSegmentationTask` (or any module with
    ``hparams.num_classes`` / ``hparams.ignore_index`` whose forward takes a packed batch
    and returns ``[N, num_classes]`` logits, or that defines ``class_probabilities``).
    Points and features come from the dataset untransformed: the data module's
    ``eval_transforms`` are not applied.

    In a config::

        trainer:
          callbacks:
            - class_path: lightning_pc.callbacks.PreciseSceneEvaluation
              init_args:
                tta: [{}, {rotate: 90}, {rotate: 180}, {rotate: 270}]

    Args:
        splits: the splits to evaluate precisely (validation is slow: off by default).
        block_size: side of the square fragments in x-y; ``"auto"``: the data module's
            ``block_size`` where it has one (S3DIS: the training crops), else whole scenes;
            ``None``: whole scenes.
        stride: step between fragments (``None``: ``block_size / 2``, so every point is in
            up to 4 fragments).
        voxel_size: voxel edge of the passes; ``"auto"``: the data module's ``voxel_size``;
            ``None``: no grid, every point in one pass.
        voxel_passes: passes per fragment and view (``None``: as many as the fullest voxel
            has points, so every point is seen by the network itself; a number caps the cost,
            the points left out then take their voxel's votes).
        tta: test-time views (``None``: the identity only). Pointcept's S3DIS list is the
            scales 0.9, 0.95, 1, 1.05, 1.1, each also with ``flip: xy``.
        batch_size: passes per forward batch.
    """

    def __init__(
        self,
        splits: list[Split] | None = None,
        block_size: float | Literal["auto"] | None = "auto",
        stride: float | None = None,
        voxel_size: float | Literal["auto"] | None = "auto",
        voxel_passes: int | None = None,
        tta: list[TTAView] | None = None,
        batch_size: int = 4,
    ) -> None:
        self.splits: list[Split] = list(splits) if splits is not None else ["test"]
        bad = set(self.splits) - {"val", "test"}
        if bad:
            raise ValueError(f"splits must be 'val' and/or 'test', got {sorted(bad)}")
        for name, value in (("block_size", block_size), ("voxel_size", voxel_size)):
            if value not in ("auto", None) and not (isinstance(value, int | float) and value > 0):
                raise ValueError(f"{name} must be positive, 'auto' or null, got {value!r}")
        if stride is not None and stride <= 0:
            raise ValueError(f"stride must be positive, got {stride}")
        if voxel_passes is not None and voxel_passes < 1:
            raise ValueError(f"voxel_passes must be at least 1, got {voxel_passes}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.tta: list[TTAView] = list(tta) if tta else [{}]
        for view in self.tta:
            view_matrix(view)  # refuse a bad view now, not after a training run
        self.block_size, self.stride, self.voxel_size = block_size, stride, voxel_size
        self.voxel_passes, self.batch_size = voxel_passes, batch_size
        #: per split, the scenes this process evaluated in its last run (dataset indices)
        self.evaluated: dict[str, list[int]] = {}
        self.metrics: dict[str, MetricCollection] = {}
        self.class_iou: dict[str, MulticlassJaccardIndex] = {}

    # --- configuration resolved against the trainer -------------------------------------
    def fragment_settings(
        self, trainer: L.Trainer
    ) -> tuple[float | None, float | None, float | None]:
        """``(block_size, stride, voxel_size)`` with ``"auto"`` resolved from the data module."""
        datamodule = getattr(trainer, "datamodule", None)
        block = self.block_size
        if block == "auto":
            block = getattr(datamodule, "block_size", None)
        voxel = self.voxel_size
        if voxel == "auto":
            voxel = getattr(datamodule, "voxel_size", None)
        if block is None:
            return None, None, voxel
        stride = self.stride if self.stride is not None else block / 2
        if stride > block:
            raise ValueError(f"stride {stride} exceeds block_size {block}: points would be missed")
        return float(block), float(stride), voxel

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        num_classes = int(pl_module.hparams["num_classes"])
        ignore = pl_module.hparams.get("ignore_index", -100)
        for split in self.splits:
            self.metrics[split] = MetricCollection(
                {
                    "miou": MulticlassJaccardIndex(
                        num_classes, average="macro", ignore_index=ignore
                    ),
                    "oa": MulticlassAccuracy(num_classes, average="micro", ignore_index=ignore),
                },
                prefix=f"{split}/",
                postfix="_precise",
            ).to(pl_module.device)
            self.class_iou[split] = MulticlassJaccardIndex(
                num_classes, average="none", ignore_index=ignore
            ).to(pl_module.device)

    # --- hooks --------------------------------------------------------------------------
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if "val" in self.splits and not trainer.sanity_checking:
            self.evaluate(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if "test" in self.splits:
            self.evaluate(trainer, pl_module, "test")

    # --- the evaluation -----------------------------------------------------------------
    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule, split: Split) -> None:
        """Vote on every scene of this rank, then sum the confusion matrices over the ranks
        and log the metrics (every rank must call this: the sum is a collective)."""
        dataset = _split_dataset(trainer, split)
        block, stride, voxel = self.fragment_settings(trainer)
        scenes = range(trainer.global_rank, len(dataset), trainer.world_size)
        rank_zero_info(
            f"precise {split} evaluation: {len(dataset)} scenes, "
            + (f"{block} m blocks every {stride} m" if block else "whole scenes")
            + f", voxel {voxel}, {len(self.tta)} view(s)"
        )
        # on the module's device (setup runs before the strategy moves the module there)
        metrics = self.metrics[split].to(pl_module.device)
        class_iou = self.class_iou[split].to(pl_module.device)
        num_classes = int(pl_module.hparams["num_classes"])
        context = (
            trainer.precision_plugin.val_step_context
            if split == "val"
            else trainer.precision_plugin.test_step_context
        )
        self.evaluated[split] = []
        training = pl_module.training
        pl_module.eval()  # already so in Lightning's evaluation loops; a direct call too
        error: BaseException | None = None
        try:
            for k in scenes:
                pos, x, y = scene_arrays(dataset, k)
                if not len(pos):
                    continue
                passes = scene_passes(pos, x, y, block, stride, voxel, self.tta, self.voxel_passes)
                with context(), torch.no_grad():
                    votes = vote(pl_module, passes, len(pos), num_classes, self.batch_size)
                unvoted = int((votes.sum(1) <= 0).sum())
                if unvoted:  # every point lies in a block and in a voxel of every pass
                    raise RuntimeError(
                        f"precise evaluation: {unvoted} points of {_scene_name(dataset, k)} "
                        "got no vote"
                    )
                target = torch.from_numpy(y).to(votes.device)
                pred = votes.argmax(1)
                metrics.update(pred, target)
                class_iou.update(pred, target)
                self.evaluated[split].append(k)
        except Exception as caught:  # noqa: BLE001 (re-raised below, on every rank)
            error = caught
        finally:
            pl_module.train(training)
        # a rank that failed alone would leave the others waiting in compute(): agree first
        if _any_rank(trainer, pl_module, error is not None):
            if error is not None:
                raise error
            raise RuntimeError(
                f"precise {split} evaluation failed on another rank; its error names the scene"
            )
        values = metrics.compute()  # collectives: every rank gets here, scenes or not
        per_class = class_iou.compute()
        metrics.reset()
        class_iou.reset()
        for name, value in values.items():
            pl_module.log(name, value, sync_dist=True)  # equal on every rank already
        names = getattr(getattr(trainer, "datamodule", None), "class_names", None)
        if names is None or len(names) != per_class.numel():
            names = [str(i) for i in range(per_class.numel())]
        for name, value in zip(names, per_class):
            pl_module.log(f"{split}/iou_precise_{name}", value, sync_dist=True)


def vote(
    module: Any, passes: Iterator[FragmentPass], num_points: int, num_classes: int, batch_size: int
) -> Tensor:
    """Sum the class probabilities of every pass onto the scene's points.

    Args:
        module: the task; ``module.class_probabilities(batch)`` (else the softmax of
            ``module(batch)``) gives ``[n, num_classes]`` per batch.
        passes: from :func:`scene_passes`.
        num_points: points of the scene.
        num_classes: classes.
        batch_size: passes per forward batch.

    Returns:
        ``[num_points, num_classes]`` float32 votes on the module's device.
    """
    device = getattr(module, "device", torch.device("cpu"))
    votes = torch.zeros((num_points, num_classes), dtype=torch.float32, device=device)
    probabilities = getattr(module, "class_probabilities", None)
    chunk: list[FragmentPass] = []

    def flush() -> None:
        batch = collate([p.data for p in chunk]).to(device)
        if probabilities is not None:
            probs = probabilities(batch)
        else:
            probs = module(batch).float().softmax(1)
        ptr = batch.ptr.tolist()
        for p, start, end in zip(chunk, ptr[:-1], ptr[1:]):
            mine = probs[start:end]
            votes.index_add_(0, p.rows.to(device), mine)
            if p.spread_rows.numel():
                votes.index_add_(0, p.spread_rows.to(device), mine[p.spread_index.to(device)])
        chunk.clear()

    for item in passes:
        chunk.append(item)
        if len(chunk) == batch_size:
            flush()
    if chunk:
        flush()
    return votes


def _any_rank(trainer: L.Trainer, pl_module: L.LightningModule, flag: bool) -> bool:
    """Whether ``flag`` holds on any rank (a collective under DDP)."""
    if trainer.world_size <= 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=pl_module.device)
    return bool(trainer.strategy.reduce(value, reduce_op="sum").item() > 0)


def _scene_name(dataset: Any, index: int) -> str:
    """``scene <index> ('<source>')``: a dataset's ``names`` are indexed like the dataset
    (S3DIS rooms of one area name their own rooms, not the cache's first rows)."""
    names = getattr(dataset, "names", None)
    try:
        return f"scene {index} ({names[index]!r})" if names is not None else f"scene {index}"
    except (IndexError, TypeError):
        return f"scene {index}"


def _split_dataset(trainer: L.Trainer, split: Split) -> Any:
    datamodule = getattr(trainer, "datamodule", None)
    datasets = getattr(datamodule, "datasets", None)
    if isinstance(datasets, dict) and split in datasets:
        return datasets[split]
    loaders = trainer.val_dataloaders if split == "val" else trainer.test_dataloaders
    if isinstance(loaders, list | tuple):
        loaders = loaders[0] if loaders else None
    dataset = getattr(loaders, "dataset", None)
    if dataset is None:
        raise RuntimeError(f"precise evaluation found no {split} dataset")
    return dataset
