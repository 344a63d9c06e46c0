"""PLYPredictionWriter: one PLY file per predicted cloud, labels as a property and as colours."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import Tensor

from lightning_pc.data import formats
from lightning_pc.data.formats.las import write_las_labels  # noqa: F401 (public here too)
from lightning_pc.data.formats.ply import (  # noqa: F401 (the file writing lives in formats)
    PLY_CHUNK,
    write_ply,
    write_ply_chunks,
)
from lightning_pc.data.palettes import label_colors, resolve_palette


def split_prediction(prediction: Tensor, batch: Any) -> list[tuple[Tensor, Tensor]]:
    """Per cloud of ``batch``: its points ``[n_i, 3]`` and their labels ``[n_i]``.

    ``prediction`` may hold one label per cloud (``[B]``, given to each of its points; or
    class probabilities ``[B, C]``, of which the most likely class is taken), one
    per point of the batch (``[N]``), or one per original point when the batch carries
    ``inverse_index`` (``[N_full]``, as :class:`~lightning_pc.tasks.SemanticSegmentationTask`
    returns): the labels then go back onto the kept points (each kept point is its own
    voxel's representative, so ``pred_full[inverse_index == k]`` all equal ``pred[k]``).

    Args:
        prediction: the output of ``predict_step``.
        batch: the packed batch it was computed on.

    Returns:
        ``(pos, labels)`` for each cloud, on the CPU.
    """
    pos = batch.pos.detach().cpu()
    prediction = prediction.detach().cpu()
    if prediction.dim() == 2:  # class probabilities (classification): the most likely class
        prediction = prediction.argmax(1)
    pred = prediction.view(-1).long()
    ptr = batch.ptr.cpu()
    num_clouds, num_points = ptr.numel() - 1, pos.size(0)
    inverse = getattr(batch, "inverse_index", None)
    if pred.numel() == num_points:
        per_point = pred
    elif pred.numel() == num_clouds:
        per_point = pred.repeat_interleave(ptr.diff())
    elif inverse is not None and pred.numel() == inverse.numel():
        per_point = torch.full((num_points,), -1, dtype=torch.long)
        per_point[inverse.detach().cpu().view(-1)] = pred
    else:
        raise ValueError(
            f"cannot match {pred.numel()} predictions to {num_clouds} clouds of {num_points} points"
        )
    return [(pos[ptr[i] : ptr[i + 1]], per_point[ptr[i] : ptr[i + 1]]) for i in range(num_clouds)]


def output_stem(name: str) -> str:
    """An output path for a sample named ``name`` (its raw file under the data root, or a
    sample inside one, such as ``ply_data_test0.h5:3``): a file suffix is dropped, ``:`` and
    ``#`` become ``_``."""
    path = Path(name)
    if formats.lookup(path) is not None:
        path = path.with_suffix("")
    return path.as_posix().replace(":", "_").replace("#", "_")


def _predict_loader(trainer: L.Trainer, dataloader_idx: int) -> Any:
    """The trainer's predict loader ``dataloader_idx`` (``None``: unknown)."""
    try:
        loaders = trainer.predict_dataloaders
    except Exception:  # noqa: BLE001 (a loader that cannot be inspected names nothing)
        return None
    if isinstance(loaders, list | tuple):
        return loaders[dataloader_idx] if dataloader_idx < len(loaders) else None
    return loaders


def _predict_dataset(trainer: L.Trainer, dataloader_idx: int) -> Any:
    """The dataset behind the trainer's predict loader ``dataloader_idx`` (``None``: unknown)."""
    return getattr(_predict_loader(trainer, dataloader_idx), "dataset", None)


def batch_sources(batch: Any, trainer: L.Trainer, dataloader_idx: int) -> list[str] | None:
    """Each cloud's source: the batch's ``source`` (see the batch schema in
    :mod:`lightning_pc.data.collate`); for a batch without it (a dataset of yours that
    exposes ``names`` only), the predict dataset's ``names[idx]``; ``None`` when neither."""
    sources = getattr(batch, "source", None)
    if sources is not None:
        return [str(s) for s in sources]
    names = getattr(_predict_dataset(trainer, dataloader_idx), "names", None)
    idx = getattr(batch, "idx", None)
    if names is None or idx is None:
        return None
    return [str(names[int(i)]) for i in idx.view(-1)]


def _rank_samples(trainer: L.Trainer, dataloader_idx: int) -> list[int] | None:
    """The dataset indices that predict loader ``dataloader_idx`` gives this process, in
    order (``None``: not a map-style loader with a finite sampler)."""
    from torch.utils.data import IterableDataset

    loader = _predict_loader(trainer, dataloader_idx)
    dataset = getattr(loader, "dataset", None)
    sampler = getattr(loader, "sampler", None)
    if dataset is None or sampler is None or isinstance(dataset, IterableDataset):
        return None
    return [int(i) for i in sampler]


def _task_classes(pl_module: Any) -> int:
    """The task's ``num_classes`` hyperparameter (0 when it has none)."""
    hparams = getattr(pl_module, "hparams", None) or {}
    return int(hparams.get("num_classes", 0) or 0)


def prediction_colors(
    datamodule: Any, labels: np.ndarray, num_classes: int | None = None
) -> np.ndarray:
    """``[N, 3]`` ``uint8`` colours of predicted ``labels``: the data module's palette as
    :func:`~lightning_pc.data.palettes.resolve_palette` settles it, the colours that
    :class:`~lightning_pc.callbacks.RenderPredictions` draws and logs (negative labels grey).

    The palette is settled for ``num_classes`` (the task's) or the data module's
    ``num_classes``, whichever is larger, never for the labels of one cloud, so every cloud
    of a run gets the same colours; labels beyond it are grey. Only when neither is known
    do the labels set the count.
    """
    labels = np.asarray(labels).reshape(-1)
    classes = max(int(getattr(datamodule, "num_classes", 0) or 0), int(num_classes or 0))
    if classes == 0 and labels.size:
        classes = int(labels.max()) + 1
    palette = resolve_palette(getattr(datamodule, "palette", None), classes)
    return label_colors(labels, palette)


class PLYPredictionWriter(BasePredictionWriter):
    """Write each predicted cloud to ``output_dir/<prefix><name>.ply``.

    ``name`` is the source file's path under the data root without its suffix (datasets
    with ``names``, e.g. every cached data module), else the cloud's index in the predict
    dataset. Coordinates are those the network saw (after the evaluation transforms); for
    whole scans in their original coordinates use :class:`ScenePredictionWriter`.

    Every point gets ``x y z``, its label as a ``label`` int property and the label's colour
    as ``red green blue`` (:func:`prediction_colors`: the colours of the rendered pictures).
    Per-cloud predictions (classification) colour the whole cloud. Names come from the
    cloud's index in the predict dataset, so under DDP each rank writes its own clouds
    (Lightning's predict sampler does not repeat samples) and no file is written twice;
    the header records the rank that wrote it (``comment rank R``). Nothing here is
    collective.

    Example (YAML)::

        trainer:
          callbacks:
            - class_path: lightning_pc.callbacks.prediction_writer.PLYPredictionWriter
              init_args: {output_dir: runs/quickstart/predictions}

    Args:
        output_dir: folder of the PLY files (created if missing).
        binary: write ``binary_little_endian`` PLY (else ``ascii``).
        prefix: file-name prefix.
    """

    def __init__(
        self,
        output_dir: str = "predictions",
        binary: bool = True,
        prefix: str = "cloud_",
    ) -> None:
        super().__init__("batch")
        self.output_dir = Path(output_dir)
        self.binary = binary
        self.prefix = prefix
        self._written: set[tuple[int, int]] = set()  # (dataloader, sample index)

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._written = set()

    def missing_outputs(self, trainer: L.Trainer) -> list[str] | None:
        """The clouds of this process not written yet (their source names, else their
        indices), e.g. after predict was stopped; ``None``: the loader cannot tell."""
        try:
            loaders = trainer.predict_dataloaders
        except Exception:  # noqa: BLE001
            return None
        count = len(loaders) if isinstance(loaders, list | tuple) else 1
        missing: list[str] = []
        for d in range(count):
            samples = _rank_samples(trainer, d)
            if samples is None:
                return None
            names = getattr(_predict_dataset(trainer, d), "names", None)
            for i in samples:
                if (d, i) not in self._written:
                    missing.append(str(names[i]) if names is not None else f"sample {i}")
        return missing

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        """Write the clouds of one predicted batch."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        clouds = split_prediction(prediction, batch)
        sources = batch_sources(batch, trainer, dataloader_idx)
        idx = getattr(batch, "idx", None)
        indices: list[int] = []
        if idx is not None and idx.numel() == len(clouds):
            indices = [int(i) for i in idx.view(-1)]
        elif batch_indices is not None and len(batch_indices) == len(clouds):
            indices = [int(i) for i in batch_indices]
        if sources is not None and len(sources) == len(clouds):
            # the source file's path under the data root, without its suffix
            names = [output_stem(source) for source in sources]
        elif batch_indices is None or len(batch_indices) != len(clouds):
            names = [f"rank{trainer.global_rank}_batch{batch_idx}_{i}" for i in range(len(clouds))]
        else:
            names = [f"{int(i):06d}" for i in batch_indices]
        if dataloader_idx:
            names = [f"dl{dataloader_idx}_{name}" for name in names]
        for n, (name, (pos, labels)) in enumerate(zip(names, clouds)):
            colors = prediction_colors(
                getattr(trainer, "datamodule", None), labels.numpy(), _task_classes(pl_module)
            )
            stem = Path(name)
            target = self.output_dir / stem.parent / f"{self.prefix}{stem.name}.ply"
            target.parent.mkdir(parents=True, exist_ok=True)
            formats.for_suffix(".ply").write_points(  # type: ignore[misc]
                target,
                pos.numpy(),
                labels.numpy(),
                colors,
                binary=self.binary,
                comments=[
                    f"rank {trainer.global_rank}",
                    "lightning_pc predictions",
                    "coordinates as the network saw them (after the eval transforms)",
                ],
            )
            if indices:
                self._written.add((dataloader_idx, indices[n]))


def scan_output_name(path: Path, root: Path) -> Path:
    """Where a scan's results go under the output folder: its path under ``root`` (the
    file's name when ``root`` is the file itself), without the suffix."""
    try:
        rel = path.relative_to(root) if root.is_dir() else Path(path.name)
    except ValueError:
        rel = Path(path.name)
    return rel.with_suffix("")


def write_counts(path: Path, labels: np.ndarray, class_names: Sequence[str]) -> None:
    """``class,name,points,fraction`` per class (a small CSV summary of one scan); a class
    beyond ``class_names`` (a model with more outputs than the data module names) is
    listed as ``class_<k>``, so the fractions always add up to one."""
    counts = np.bincount(np.asarray(labels).reshape(-1), minlength=len(class_names))
    total = max(int(counts.sum()), 1)
    lines = ["class,name,points,fraction"]
    for k in range(len(counts)):
        name = class_names[k] if k < len(class_names) else f"class_{k}"
        lines.append(f"{k},{_csv_field(str(name))},{int(counts[k])},{counts[k] / total:.6f}")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)


