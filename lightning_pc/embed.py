"""Per-point features of any scan from a network's backbone (``lightning-pc embed``).

A network's backbone (every registered network is a
:class:`~lightning_pc.models.PointNetwork`: ``backbone`` then ``head``) maps a scan to
features; this module runs it over whole scans of any size and writes, per scan, one
feature row for every original point:

- the scan is cut into overlapping fragments and packed into batches by
  :class:`~lightning_pc.data.modules.predict.PredictScenesDataModule` (the machinery of
  ``lightning-pc predict``: memory holds one scan's coordinates and the batches in flight);
- :class:`EmbeddingModule` runs the backbone on a batch and reads its features back at
  every covered point (through the voxels' ``inverse`` map, or the nearest output row
  when the backbone ends on a coarser level);
- :class:`FeatureWriter` averages the features of the fragments covering each point (a
  float32 sum per point and channel, in memory or in a memory-mapped temporary file for a
  large scan) and, once a scan's last fragment has arrived, writes its outputs.

Outputs, under ``output_dir``, named after the scan's path under the input folder:

- ``<name>.features.npy``: ``[N, C]`` (``float16`` by default, or ``float32``), row ``i``
  the features of the scan's ``i``-th point in the file's order;
- ``<name>.pca.png``: the scan coloured by the first three principal components of its
  features (:class:`PCAColors`, the picture Sonata's demo shows), rendered by
  :func:`lightning_pc.viz.render`;
- ``<name>.pca.ply``: the scan's coordinates (double) with those colours;
- ``index.json`` (``index_rank<R>.json`` per rank under DDP): the scans, their files,
  point and channel counts, the dtype, the network's input channels and those filled
  with zeros.

Every file is written to a ``.tmp`` name and renamed into place.

Input channels: a network reads ``x`` as a list of channels (``inputs``, e.g.
``["rgb"]`` for our networks trained on colours, which add the coordinates themselves).
A scan lacking one of them (LiDAR has no colours nor normals) gets zeros there:
:func:`plan_inputs` says which, and warns once, naming the channels and the scans.

Example::

    lightning-pc embed scans/ --model ptv3 --ckpt_path runs/s3dis_ptv3/best.ckpt \\
        --inputs rgb --output_dir features
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import Tensor, nn

from lightning_pc.callbacks.prediction_writer import ScanSums, scan_output_name
from lightning_pc.data.errors import DataFormatError
from lightning_pc.data.formats import ScanChunks
from lightning_pc.data.formats.ply import PLY_CHUNK, write_ply_chunks
from lightning_pc.data.input_channels import (
    CHANNELS,
    ChannelLayout,
    channel_name,
    channels_of_columns,
    plan_inputs,
)
from lightning_pc.nn.point import Point, as_point

#: version tag of ``index.json``
INDEX_FORMAT = "lightning_pc embeddings 1"


class InputAdapter(nn.Module):
    """Builds the network's ``x`` from a batch (see
    :class:`~lightning_pc.data.input_channels.ChannelLayout`, whose arguments it takes).

    Args:
        inputs: the network's input channels, in order.
        read: the channels the batch's ``x`` holds, in order (see :func:`plan_inputs`).
        scales: per channel, ``(scale, shift)`` applied to what is read, e.g.
            ``{"rgb": (2.0, -1.0)}`` for colours in -1..1; zero-filled channels stay zero.
    """

    def __init__(
        self,
        inputs: Sequence[str],
        read: Sequence[str],
        scales: Mapping[str, Sequence[float]] | None = None,
    ) -> None:
        super().__init__()
        self.layout = ChannelLayout(inputs, read, scales)
        self.inputs, self.read = self.layout.inputs, self.layout.read

    @property
    def in_channels(self) -> int:
        """Width of the ``x`` it builds."""
        return self.layout.in_channels

    @property
    def zero_filled(self) -> list[str]:
        """The input channels given as zeros."""
        return self.layout.zero_filled

    def forward(self, data: Any) -> Point:
        point = as_point(data)
        return point.with_features(self.layout(point.pos, point.x))


def backbone_of(network: nn.Module) -> nn.Module:
    """The feature extractor of a network: its ``backbone`` (a
    :class:`~lightning_pc.models.PointNetwork`), else the network itself."""
    return getattr(network, "backbone", network)


def point_features(out: Any, point: Point) -> Tensor:
    """``[N, C]`` features at the ``N`` rows of ``point`` from a backbone's output.

    The output's rows are ``point``'s (one per point), or voxels whose ``inverse`` maps
    ``point``'s rows to them, or (a coarser level: an encoder-only backbone) rows whose
    nearest one in the same cloud gives each point its features. A plain ``[N, C]`` tensor
    is taken as it is.

    Raises:
        ValueError: the output has no features, or rows that match none of these.
    """
    if isinstance(out, Tensor):
        if out.size(0) != point.num_rows:
            raise ValueError(f"the backbone gave {out.size(0)} rows for {point.num_rows} points")
        return out
    x = getattr(out, "x", None)
    if x is None:
        raise ValueError("the backbone returned no features (Point.x is None)")
    inverse = getattr(out, "inverse", None)
    if inverse is not None and inverse.numel() == point.num_rows:
        return x.index_select(0, inverse.view(-1))  # type: ignore[no-any-return]
    if x.size(0) == point.num_rows and inverse is None:
        return x  # type: ignore[no-any-return]
    from lightning_pc.ops import nearest

    pos, batch = getattr(out, "pos", None), getattr(out, "batch", None)
    if pos is None or batch is None:
        raise ValueError(
            f"cannot map the backbone's {x.size(0)} output rows to {point.num_rows} points"
        )
    near = nearest(point.pos.float(), pos.float(), point.batch, batch)
    return x.index_select(0, near)  # type: ignore[no-any-return]


class EmbeddingModule(L.LightningModule):
    """Runs a network's backbone on fragments of whole scans (see the module docstring);
    ``predict_step`` returns ``[M, C]`` float32 features of the ``M`` scan points a batch's
    fragments cover (``batch.source_rows`` order), what :class:`FeatureWriter` averages.

    Args:
        network: a :class:`~lightning_pc.models.PointNetwork` (its ``backbone`` is used) or
            a backbone.
        adapter: builds the network's input (``None``: the batch as it is).
    """

    def __init__(self, network: nn.Module, adapter: InputAdapter | None = None) -> None:
        super().__init__()
        self.network = network
        self.backbone = backbone_of(network)
        self.adapter = adapter

    def forward(self, batch: Any) -> Tensor:
        """Features ``[N, C]`` at the kept points of ``batch``."""
        point = self.adapter(batch) if self.adapter is not None else as_point(batch)
        return point_features(self.backbone(point), point)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        feats = self(batch).float()
        inverse = getattr(batch, "inverse_index", None)
        if inverse is None:
            return feats
        return feats.index_select(0, inverse.view(-1))


class PCAColors:
    """Colours from the first three principal components of features: Sonata's picture.

    :meth:`fit` finds the components on at most ``max_rows`` rows taken evenly through the
    features (so a scan of any size costs the same, and the result never depends on a
    random draw), each component's sign set so that its largest loading is positive, and
    the 1st and 99th percentiles of each projection; :meth:`__call__` maps features to
    ``[0, 1]`` colours: projection onto component ``k`` scaled from those percentiles,
    clipped (robust to outliers). Fewer than three channels, or components without spread,
    give 0.5 in their colour.
    """

    def __init__(self, max_rows: int = 200_000, low: float = 1.0, high: float = 99.0) -> None:
        self.max_rows, self.low_q, self.high_q = max_rows, low, high
        self.mean: np.ndarray | None = None
        self.components = np.zeros((0, 3))
        self.low = np.zeros(3)
        self.high = np.zeros(3)

    def fit(self, features: np.ndarray) -> PCAColors:
        n = len(features)
        rows = np.unique(np.linspace(0, max(n - 1, 0), min(n, self.max_rows)).astype(np.int64))
        sample = np.asarray(features[rows], dtype=np.float64) if n else np.zeros((0, 0))
        channels = sample.shape[1] if sample.ndim == 2 else 0
        self.mean = sample.mean(0) if len(sample) else np.zeros(channels)
        centred = sample - self.mean
        components = np.zeros((channels, 3))
        if len(sample) > 1 and channels:
            cov = centred.T @ centred / (len(sample) - 1)
            values, vectors = np.linalg.eigh(cov)  # ascending
            k = min(3, channels)
            top = vectors[:, ::-1][:, :k]
            big = np.abs(top).argmax(0)
            top = top * np.sign(top[big, np.arange(k)])  # largest loading positive
            keep = values[::-1][:k] > 1e-12 * max(float(values.max()), 1e-30)
            components[:, :k] = top * keep
        self.components = components
        proj = centred @ components if len(sample) else np.zeros((0, 3))
        if len(proj):
            self.low = np.percentile(proj, self.low_q, axis=0)
            self.high = np.percentile(proj, self.high_q, axis=0)
        return self

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """``[N, 3]`` float32 colours in ``[0, 1]``."""
        if self.mean is None:
            raise RuntimeError("PCAColors: call fit first")
        proj = (np.asarray(features, dtype=np.float64) - self.mean) @ self.components
        span = self.high - self.low
        flat = span <= 1e-12
        out = (proj - self.low) / np.where(flat, 1.0, span)
        out[:, flat] = 0.5
        return np.clip(out, 0.0, 1.0).astype(np.float32)


def pca_colors(features: np.ndarray, max_rows: int = 200_000) -> np.ndarray:
    """``[N, 3]`` colours in ``[0, 1]`` of ``[N, C]`` features (see :class:`PCAColors`)."""
    return PCAColors(max_rows).fit(features)(features)


def _replace(tmp: Path, path: Path) -> None:
    os.replace(tmp, path)


def render_pca_png(
    path: Path,
    pos: np.ndarray,
    colors: np.ndarray,
    *,
    size: int = 768,
    views: Sequence[str] = ("iso", "top"),
    max_points: int = 400_000,
) -> None:
    """Render coloured points with :func:`lightning_pc.viz.render` into a PNG (written to
    ``path.tmp`` and renamed): at most ``max_points`` points, taken evenly through the scan,
    moved so their minimum is the origin (float32 keeps georeferenced scans sharp)."""
    from PIL import Image

    from lightning_pc.viz import render

    n = len(pos)
    rows = np.unique(np.linspace(0, max(n - 1, 0), min(n, max_points)).astype(np.int64))
    pts = np.asarray(pos[rows], dtype=np.float64)
    pts = (pts - pts.min(0)).astype(np.float32) if len(pts) else pts.astype(np.float32)
    image = render(pts, colors[rows], views=tuple(views), width=size, height=size, shading="depth")
    tmp = path.with_name(path.name + ".tmp")
    try:
        Image.fromarray(image).save(tmp, format="PNG")
        _replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class FeatureWriter(BasePredictionWriter):
    """Averages fragment features onto every scan point and writes them (see the module
    docstring for the files).

    Args:
        output_dir: output folder (``None``: the data module's ``output_dir``).
        dtype: ``"float16"`` or ``"float32"`` feature files.
        pca: write the PCA colours (``.pca.ply``) and picture (``.pca.png``).
        image_size: side of each rendered view in pixels.
        views: the rendered views (see :data:`lightning_pc.viz.VIEWS`).
        max_sum_memory: sums of a scan up to this many bytes stay in memory, larger ones go
            to a memory-mapped ``<name>.sums.tmp`` next to the outputs.
        info: extra entries for ``index.json`` (the network, its inputs ...).
    """

    def __init__(
        self,
        output_dir: str | None = None,
        dtype: str = "float16",
        pca: bool = True,
        image_size: int = 768,
        views: Sequence[str] = ("iso", "top"),
        max_sum_memory: int = 512 << 20,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__("batch")
        if dtype not in ("float16", "float32"):
            raise ValueError(f"dtype must be 'float16' or 'float32', got {dtype!r}")
        self.output_dir, self.dtype, self.pca = output_dir, dtype, pca
        self.image_size, self.views = image_size, tuple(views)
        self.max_sum_memory = max_sum_memory
        self.info = dict(info or {})
        self._sums: dict[int, ScanSums] = {}
        self._sources: dict[int, Path] = {}
        self.entries: list[dict[str, Any]] = []
        self.written: list[Path] = []

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.predict_loop.return_predictions = False  # the sums live here, bounded
        self._drop()
        self.entries, self.written = [], []

    def _drop(self) -> None:
        for sums in self._sums.values():
            sums.close()
        self._sums, self._sources = {}, {}

    def _folder(self, trainer: L.Trainer) -> Path:
        datamodule = getattr(trainer, "datamodule", None)
        return Path(self.output_dir or getattr(datamodule, "output_dir", None) or "embeddings")

    def _base(self, trainer: L.Trainer, source: Path) -> Path:
        root = getattr(getattr(trainer, "datamodule", None), "root", None)
        if root is None:
            return self._folder(trainer) / Path(source.name).with_suffix("")
        return self._folder(trainer) / scan_output_name(source, Path(root).expanduser().resolve())

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
        """Add one batch of fragments' features; write every scan it completes."""
        rows = getattr(batch, "source_rows", None)
        sources = getattr(batch, "source", None)
        if rows is None or sources is None:
            raise ValueError(
                "FeatureWriter needs fragments of whole scans (PredictScenesDataModule)"
            )
        feats = prediction.detach().float().cpu()
        rows = rows.cpu()
        fragment = batch.batch.cpu()[batch.inverse_index.cpu()]  # covered point -> fragment
        scans = batch.idx.cpu().view(-1)
        totals = batch.num_fragments.cpu().view(-1)
        sizes = batch.scan_points.cpu().view(-1)
        runs = np.flatnonzero(np.diff(scans.numpy(), prepend=-1)).tolist()
        for f, last in zip(runs, runs[1:] + [scans.numel()]):
            scan = int(scans[f])
            if scan not in self._sums:
                points, channels = int(sizes[f]), feats.size(1)
                self._sources[scan] = Path(sources[f])
                base = self._base(trainer, self._sources[scan])
                big = points * channels * 4 > self.max_sum_memory
                file = base.with_name(base.name + ".sums.tmp") if big else None
                self._sums[scan] = ScanSums(points, channels, file, np.float32, counts=True)
            sums = self._sums[scan]
            mine = (fragment >= f) & (fragment < last)
            sums.tensor.index_add_(0, rows[mine], feats[mine])
            sums.counts.index_add_(0, rows[mine], torch.ones_like(rows[mine], dtype=torch.int32))
            sums.seen += last - f
            if sums.seen == int(totals[f]):
                try:
                    self._finish(trainer, scan, sums)
                finally:
                    sums.close()
                    del self._sums[scan]

    def _finish(self, trainer: L.Trainer, scan: int, sums: ScanSums) -> None:
        source = self._sources.pop(scan)
        base = self._base(trainer, source)
        counts = sums.counts.numpy()
        if (counts == 0).any():
            raise RuntimeError(
                f"{source}: {int((counts == 0).sum())} points in no fragment (a bug)"
            )
        base.parent.mkdir(parents=True, exist_ok=True)
        n, channels = sums.array.shape
        target = base.with_name(base.name + ".features.npy")
        tmp = target.with_name(target.name + ".tmp")
        try:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=self.dtype, shape=(n, channels))
            for s in range(0, n, PLY_CHUNK):
                mean = sums.array[s : s + PLY_CHUNK] / counts[s : s + PLY_CHUNK, None]
                out[s : s + PLY_CHUNK] = mean
            out.flush()
            del out
            _replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        sums.close()  # the temporary sums go before the pictures are made
        self.written.append(target)
        features = np.load(target, mmap_mode="r")
        entry: dict[str, Any] = {
            "source": str(source),
            "features": target.relative_to(self._folder(trainer)).as_posix(),
            "points": int(n),
            "channels": int(channels),
            "dtype": self.dtype,
        }
        if self.pca:
            entry.update(self._write_pca(source, base, features, self._folder(trainer)))
        self.entries.append(entry)

    def _write_pca(
        self, source: Path, base: Path, features: np.ndarray, folder: Path
    ) -> dict[str, str]:
        colours = PCAColors()
        colours.fit(features)
        n = len(features)
        reader = ScanChunks(source, PLY_CHUNK)
        if reader.num_points != n:
            raise DataFormatError(source, f"{reader.num_points} points now, {n} when embedded")
        pos = np.empty((n, 3), dtype=np.float64)
        rgb = np.empty((n, 3), dtype=np.uint8)

        def chunks() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
            start = 0
            for part in reader:
                stop = start + len(part["pos"])
                pos[start:stop] = part["pos"]
                rgb[start:stop] = np.round(colours(features[start:stop]) * 255).astype(np.uint8)
                yield part["pos"], np.zeros(stop - start, dtype=np.int32), rgb[start:stop]
                start = stop

        ply = base.with_name(base.name + ".pca.ply")
        write_ply_chunks(
            ply,
            n,
            chunks(),
            comments=[f"source {source.name}", "lightning_pc PCA of features"],
            double=True,
        )
        png = base.with_name(base.name + ".pca.png")
        render_pca_png(png, pos, rgb, size=self.image_size, views=self.views)
        self.written += [ply, png]
        return {
            "pca_ply": ply.relative_to(folder).as_posix(),
            "pca_png": png.relative_to(folder).as_posix(),
        }

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._drop()

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._sums:
            unfinished = sorted(self._sums)
            self._drop()
            raise RuntimeError(
                f"embed ended before every fragment of scans {unfinished} arrived: their "
                "features were not written"
            )
        folder = self._folder(trainer)
        folder.mkdir(parents=True, exist_ok=True)
        name = "index.json" if trainer.world_size == 1 else f"index_rank{trainer.global_rank}.json"
        index = {"format": INDEX_FORMAT, **self.info, "scans": self.entries}
        path = folder / name
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(index, indent=1) + "\n")
            _replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        self.written.append(path)


