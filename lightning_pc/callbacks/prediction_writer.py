"""PLYPredictionWriter: one PLY file per predicted cloud, labels as a property and as colours."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import Tensor

from lightning_pc.data.palettes import label_colors, resolve_palette

PLY_CHUNK = 1 << 20  # points written at a time


def _ply_vertices(
    pos: np.ndarray, labels: np.ndarray, colors: np.ndarray, double: bool
) -> np.ndarray:
    coord = "<f8" if double else "<f4"
    names = [("x", coord), ("y", coord), ("z", coord)]
    names += [("red", "u1"), ("green", "u1"), ("blue", "u1"), ("label", "<i4")]
    n = len(pos)
    vertex = np.empty(n, dtype=names)
    xyz = np.asarray(pos).reshape(n, 3)
    vertex["x"], vertex["y"], vertex["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    rgb = np.asarray(colors, dtype=np.uint8).reshape(n, 3)
    vertex["red"], vertex["green"], vertex["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    vertex["label"] = labels
    return vertex


def write_ply_chunks(
    path: str | Path,
    num_points: int,
    chunks: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]],
    binary: bool = True,
    comments: Sequence[str] = (),
    double: bool = False,
) -> None:
    """Write ``num_points`` points given as consecutive ``(pos, labels, colors)`` chunks
    (see :func:`write_ply`), so no whole-cloud array is built.

    Written to ``path.tmp`` first and renamed into place; a failure removes the ``.tmp``.

    Raises:
        ValueError: the chunks hold another number of points than ``num_points``.
    """
    path = Path(path)
    header = ["ply", f"format {'binary_little_endian' if binary else 'ascii'} 1.0"]
    header += [f"comment {c}" for c in comments]
    header += [f"element vertex {num_points}"]
    header += [f"property {'double' if double else 'float'} {a}" for a in "xyz"]
    header += [f"property uchar {c}" for c in ("red", "green", "blue")]
    header += ["property int label", "end_header"]
    tmp = path.with_name(path.name + ".tmp")
    try:
        written = 0
        with open(tmp, "wb") as f:
            f.write(("\n".join(header) + "\n").encode("ascii"))
            for pos, labels, colors in chunks:
                vertex = _ply_vertices(pos, labels, colors, double)
                written += len(vertex)
                if binary:
                    f.write(vertex.tobytes())
                else:
                    for row in vertex.tolist():
                        f.write((" ".join(map(repr, row)) + "\n").encode("ascii"))
        if written != num_points:
            raise ValueError(f"{path}: {written} points given for a header of {num_points}")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_ply(
    path: str | Path,
    pos: np.ndarray,
    labels: np.ndarray,
    colors: np.ndarray,
    binary: bool = True,
    comments: Sequence[str] = (),
    double: bool = False,
) -> None:
    """Write points with ``x y z`` (float), ``red green blue`` (uchar) and ``label`` (int).

    Args:
        path: output file (written to ``path.tmp`` first, then renamed into place).
        pos: ``[N, 3]`` coordinates.
        labels: ``[N]`` integer labels.
        colors: ``[N, 3]`` colours, 0-255.
        binary: ``binary_little_endian`` (else ``ascii``).
        comments: header comment lines.
        double: coordinates as ``double`` (georeferenced scans lose precision in float).
    """
    n = len(pos)
    chunks = (
        (pos[s : s + PLY_CHUNK], labels[s : s + PLY_CHUNK], colors[s : s + PLY_CHUNK])
        for s in range(0, n, PLY_CHUNK)
    )
    write_ply_chunks(path, n, chunks, binary, comments, double)


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


_FILE_SUFFIXES = frozenset(
    (".ply", ".pcd", ".xyz", ".pts", ".txt", ".npy", ".las", ".laz", ".off", ".obj", ".stl", ".bin")
)


def output_stem(name: str) -> str:
    """An output path for a sample named ``name`` (its raw file under the data root, or a
    sample inside one, such as ``ply_data_test0.h5:3``): a file suffix is dropped, ``:`` and
    ``#`` become ``_``."""
    path = Path(name)
    if path.suffix.lower() in _FILE_SUFFIXES:
        path = path.with_suffix("")
    return path.as_posix().replace(":", "_").replace("#", "_")