def add_in_order(target: Tensor, rows: Tensor, values: Tensor) -> None:
    """``target[rows[i]] += values[i]`` for each ``i`` in order, rows repeating: in rounds
    of distinct rows (a gather-add-scatter each), so every row sums its values in the
    order given (float16 votes: the same rounding as one fragment at a time) and the cost
    is O(rows), where float16 ``index_add_`` on the CPU costs O(target rows) per call."""
    order = torch.sort(rows, stable=True)[1]
    ranked = rows[order]
    new = torch.ones_like(ranked, dtype=torch.bool)
    new[1:] = ranked[1:] != ranked[:-1]
    starts = torch.nonzero(new).view(-1)
    at = torch.arange(ranked.numel()) - starts[torch.cumsum(new.long(), 0) - 1]
    for r in range(int(at.max()) + 1 if at.numel() else 0):
        pick = order[at == r]  # the r-th value of each row: distinct rows
        target[rows[pick]] += values[pick]


def label_dtype(num_classes: int) -> np.dtype:
    """The smallest unsigned integer type holding labels ``0 .. num_classes - 1``."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if num_classes - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


class ScanSums:
    """One scan's per-point sums (``[points, channels]`` of ``dtype``; with ``counts``, also
    how many fragments covered each point, int32), in memory or in a memory-mapped temporary
    ``file`` (removed by :meth:`close`). The votes of :class:`ScenePredictionWriter`
    (float16) and the feature sums of :class:`~lightning_pc.embed.FeatureWriter` (float32,
    counts)."""

    def __init__(
        self,
        points: int,
        channels: int,
        file: Path | None,
        dtype: type[np.floating[Any]] = np.float16,
        counts: bool = False,
    ) -> None:
        self.file = file
        self.dtype = dtype
        if file is None:
            self.array = np.zeros((points, channels), dtype=dtype)
        else:
            file.parent.mkdir(parents=True, exist_ok=True)
            # a new file reads as zeros; pages go back to the file under memory pressure
            self.array = np.memmap(file, dtype=dtype, mode="w+", shape=(points, channels))
        self.tensor = torch.from_numpy(self.array)
        self.counts = torch.zeros(points if counts else 0, dtype=torch.int32)
        self.seen = 0

    def close(self) -> None:
        """Free the sums (again: nothing happens) and remove their file."""
        self.tensor = torch.zeros(0)
        self.array = np.zeros((0, 0), dtype=self.dtype)  # unmaps the file
        if self.file is not None:
            self.file.unlink(missing_ok=True)


class ScenePredictionWriter(BasePredictionWriter):
    """Vote fragment predictions back onto every point of whole scans and write the results.

    Takes the class probabilities that
    :meth:`~lightning_pc.tasks.SemanticSegmentationTask.predict_step` returns for the
    fragments of :class:`~lightning_pc.data.modules.predict.PredictScenesDataModule`, sums
    them per scan point (float16 votes: 2 bytes per point and class), and once the last
    fragment of a scan has arrived writes, under ``output_dir`` and named after the scan:

    - ``<name>.ply``: the scan's original coordinates (double), a ``label`` and its colour
      per point;
    - ``<name>.las`` / ``<name>.laz`` (LAS/LAZ input only): a copy of the input with the
      labels in its classification field;
    - ``<name>.counts.csv``: points per class.

    Votes of a scan larger than ``max_vote_memory`` bytes live in a memory-mapped file
    ``<name>.votes.tmp`` next to the outputs (the kernel writes its pages back instead of
    running out of memory), removed once the scan is written or predict stops. Outputs are
    read from the scan and written chunk by chunk, each to a ``.tmp`` name renamed into
    place, so nothing half-written is left. Predictions are not also kept by the trainer
    (``return_predictions`` is turned off). Under DDP each rank writes the scans it
    predicted.

    Args:
        output_dir: output folder (``None``: the data module's ``output_dir``).
        binary: write binary PLY (else ASCII).
        max_vote_memory: votes of a scan up to this many bytes stay in memory.
    """

    def __init__(
        self, output_dir: str | None = None, binary: bool = True, max_vote_memory: int = 256 << 20
    ) -> None:
        super().__init__("batch")
        self.output_dir = output_dir
        self.binary = binary
        self.max_vote_memory = max_vote_memory
        self._votes: dict[int, ScanSums] = {}
        self._sources: dict[int, Path] = {}  # scan -> its file, from the batches' ``source``
        self.written: list[Path] = []
        self._finished: set[int] = set()

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.predict_loop.return_predictions = False  # the votes live here, bounded
        self._drop_votes()
        self.written = []
        self._finished = set()

    def missing_outputs(self, trainer: L.Trainer) -> list[str] | None:
        """The scans of this process (DDP rank) whose results are not written yet, e.g.
        after predict was stopped; ``None``: the scans are not known."""
        scans = _predict_dataset(trainer, 0)
        names = getattr(scans, "names", None)
        if names is None:
            return None
        try:
            loaders = trainer.predict_dataloaders
            loader = loaders[0] if isinstance(loaders, list | tuple) else loaders
            workers = max(int(getattr(loader, "num_workers", 0) or 0), 1)
        except Exception:  # noqa: BLE001
            workers = 1
        world, rank = trainer.world_size, trainer.global_rank
        # scan k goes to slot k mod (world x workers), slots rank x workers ... of this rank
        mine = [k for k in range(len(names)) if (k % (world * workers)) // workers == rank]
        if callable(getattr(scans, "scans", None)):  # packed batches: the rank's own scans
            mine = list(scans.scans())
        return [str(names[k]) for k in mine if k not in self._finished]

    def _drop_votes(self) -> None:
        for votes in self._votes.values():
            votes.close()
        self._votes = {}
        self._sources = {}

    def _folder(self, trainer: L.Trainer) -> Path:
        datamodule = getattr(trainer, "datamodule", None)
        folder = self.output_dir or getattr(datamodule, "output_dir", None) or "predictions"
        return Path(folder)

    def _base(self, trainer: L.Trainer, source: Path) -> Path:
        """The outputs' path without suffix of the scan file ``source``: its path under the
        data module's ``root`` (the file's name when there is none)."""
        root = getattr(getattr(trainer, "datamodule", None), "root", None)
        if root is None:
            return self._folder(trainer) / Path(source.name).with_suffix("")
        name = scan_output_name(source, Path(root).expanduser().resolve())
        return self._folder(trainer) / name

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        """Add one batch of fragments' votes; write every scan it completes."""
        rows = getattr(batch, "source_rows", None)
        sources = getattr(batch, "source", None)  # each fragment's scan file
        if rows is None or sources is None:
            raise ValueError(
                "ScenePredictionWriter needs fragments of whole scans (PredictScenesDataModule); "
                "use PLYPredictionWriter for other data modules"
            )
        probs = prediction.detach().cpu().half()
        rows = rows.cpu()
        fragment = batch.batch.cpu()[batch.inverse_index.cpu()]  # covered point -> fragment
        scans = batch.idx.cpu().view(-1)
        totals = batch.num_fragments.cpu().view(-1)
        sizes = batch.scan_points.cpu().view(-1)
        runs = np.flatnonzero(np.diff(scans.numpy(), prepend=-1)).tolist()  # runs of a scan
        for f, last in zip(runs, runs[1:] + [scans.numel()]):
            scan = int(scans[f])
            if scan not in self._votes:
                points, classes = int(sizes[f]), probs.size(1)
                self._sources[scan] = Path(sources[f])
                base = self._base(trainer, self._sources[scan])
                big = points * classes * 2 > self.max_vote_memory
                file = base.with_name(base.name + ".votes.tmp") if big else None
                self._votes[scan] = ScanSums(points, classes, file)
            votes = self._votes[scan]
            mine = (fragment >= f) & (fragment < last)
            add_in_order(votes.tensor, rows[mine], probs[mine])
            votes.seen += last - f
            if votes.seen == int(totals[f]):
                try:
                    self._finish(trainer, scan, votes)
                    self._finished.add(scan)
                finally:
                    votes.close()
                    del self._votes[scan]

    def _finish(self, trainer: L.Trainer, scan: int, votes: ScanSums) -> None:
        source = self._sources.pop(scan)
        base = self._base(trainer, source)
        datamodule = trainer.datamodule  # type: ignore[attr-defined]
        for suffix in (".ply", source.suffix.lower()):
            if base.with_name(base.name + suffix).resolve() == source.resolve():
                raise ValueError(
                    f"{source}: the output would overwrite the scan; choose another output_dir"
                )
        # labels a chunk at a time: a float32 copy of the votes would cost 4 bytes per
        # point and class
        n, classes = votes.array.shape
        labels = np.empty(n, dtype=label_dtype(classes))
        missed = 0
        for s in range(0, n, PLY_CHUNK):
            part = votes.array[s : s + PLY_CHUNK]
            missed += int((part.max(1) <= 0).sum())
            labels[s : s + PLY_CHUNK] = part.argmax(1)
        if missed:
            raise RuntimeError(f"{source}: {missed} points were in no fragment (a bug)")
        votes.close()  # the temporary file goes before the outputs are written
        base.parent.mkdir(parents=True, exist_ok=True)
        # the colours of the rendered pictures and the loggers' views, settled once per scan
        num_classes = max(int(getattr(datamodule, "num_classes", 0) or 0), classes)
        palette = resolve_palette(getattr(datamodule, "palette", None), num_classes)
        ply = base.with_name(base.name + ".ply")
        reader = formats.ScanChunks(source, PLY_CHUNK)
        if reader.num_points != n:
            raise RuntimeError(f"{source}: {reader.num_points} points now, {n} when predicted")

        def chunks() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
            start = 0
            for part in reader:
                stop = start + len(part["pos"])
                yield part["pos"], labels[start:stop], label_colors(labels[start:stop], palette)
                start = stop

        formats.for_suffix(".ply").write_chunks(  # type: ignore[misc]
            ply,
            n,
            chunks(),
            binary=self.binary,
            comments=[f"source {source.name}", "lightning_pc predictions"],
            double=True,
        )
        self.written.append(ply)
        source_format = formats.lookup(source)
        if source_format is not None and source_format.write_labels is not None:
            # a copy of the scan with the labels as its class field (LAS/LAZ)
            copy = base.with_name(base.name + source.suffix.lower())
            source_format.write_labels(source, copy, labels)
            self.written.append(copy)
        counts = base.with_name(base.name + ".counts.csv")
        write_counts(counts, labels, datamodule.class_names)
        self.written.append(counts)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._drop_votes()  # no temporary vote file stays behind

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._votes:
            unfinished = sorted(self._votes)
            self._drop_votes()
            raise RuntimeError(
                f"predict ended before every fragment of scans {unfinished} arrived "
                "(limit_predict_batches?): their results were not written"
            )