def load_task_checkpoint(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The network of a task checkpoint (``lightning-pc fit``'s ``.ckpt``), with its weights,
    and the task's hyperparameters.

    Raises:
        DataFormatError: the file cannot be read or is not a task checkpoint (named).
    """
    from lightning_pc.models import create_model

    path = Path(path)
    try:
        ckpt = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as error:  # noqa: BLE001 - named below
        raise DataFormatError(path, f"cannot read the checkpoint ({error})") from error
    hparams = dict(ckpt.get("hyper_parameters") or {}) if isinstance(ckpt, dict) else {}
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    name = hparams.get("model")
    if not isinstance(name, str) or not isinstance(state, Mapping):
        raise DataFormatError(
            path,
            "is not a task checkpoint of lightning-pc (needs hyper_parameters.model, a "
            "registered network name, and a state_dict)",
        )
    kwargs: dict[str, Any] = {"in_channels": int(hparams.get("in_channels", 0) or 0)}
    kwargs.update(hparams.get("model_kwargs") or {})
    network = create_model(name, num_classes=int(hparams.get("num_classes", 2)), **kwargs)
    weights = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
    try:
        network.load_state_dict(weights, strict=True)
    except RuntimeError as error:
        raise DataFormatError(path, f"its weights do not fit {name!r}: {error}") from error
    return network, hparams


def default_inputs(in_channels: int) -> list[str]:
    """The input channels of our networks built for ``in_channels`` features: none,
    colours (3, as every indoor recipe trains), or colours and normals (6, Sonata's).

    Raises:
        ValueError: another width (say which channels with ``inputs``).
    """
    if in_channels == 0:
        return []
    if in_channels == 3:
        return ["rgb"]
    if in_channels == 6:  # Sonata's and Pointcept's PTv3's colour + normals
        return ["rgb", "normal"]
    raise ValueError(
        f"the network reads {in_channels} input channels: name them in order with "
        f"--inputs (from {', '.join(CHANNELS)})"
    )


def embed_scans(
    scans: str | Path,
    network: nn.Module,
    inputs: Sequence[str],
    output_dir: str | Path = "embeddings",
    *,
    block_size: float = 3.0,
    stride: float | None = None,
    voxel_size: float | None = 0.04,
    crop: str = "block",
    batch_size: int = 4,
    batch_points: int | None = None,
    num_workers: int = 0,
    dtype: str = "float16",
    pca: bool = True,
    image_size: int = 768,
    views: Sequence[str] = ("iso", "top"),
    max_sum_memory: int = 512 << 20,
    scales: Mapping[str, Sequence[float]] | None = None,
    trainer_kwargs: Mapping[str, Any] | None = None,
    info: Mapping[str, Any] | None = None,
) -> FeatureWriter:
    """Write per-point features of every scan under ``scans`` (see the module docstring).

    Args:
        scans: a scan file or a folder of them (the formats ``lightning-pc predict`` reads).
        network: a :class:`~lightning_pc.models.PointNetwork` (its backbone is used) or a
            backbone.
        inputs: the network's input channels in order (see :class:`InputAdapter`).
        output_dir: output folder.
        block_size, stride, voxel_size, crop, batch_size, batch_points, num_workers: the
            fragments and their batches, as
            :class:`~lightning_pc.data.modules.predict.PredictScenesDataModule` takes them
            (a ``block_size`` larger than the scan gives one fragment: the whole scan in
            one pass).
        dtype, pca, image_size, views, max_sum_memory: see :class:`FeatureWriter`.
        scales: see :class:`InputAdapter`.
        trainer_kwargs: for :class:`lightning.Trainer` (``accelerator``, ``devices``,
            ``precision`` ...).
        info: extra entries of ``index.json``.

    Returns:
        the writer (its ``written`` files and ``entries``).
    """
    from lightning_pc.data.datasets.scenes import list_scans
    from lightning_pc.data.modules.predict import PredictScenesDataModule

    files = list_scans(scans)
    read, missing = plan_inputs(files, inputs)
    data = PredictScenesDataModule(
        str(scans),
        class_names=["features"],
        features=read,
        block_size=block_size,
        stride=stride,
        voxel_size=voxel_size,
        crop=crop,
        output_dir=str(output_dir),
        batch_size=batch_size,
        batch_points=batch_points,
        num_workers=num_workers,
    )
    adapter = InputAdapter(inputs, read, scales)
    module = EmbeddingModule(network, adapter)
    entries = {
        "inputs": adapter.inputs,
        "zero_filled": adapter.zero_filled,
        "block_size": block_size,
        "voxel_size": voxel_size,
        **(info or {}),
    }
    writer = FeatureWriter(
        str(output_dir), dtype, pca, image_size, views, max_sum_memory, info=entries
    )
    kwargs: dict[str, Any] = {
        "accelerator": "auto",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_model_summary": False,
    }
    kwargs.update(trainer_kwargs or {})
    kwargs["callbacks"] = [*list(kwargs.get("callbacks") or []), writer]
    trainer = L.Trainer(**kwargs)
    trainer.predict(module, datamodule=data, return_predictions=False)
    return writer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lightning-pc embed",
        description=(
            "Write per-point features of scans (a file or a folder: PLY, PCD, LAS/LAZ, NPY, "
            "TXT/XYZ/PTS, KITTI .bin) from a network's backbone: <name>.features.npy "
            "([points, channels], the file's point order), a PCA picture <name>.pca.png and "
            "<name>.pca.ply, and index.json. Scans of any size: they are cut into "
            "overlapping fragments whose features are averaged per point."
        ),
        epilog=(
            "Examples:\n"
            "  lightning-pc embed scans/ --ckpt_path runs/s3dis/best.ckpt --output_dir feats\n"
            "  lightning-pc embed tile.las --model ptv3 --inputs rgb --block_size 20\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("scans", help="a scan file or a folder searched recursively")
    parser.add_argument("--output_dir", default="embeddings", help="output folder")
    source = parser.add_argument_group("network")
    source.add_argument("--ckpt_path", help="a task checkpoint of lightning-pc fit (.ckpt)")
    source.add_argument(
        "--model", help="a registered network or a pretrained card (lightning-pc --help lists them)"
    )
    source.add_argument(
        "--model_kwargs", default="{}", help="JSON keyword arguments of the network's builder"
    )
    source.add_argument(
        "--pretrained",
        help="with --model CARD: true (the card's published weights, from the Hugging Face "
        "cache) or a checkpoint path (any layout the card's key map reads)",
    )
    source.add_argument(
        "--weights", help="a state dict (.pth/.pt) for --model's backbone (or whole network)"
    )
    source.add_argument(
        "--inputs",
        help="the network's input channels in order, comma separated (coord, rgb/color, "
        "normal, intensity); default: rgb for 3 input channels, none for 0",
    )
    frag = parser.add_argument_group("fragments")
    frag.add_argument("--block_size", type=float, default=3.0, help="fragment side (scan units)")
    frag.add_argument("--stride", type=float, default=None, help="fragment step (block_size/2)")
    frag.add_argument(
        "--voxel_size",
        type=float,
        default=None,
        help="grid sampling in a fragment, scan units (0: none; default: the card's grid with "
        "--pretrained, else 0.04)",
    )
    frag.add_argument("--crop", choices=["block", "sphere"], default="block")
    frag.add_argument("--batch_size", type=int, default=4, help="fragments per batch, at least")
    frag.add_argument("--num_workers", type=int, default=0)
    out = parser.add_argument_group("outputs")
    out.add_argument("--dtype", choices=["float16", "float32"], default="float16")
    out.add_argument("--no_pca", action="store_true", help="no PCA picture nor PCA PLY")
    out.add_argument("--image_size", type=int, default=768, help="pixels per view")
    out.add_argument("--views", default="iso,top", help="rendered views, comma separated")
    run = parser.add_argument_group("device")
    run.add_argument("--accelerator", default="auto")
    run.add_argument("--devices", default="1")
    run.add_argument("--precision", default="32-true", help="e.g. bf16-mixed, 16-mixed")
    return parser


def _split(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [t.strip() for t in text.split(",") if t.strip()]


def card_inputs(name: str) -> tuple[list[str], dict[str, tuple[float, float]]] | None:
    """The input channels and scales of the pretrained card ``name`` (``None``: no card)."""
    from lightning_pc.models.pretrained import find_pretrained

    card = find_pretrained(name)
    if card is None:
        return None
    return channels_of_columns(card.inputs.x)


def network_from_args(
    args: argparse.Namespace,
) -> tuple[nn.Module, list[str], dict[str, tuple[float, float]], dict[str, Any]]:
    """The network, its input channels and their scales, and the index entries, from the
    command's options.

    Raises:
        ValueError: no network, or options that contradict each other.
    """
    from lightning_pc.models import create_model

    inputs = _split(args.inputs)
    scales: dict[str, tuple[float, float]] = {}
    if args.ckpt_path:
        if args.model:
            raise ValueError("--ckpt_path names its network: leave --model out")
        network, hparams = load_task_checkpoint(args.ckpt_path)
        name = str(hparams["model"])
        in_channels = int(hparams.get("in_channels", 0) or 0)
        info = {"network": name, "checkpoint": str(Path(args.ckpt_path).resolve())}
    elif args.model:
        name = args.model
        try:
            kwargs = json.loads(args.model_kwargs)
        except json.JSONDecodeError as error:
            raise ValueError(f"--model_kwargs is not JSON: {error}") from None
        if not isinstance(kwargs, dict):
            raise ValueError("--model_kwargs must be a JSON object")
        card = card_inputs(name)
        pretrained: bool | str = False
        if args.pretrained:
            pretrained = True if args.pretrained.lower() == "true" else args.pretrained
        if card is None:
            default = 3 if inputs is None else _width(inputs, coord=False)
            kwargs.setdefault("in_channels", default)
            num_classes: int | None = int(kwargs.pop("num_classes", 2))
        else:
            num_classes = kwargs.pop("num_classes", None)
        network = create_model(name, num_classes=num_classes, pretrained=pretrained, **kwargs)
        in_channels = int(kwargs.get("in_channels", getattr(network, "in_channels", 0)) or 0)
        info = {"network": name}
        if pretrained:
            info["pretrained"] = str(pretrained)
        if args.weights:
            _load_weights(network, Path(args.weights))
            info["weights"] = str(Path(args.weights).resolve())
        elif not pretrained:
            warnings.warn(
                f"--model {name} without --pretrained, --weights or --ckpt_path: the "
                "features are those of random weights",
                UserWarning,
                stacklevel=2,
            )
    else:
        raise ValueError(
            "name a network: --ckpt_path CHECKPOINT, or --model NAME [--pretrained true|PATH] "
            "[--weights PATH]"
        )
    card = card_inputs(name)
    if inputs is None and card is not None:
        inputs, scales = card
    elif inputs is None:
        inputs = default_inputs(in_channels)
    return network, inputs, scales, info


def _width(inputs: Sequence[str], coord: bool = True) -> int:
    return sum(CHANNELS[channel_name(c)] for c in inputs if coord or channel_name(c) != "coord")


def _load_weights(network: nn.Module, path: Path) -> None:
    """A state dict into the whole network, or into its backbone when its keys are the
    backbone's (``backbone.`` / ``model.backbone.`` prefixes or none)."""
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as error:  # noqa: BLE001 - named below
        raise DataFormatError(path, f"cannot read the weights ({error})") from error
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise DataFormatError(path, "holds no state dict")
    try:
        if any(k.startswith(("head.", "model.head.")) for k in state):
            network.load_state_dict(
                {k.removeprefix("model."): v for k, v in state.items()}, strict=True
            )
        elif callable(load := getattr(network, "load_backbone_state_dict", None)):
            load(state, strict=True)
        else:
            network.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise DataFormatError(path, f"the weights do not fit the network: {error}") from error


def _voxel_size(args: argparse.Namespace) -> float:
    """``--voxel_size``, or where it is not given the grid of the card ``--model`` names (in
    scan units: the card's grid over its coordinate scale), else 0.04."""
    if args.voxel_size is not None:
        return float(args.voxel_size)
    if args.model:
        from lightning_pc.models.pretrained import find_pretrained

        card = find_pretrained(args.model)
        if card is not None:
            return card.inputs.grid_size / card.inputs.coord_scale
    return 0.04


def main(argv: Sequence[str] | None = None) -> int:
    """``lightning-pc embed``: see :func:`_parser` (``--help``). Returns the exit status:
    2 with ``error: ...`` on a bad option or input (set ``LIGHTNING_PC_TRACEBACK=1`` for the
    traceback)."""
    from lightning_pc.data.errors import MissingDataError

    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        network, inputs, scales, info = network_from_args(args)
        devices: Any = int(args.devices) if args.devices.isdigit() else args.devices
        writer = embed_scans(
            args.scans,
            network,
            inputs,
            args.output_dir,
            block_size=args.block_size,
            stride=args.stride,
            voxel_size=_voxel_size(args) or None,
            crop=args.crop,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            dtype=args.dtype,
            pca=not args.no_pca,
            image_size=args.image_size,
            views=_split(args.views) or ["iso"],
            scales=scales,
            trainer_kwargs={
                "accelerator": args.accelerator,
                "devices": devices,
                "precision": args.precision,
            },
            info=info,
        )
    except (ValueError, KeyError, MissingDataError, DataFormatError) as error:
        if os.environ.get("LIGHTNING_PC_TRACEBACK"):
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(
            f"error: {message}\n(set LIGHTNING_PC_TRACEBACK=1 for the full traceback)",
            file=sys.stderr,
            flush=True,
        )
        return 2
    scans = len(writer.entries)
    print(f"features of {scans} scan(s) written under {args.output_dir}", flush=True)
    return 0