def _predict_dataset(trainer: L.Trainer, dataloader_idx: int) -> Any:
    """The dataset behind the trainer's predict loader ``dataloader_idx`` (``None``: unknown)."""
    try:
        loaders = trainer.predict_dataloaders
    except Exception:  # noqa: BLE001 (a loader that cannot be inspected names nothing)
        return None
    if isinstance(loaders, list | tuple):
        loaders = loaders[dataloader_idx] if dataloader_idx < len(loaders) else None
    return getattr(loaders, "dataset", None)


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
        sources = getattr(_predict_dataset(trainer, dataloader_idx), "names", None)
        idx = getattr(batch, "idx", None)
        if sources is not None and idx is not None and idx.numel() == len(clouds):
            # the source file's path under the data root, without its suffix
            names = [output_stem(sources[int(i)]) for i in idx.view(-1)]
        elif batch_indices is None or len(batch_indices) != len(clouds):
            names = [f"rank{trainer.global_rank}_batch{batch_idx}_{i}" for i in range(len(clouds))]
        else:
            names = [f"{int(i):06d}" for i in batch_indices]
        if dataloader_idx:
            names = [f"dl{dataloader_idx}_{name}" for name in names]
        for name, (pos, labels) in zip(names, clouds):
            colors = prediction_colors(
                getattr(trainer, "datamodule", None), labels.numpy(), _task_classes(pl_module)
            )
            stem = Path(name)
            target = self.output_dir / stem.parent / f"{self.prefix}{stem.name}.ply"
            target.parent.mkdir(parents=True, exist_ok=True)
            write_ply(
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


def scan_output_name(path: Path, root: Path) -> Path:
    """Where a scan's results go under the output folder: its path under ``root`` (the
    file's name when ``root`` is the file itself), without the suffix."""
    try:
        rel = path.relative_to(root) if root.is_dir() else Path(path.name)
    except ValueError:
        rel = Path(path.name)
    return rel.with_suffix("")


def write_las_labels(
    source: Path, target: Path, labels: np.ndarray, chunk: int = PLY_CHUNK
) -> None:
    """A copy of the LAS/LAZ file ``source`` with ``labels`` as its classification field,
    copied ``chunk`` points at a time (never the whole file in memory).

    Point formats 0-5 hold class codes 0-31; larger labels convert the copy to format 6
    (7 with colours; the file version rises to 1.4). The source file is not modified; the
    copy is written to ``target.tmp`` and renamed into place.
    """
    import copy

    import laspy
    from laspy.point.dims import preferred_file_version_for_point_format
    from laspy.point.record import PackedPointRecord

    tmp = target.with_name(target.name + ".tmp")
    try:
        with laspy.open(source) as reader:
            header = copy.deepcopy(reader.header)
            convert = int(labels.max(initial=0)) > 31 and header.point_format.id < 6
            if convert:
                has_rgb = "red" in set(header.point_format.dimension_names)
                fmt = laspy.PointFormat(7 if has_rgb else 6)
                fmt.dimensions.extend(header.point_format.extra_dimensions)
                version = max(str(header.version), preferred_file_version_for_point_format(fmt.id))
                header.set_version_and_point_format(laspy.header.Version.from_str(version), fmt)
            evlrs = header.evlrs
            with laspy.open(
                tmp, mode="w", header=header, do_compress=target.suffix.lower() == ".laz"
            ) as writer:
                start = 0
                for points in reader.chunk_iterator(chunk):
                    if convert:
                        points = PackedPointRecord.from_point_record(points, header.point_format)
                    points.classification = labels[start : start + len(points)].astype(np.uint8)
                    start += len(points)
                    writer.write_points(points)
                if evlrs and header.version.minor >= 4:
                    writer.write_evlrs(evlrs)
        if start != len(labels):
            raise ValueError(f"{source}: {start} points read, {len(labels)} labels given")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


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


class _Votes:
    """One scan's summed class probabilities (float16), in memory or in a memory-mapped
    temporary file (removed by :meth:`close`)."""

    def __init__(self, points: int, classes: int, file: Path | None) -> None:
        self.file = file
        if file is None:
            self.array = np.zeros((points, classes), dtype=np.float16)
        else:
            file.parent.mkdir(parents=True, exist_ok=True)
            # a new file reads as zeros; pages go back to the file under memory pressure
            self.array = np.memmap(file, dtype=np.float16, mode="w+", shape=(points, classes))
        self.tensor = torch.from_numpy(self.array)
        self.seen = 0

    def close(self) -> None:
        """Free the votes (again: nothing happens) and remove their file."""
        self.tensor = torch.zeros(0)
        self.array = np.zeros((0, 0), dtype=np.float16)  # unmaps the file
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
        self._votes: dict[int, _Votes] = {}
        self.written: list[Path] = []

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.predict_loop.return_predictions = False  # the votes live here, bounded
        self._drop_votes()
        self.written = []

    def _drop_votes(self) -> None:
        for votes in self._votes.values():
            votes.close()
        self._votes = {}

    def _folder(self, trainer: L.Trainer) -> Path:
        datamodule = getattr(trainer, "datamodule", None)
        folder = self.output_dir or getattr(datamodule, "output_dir", None) or "predictions"
        return Path(folder)

    def _base(self, trainer: L.Trainer, scan: int) -> tuple[Path, Path]:
        """The scan's file and its outputs' path without suffix."""
        datamodule = trainer.datamodule  # type: ignore[attr-defined]
        source = Path(datamodule.fragments.files[scan])
        name = scan_output_name(source, Path(datamodule.root).expanduser().resolve())
        return source, self._folder(trainer) / name

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
        if rows is None:
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
                _, base = self._base(trainer, scan)
                big = points * classes * 2 > self.max_vote_memory
                file = base.with_name(base.name + ".votes.tmp") if big else None
                self._votes[scan] = _Votes(points, classes, file)
            votes = self._votes[scan]
            mine = (fragment >= f) & (fragment < last)
            add_in_order(votes.tensor, rows[mine], probs[mine])
            votes.seen += last - f
            if votes.seen == int(totals[f]):
                try:
                    self._finish(trainer, scan, votes)
                finally:
                    votes.close()
                    del self._votes[scan]

    def _finish(self, trainer: L.Trainer, scan: int, votes: _Votes) -> None:
        from lightning_pc.data.io import ScanChunks

        source, base = self._base(trainer, scan)
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
        reader = ScanChunks(source, PLY_CHUNK)
        if reader.num_points != n:
            raise RuntimeError(f"{source}: {reader.num_points} points now, {n} when predicted")

        def chunks() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
            start = 0
            for part in reader:
                stop = start + len(part["pos"])
                yield part["pos"], labels[start:stop], label_colors(labels[start:stop], palette)
                start = stop

        write_ply_chunks(
            ply,
            n,
            chunks(),
            binary=self.binary,
            comments=[f"source {source.name}", "lightning_pc predictions"],
            double=True,
        )
        self.written.append(ply)
        if source.suffix.lower() in (".las", ".laz"):
            las = base.with_name(base.name + source.suffix.lower())
            write_las_labels(source, las, labels)
            self.written.append(las)
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
        sources = getattr(_predict_dataset(trainer, dataloader_idx), "names", None)
        idx = getattr(batch, "idx", None)
        for row in range(probs.size(0)):
            i = int(idx.view(-1)[row]) if idx is not None else row
            source = sources[i] if sources is not None else str(i)
            k = int(probs[row].argmax())
            values = ",".join(f"{float(p):.6f}" for p in probs[row])
            self._rows.append(f"{_csv_field(source)},{k},{_csv_field(names[k])},{values}")

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
