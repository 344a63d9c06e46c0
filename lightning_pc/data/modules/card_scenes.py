"""CardScenesDataModule: whole scans for ``predict`` with a pretrained card's network, its
inputs laid out as the card says and its classes and palette in the outputs."""

from __future__ import annotations

from typing import Any

from lightning_pc.data.input_channels import ChannelLayout, channels_of_columns, plan_inputs
from lightning_pc.data.modules.predict import PredictScenesDataModule


class CardScenesDataModule(PredictScenesDataModule):
    """:class:`~lightning_pc.data.modules.predict.PredictScenesDataModule` for a pretrained
    card (:mod:`lightning_pc.models.pretrained`): the class names and palette of the outputs
    (``<scan>.ply`` colours, ``<scan>.counts.csv`` names, the LAS classification copy) are
    the card's, and each batch's ``x`` is laid out as the card's network reads it
    (:class:`~lightning_pc.data.input_channels.ChannelLayout`: its channels in order, the
    card's colour scaling, zeros for the channels the scans lack, which one warning names).
    The fragments are voxelised on the card's grid (one point per voxel, as Pointcept's
    test-time ``GridSample``) unless ``voxel_size`` is given.

    Example::

        lightning-pc predict --config configs/predict_ptv3_scannet20.yaml \\
            --data.init_args.root my_scan.ply --data.init_args.output_dir labelled

    Args:
        card: the pretrained card's name (e.g. ``ptv3_scannet20``).
        root: a scan file or a folder searched recursively for scan files.
        block_size: side of a block in x-y, or a sphere's diameter (metres): the card's
            network sees a fragment of this size at a time.
        stride: step between fragments (``None``: ``block_size / 2``).
        voxel_size: grid sampling inside a fragment (``None``: the card's grid size).
        crop: ``"block"`` or ``"sphere"``.
        sphere_points: with spheres, at most this many points each (``None``: all).
        output_dir: where the writer puts the results.
        batch_size: fragments per batch, at least.
        num_workers: loader workers.
        crop_points: points a fragment is expected to have (a warning names scans whose
            fragments hold far fewer).
        batch_points: a batch takes more fragments while their points stay within this.
    """

    def __init__(
        self,
        card: str = "ptv3_scannet20",
        root: str = "scans",
        block_size: float = 6.0,
        stride: float | None = None,
        voxel_size: float | None = None,
        crop: str = "block",
        sphere_points: int | None = None,
        output_dir: str = "predictions",
        batch_size: int = 1,
        num_workers: int = 0,
        crop_points: int = 50000,
        batch_points: int | None = None,
    ) -> None:
        from lightning_pc.data.datasets.scenes import list_scans
        from lightning_pc.models.pretrained import get_pretrained

        found = get_pretrained(card)
        if not found.class_names:
            raise ValueError(
                f"pretrained card {card!r} has no classes (an encoder): use "
                "`lightning-pc embed` for its features"
            )
        inputs, scales = channels_of_columns(found.inputs.x)
        read, _ = plan_inputs(list_scans(root), inputs)
        super().__init__(
            root,
            class_names=list(found.class_names),
            features=read,
            block_size=block_size,
            stride=stride,
            voxel_size=found.inputs.grid_size if voxel_size is None else voxel_size,
            crop=crop,
            sphere_points=sphere_points,
            output_dir=output_dir,
            batch_size=batch_size,
            num_workers=num_workers,
            crop_points=crop_points,
            batch_points=batch_points,
        )
        self.card = card
        self.layout = ChannelLayout(inputs, read, scales)
        self._palette = [list(c) for c in found.palette]

    @property
    def palette(self) -> list[list[int]]:
        return self._palette

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Lays out the batch's ``x`` as the card's network reads it."""
        batch.x = self.layout(batch.pos, getattr(batch, "x", None))
        return batch


CardScenes = CardScenesDataModule
