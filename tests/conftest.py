"""Shared pytest configuration: the `gpu` marker skips without CUDA; tiny networks."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

# THE tiny-model table: tiny widths per registered network (the configs keep the published
# architectures). Every test that builds or trains a small network takes its kwargs here
# (``tiny_kwargs``, the ``tiny_model`` fixture); tests/models/test_contract.py checks that
# every registered name has an entry.
TINY_MODELS: dict[str, dict[str, Any]] = {
    "pointnet2_ssg": dict(
        num_samples=[[8], [8]], sa_mlps=[[[8]], [[16]]], global_mlp=[16], head=[16]
    ),
    "pointnet2_msg": dict(
        radii=[[0.2, 0.4], [0.4, 0.8]],
        num_samples=[[8, 8], [8, 8]],
        sa_mlps=[[[8], [8]], [[16], [16]]],
        global_mlp=[16],
        head=[16],
    ),
    "pointnet2_ssg_part_seg": dict(
        num_samples=[[8], [8]],
        sa_mlps=[[[8]], [[16]]],
        global_mlp=[16],
        fp_mlps=[[16], [16], [16]],
        head=[16],
    ),
    "pointnet2_msg_part_seg": dict(
        radii=[[0.2, 0.4], [0.4, 0.8]],
        num_samples=[[8, 8], [8, 8]],
        sa_mlps=[[[8], [8]], [[16], [16]]],
        global_mlp=[16],
        fp_mlps=[[16], [16], [16]],
        head=[16],
    ),
    "pointnet2_ssg_sem_seg": dict(
        ratios=[0.5, 0.5],
        radii=[[0.5], [1.0]],
        num_samples=[[8], [8]],
        sa_mlps=[[[8]], [[16]]],
        global_mlp=[],
        fp_mlps=[[16], [16]],
        head=[16],
    ),
    "pointnet2_msg_sem_seg": dict(
        ratios=[0.5, 0.5],
        radii=[[0.25, 0.5], [0.5, 1.0]],
        num_samples=[[8, 8], [8, 8]],
        sa_mlps=[[[8], [8]], [[16], [16]]],
        global_mlp=[],
        fp_mlps=[[16], [16]],
        head=[16],
    ),
    "dgcnn": dict(k=4, edge_mlps=[[8], [8]], emb_dims=16, head=[16], dropout_layers=[0]),
    "dgcnn_part_seg": dict(
        k=4, edge_mlps=[[8], [8]], emb_dims=16, head=[16], dropout_layers=[0], category_channels=8
    ),
    "dgcnn_sem_seg": dict(k=4, edge_mlps=[[8], [8]], emb_dims=16, head=[16], dropout_layers=[0]),
    "sparse_resnet": dict(voxel_size=0.1, channels=[8, 8, 16], layers=[1, 1], head=[16]),
    "sparse_unet": dict(voxel_size=0.2, stem_channels=8, channels=[8, 8, 8, 8], layers=[1] * 4),
    "ptv3": dict(
        grid_size=0.2, stride=[2], enc_depths=[1, 1], enc_channels=[8, 16], enc_num_head=[1, 2],
        enc_patch_size=[16, 16], dec_depths=[1], dec_channels=[8], dec_num_head=[1],
        dec_patch_size=[16],
    ),  # fmt: skip
    "ptv3_cls": dict(
        grid_size=0.1, stride=[2], enc_depths=[1, 1], enc_channels=[8, 16], enc_num_head=[1, 2],
        enc_patch_size=[16, 16],
    ),  # fmt: skip
}
# the self-supervised PTv3 encoders (lightning_pc/models/sonata.py): one tiny shape for all
for _name in (
    "sonata_small",
    "sonata_base",
    "concerto_tiny",
    "concerto_small",
    "concerto_base",
    "concerto_large",
    "utonia_tiny",
    "utonia_small",
    "utonia_base",
):
    TINY_MODELS[_name] = dict(
        grid_size=0.2,
        stride=[2],
        enc_depths=[1, 1],
        enc_channels=[6, 12],
        enc_num_head=[1, 2],
        enc_patch_size=[16, 16],
    )


def tiny_kwargs(name: str, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments of a tiny ``name`` (a fresh copy), ``overrides`` on top."""
    return {**copy.deepcopy(TINY_MODELS[name]), **overrides}


@pytest.fixture
def tiny_models() -> dict[str, dict[str, Any]]:
    """Registered network name -> keyword arguments of a tiny instance (a fresh copy)."""
    return copy.deepcopy(TINY_MODELS)


@pytest.fixture
def tiny_model() -> Callable[..., nn.Module]:
    """``tiny_model(name, num_classes=4, **overrides)``: the registered network ``name`` at
    the tiny widths of :data:`TINY_MODELS` (``overrides`` on top)."""
    from lightning_pc.models import create_model

    def build(name: str, num_classes: int = 4, **overrides: Any) -> nn.Module:
        return create_model(name, num_classes=num_classes, **tiny_kwargs(name, **overrides))

    return build


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
