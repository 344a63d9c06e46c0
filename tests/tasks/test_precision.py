"""Tasks under Lightning's mixed precision on the CPU, and the warning for emulated precision."""

from __future__ import annotations

import platform
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch

from lightning_pc.data import SyntheticShapesDataModule
from lightning_pc.tasks import ClassificationTask, PartSegmentationTask
from lightning_pc.tasks import precision as precision_mod

TINY_DGCNN = dict(k=8, edge_mlps=[[16], [16]], emb_dims=32, head=[16])
TINY_PART = dict(
    num_samples=[[8], [8]],
    sa_mlps=[[[8]], [[16]]],
    global_mlp=[16],
    fp_mlps=[[16], [16], [16]],
    head=[16],
)


def _fit(task: L.LightningModule, data: L.LightningDataModule, tmp_path: Path, precision: str):
    trainer = L.Trainer(
        default_root_dir=tmp_path,
        logger=False,
        enable_checkpointing=False,
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        accelerator="cpu",
        precision=precision,  # type: ignore[arg-type]
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(task, data)
    return trainer


def _record_head_dtypes(task: L.LightningModule) -> list[torch.dtype]:
    seen: list[torch.dtype] = []
    head = task.model.head
    head.register_forward_hook(lambda mod, args, out: seen.append(out.dtype))
    return seen


@pytest.fixture
def cpu_flags(monkeypatch: pytest.MonkeyPatch):
    """Sets the CPU flags the precision warning sees, and forgets earlier warnings."""
    monkeypatch.setattr(precision_mod, "_warned", set())

    def set_flags(flags: set[str] | None) -> None:
        value = None if flags is None else frozenset(flags)
        monkeypatch.setattr(precision_mod, "cpu_flags", lambda: value)

    return set_flags


@pytest.mark.parametrize("kind", ["classification", "part_segmentation"])
def test_bf16_mixed_fit_on_cpu(kind: str, tmp_path: Path, cpu_flags) -> None:
    cpu_flags({"avx512_bf16"})  # no warning here; the warning has its own tests
    data = SyntheticShapesDataModule(
        num_train=8, num_val=4, num_test=4, num_points=96, task=kind, batch_size=4
    )
    if kind == "classification":
        task: L.LightningModule = ClassificationTask(
            model="dgcnn", model_kwargs=TINY_DGCNN, num_classes=data.num_classes
        )
    else:
        task = PartSegmentationTask(
            model_kwargs=TINY_PART, num_classes=data.num_classes, part_offsets=data.part_offsets
        )
    seen = _record_head_dtypes(task)
    before = [p.detach().clone() for p in task.parameters()]
    trainer = _fit(task, data, tmp_path, "bf16-mixed")
    assert trainer.precision == "bf16-mixed"
    assert seen and all(d == torch.bfloat16 for d in seen)  # autocast was on in every step
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert torch.isfinite(trainer.callback_metrics["val/loss"])
    after = list(task.parameters())
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))  # it trained


def test_16_mixed_on_cpu_runs_as_bf16(tmp_path: Path, cpu_flags) -> None:
    """Lightning has no float16 autocast on the CPU: it warns and trains in bfloat16."""
    cpu_flags({"avx512_bf16"})
    data = SyntheticShapesDataModule(num_train=8, num_val=4, num_test=4, num_points=96)
    task = ClassificationTask(model="dgcnn", model_kwargs=TINY_DGCNN, num_classes=data.num_classes)
    seen = _record_head_dtypes(task)
    with pytest.warns(UserWarning, match="bf16-mixed"):
        trainer = _fit(task, data, tmp_path, "16-mixed")
    assert trainer.precision == "bf16-mixed"
    assert seen and all(d == torch.bfloat16 for d in seen)


def test_emulated_bf16_warns_once(tmp_path: Path, cpu_flags) -> None:
    cpu_flags({"fpu", "sse2", "avx2", "avx512f", "avx512bw"})  # AVX-512 without bf16
    data = SyntheticShapesDataModule(num_train=4, num_val=4, num_test=4, num_points=64)
    task = ClassificationTask(model="dgcnn", model_kwargs=TINY_DGCNN, num_classes=data.num_classes)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _fit(task, data, tmp_path, "bf16-mixed")
        trainer = L.Trainer(accelerator="cpu", precision="bf16-mixed", logger=False)
        trainer.validate(task, data, verbose=False)  # a second stage: no second warning
    ours = [w for w in caught if "without native bfloat16" in str(w.message)]
    assert len(ours) == 1
    assert "avx512_bf16" in str(ours[0].message) and "32-true" in str(ours[0].message)


def test_warning_decisions(cpu_flags) -> None:
    msg = precision_mod.slow_precision_message
    cpu_flags({"avx2"})
    assert "bfloat16" in (msg("bf16-mixed", "cpu") or "")
    assert "bfloat16" in (msg("bf16-true", "cpu") or "")
    assert "float16" in (msg("16-true", "cpu") or "")
    assert msg("32-true", "cpu") is None and msg("64-true", "cpu") is None
    assert msg("bf16-mixed", "cuda") is None  # GPUs are not judged here
    cpu_flags({"avx512_bf16"})
    assert msg("bf16-mixed", "cpu") is None
    assert msg("16-true", "cpu") is not None  # bf16 instructions are not fp16 ones
    cpu_flags({"avx512_bf16", "avx512_fp16", "amx_bf16", "amx_fp16"})
    assert msg("16-true", "cpu") is None
    cpu_flags({"fp", "asimd", "bf16", "fphp"})  # an Arm CPU with both
    assert msg("bf16-mixed", "cpu") is None and msg("16-true", "cpu") is None
    cpu_flags(None)  # no /proc/cpuinfo: unknown, no warning
    assert msg("bf16-mixed", "cpu") is None
    # warns once per precision
    cpu_flags({"avx2"})
    with pytest.warns(UserWarning, match="bfloat16"):
        assert precision_mod.warn_if_slow_precision("bf16-mixed", "cpu")
    assert not precision_mod.warn_if_slow_precision("bf16-mixed", "cpu")


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.machine() != "x86_64", reason="x86-64 Linux"
)
def test_real_cpu_flags_parse() -> None:
    flags = precision_mod.cpu_flags()
    assert flags is not None and "sse2" in flags  # every x86-64 CPU has SSE2
    assert precision_mod.cpu_has_native("bf16") == bool(flags & {"avx512_bf16", "amx_bf16"})