class PredictionCSVWriter(BasePredictionWriter):
    """Classification predictions as CSV: ``file,class,name,p_<class>...`` per cloud.

    ``file`` is the source file under the data root (datasets with ``names``; else the
    sample index). Written to ``output_dir/predictions.csv`` (``predictions_rank<R>.csv``
    per rank under DDP), in full only at the end of ``predict`` (a ``.tmp`` file until then).

    Args:
        output_dir: output folder (created if missing).
    """

    def __init__(self, output_dir: str = "predictions") -> None:
        super().__init__("batch")
        self.output_dir = Path(output_dir)
        self._rows: list[str] = []
        self._header = ""

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._rows = []
        names = getattr(getattr(trainer, "datamodule", None), "class_names", None) or []
        self._names = list(names)

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        """Add one row per cloud of the batch."""
        probs = prediction.detach().float().cpu()
        if probs.dim() != 2:
            raise ValueError(
                "PredictionCSVWriter needs class probabilities [B, C] (ClassificationTask)"
            )
        num = probs.size(1)
        names = self._names if len(self._names) == num else [f"class_{k}" for k in range(num)]
        if not self._header:
            self._header = ",".join(["file", "class", "name", *(f"p_{n}" for n in names)])
        sources = batch_sources(batch, trainer, dataloader_idx)
        idx = getattr(batch, "idx", None)
        for row in range(probs.size(0)):
            i = int(idx.view(-1)[row]) if idx is not None else row
            source = sources[row] if sources is not None else str(i)
            k = int(probs[row].argmax())
            values = ",".join(f"{float(p):.6f}" for p in probs[row])
            self._rows.append(f"{_csv_field(source)},{k},{_csv_field(names[k])},{values}")

    def missing_outputs(self, trainer: L.Trainer) -> list[str] | None:
        """Every cloud of this process: the CSV is written whole at the end of predict, so
        a stopped predict writes none of it."""
        samples = _rank_samples(trainer, 0)
        if samples is None:
            return None
        names = getattr(_predict_dataset(trainer, 0), "names", None)
        return [str(names[i]) if names is not None else f"sample {i}" for i in samples]

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        name = (
            "predictions.csv"
            if trainer.world_size == 1
            else (f"predictions_rank{trainer.global_rank}.csv")
        )
        path = self.output_dir / name
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("\n".join([self._header, *self._rows]) + "\n")
        os.replace(tmp, path)


def _csv_field(value: str) -> str:
    """A CSV field, quoted when it holds a comma, a quote or a line break."""
    if any(c in value for c in ',"\n'):
        return '"' + value.replace('"', '""') + '"'
    return value
