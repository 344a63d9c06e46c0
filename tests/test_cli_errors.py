"""The CLI as a new user meets it: configuration errors in a few lines, help that names things."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightning_pc.cli import TRACEBACK_ENV, cli_description, main, plain_config_error

QUICKSTART = str(Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml")


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (["--model.init_args.model", "nosuchnet"], "unknown model 'nosuchnet'; known: dgcnn"),
        (["--model.init_args.class_weights", "[1,2]"], "class_weights has 2 entries for 12 classes"),
        (["--model.init_args.num_classes", "5"], "num_classes 5 disagrees with the data module"),
    ],
)
def test_config_error_shows_our_message_first(
    override: list[str], expected: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", QUICKSTART, *override])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("error: ") and expected in err[0]
    assert len(err) <= 4
    assert not any("Union subtypes" in line or "Traceback" in line for line in err)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (["--data.init_args.train_transforms",
          "[NormalizeScale, RandomScale, {class_path: RandomRotat, init_args: {axis: z}}]"],
         "error: data.init_args.train_transforms[2]: unknown transform 'RandomRotat'; did you "
         "mean 'RandomRotate'?"),
        (["--data.init_args.eval_transforms", "[{class_path: RandomRotate, init_args: {angle: 3}}]"],
         "error: data.init_args.eval_transforms[0]: RandomRotate has no argument 'angle' "
         "(RandomRotate accepts: axis='z', max_degrees=180)"),
        (["--model.init_args.tta_transforms", "[{class_path: RandomScale, init_args: {low: x}}]"],
         "error: model.init_args.tta_transforms[0]: RandomScale: argument 'low' must be float"),
    ],
)
def test_bad_transform_is_named_by_config_location_before_anything_is_built(
    override: list[str], expected: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    import lightning_pc.data.modules.base as data_base
    import lightning_pc.tasks.base as task_base

    built: list[str] = []
    monkeypatch.setattr(task_base, "create_model", lambda *a, **k: built.append("model"))
    monkeypatch.setattr(data_base.PointCloudDataModule, "setup", lambda *a, **k: built.append("data"))
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", QUICKSTART, *override])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith(expected) and len(err) <= 3, err
    assert built == []


def test_missing_data_root_is_one_message(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    config = str(Path(QUICKSTART).parent / "modelnet40_pointnet2_ssg.yaml")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", config, f"--data.init_args.root={tmp_path / 'nothing'}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ModelNet40: no dataset found at") and "Traceback" not in err


def test_traceback_on_request(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(TRACEBACK_ENV, "1")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="unknown model 'nosuchnet'"):
        main(["fit", "--config", QUICKSTART, "--model.init_args.model", "nosuchnet"])


def test_other_errors_are_not_rewritten() -> None:
    assert plain_config_error(RuntimeError("CUDA out of memory")) is None
    wrapped = ValueError(
        "Does not validate against any of the Union subtypes\nSubtypes: [A, None]\nErrors:\n"
        "  - 'data root /x does not exist'\n  - Expected a <class 'NoneType'>\nGiven value: 1"
    )
    assert plain_config_error(wrapped).splitlines()[0] == "error: data root /x does not exist"  # type: ignore[union-attr]


def test_help_names_tasks_networks_and_data_modules() -> None:
    text = cli_description()
    for name in ("ClassificationTask", "SemanticSegmentationTask", "pointnet2_ssg", "dgcnn",
                 "S3DISDataModule", "SyntheticShapesDataModule"):
        assert name in text


def test_every_registered_network_has_a_description() -> None:
    from lightning_pc.models.registry import describe_model, list_models

    assert {name: describe_model(name) for name in list_models() if not describe_model(name)} == {}


def _help(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(
    ("task", "network"),
    [("ClassificationTask", "pointnet2_ssg"), ("SemanticSegmentationTask", "ptv3"),
     ("PartSegmentationTask", "dgcnn_part_seg")],
)
def test_task_help_is_short_and_lists_the_networks(
    task: str, network: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from lightning_pc.models.registry import describe_model, list_models

    text = _help(["fit", "--model.help", task], capsys)
    assert "torch.nn." not in text and "torch_geometric" not in text  # was ~700 lines of them
    assert len(text.splitlines()) < 150  # 794-814 lines before
    assert "--model.lr" in text and "--model.class_weights" in text  # the task's own options
    for name in list_models():  # each network on its own line, with its description
        assert f"  {name}: {describe_model(name)}"[:60] in text
    assert network in text


def test_fit_help_names_networks_and_data_modules(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(["fit", "--help"], capsys)
    for name in ("pointnet2_ssg", "sparse_unet", "ptv3", "SyntheticShapesDataModule",
                 "S3DISDataModule", "ClassificationTask", "--trainer.max_epochs"):
        assert name in text
    top = _help(["--help"], capsys)
    assert "  dgcnn: DGCNN classifier (ModelNet40 shapes)" in top and "  ModelNetDataModule: " in top


@pytest.mark.slow
def test_quickstart_rerun_keeps_best_ckpt_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's `--ckpt_path runs/quickstart/checkpoints/best.ckpt` stays true on a re-run."""
    import json

    monkeypatch.chdir(tmp_path)
    tiny = {"sa_mlps": [[[8]], [[16]]], "global_mlp": [16], "head": [16], "dropout": 0.0}
    args = ["fit", "--config", QUICKSTART, "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1",
            "--data.init_args.num_train=4", "--data.init_args.num_val=2",
            "--data.init_args.num_points=32", "--data.init_args.batch_size=2",
            f"--model.init_args.model_kwargs={json.dumps(tiny)}"]
    main(args)
    main(args)
    folder = tmp_path / "runs" / "quickstart" / "checkpoints"
    assert sorted(p.name for p in folder.glob("*.ckpt")) == ["best.ckpt", "last.ckpt"]
    out = capsys.readouterr().out
    assert f"--config {folder / 'config.yaml'} --ckpt_path {folder / 'best.ckpt'}" in out


def test_checkpoint_with_other_class_count_says_what_differs() -> None:
    import torch

    from lightning_pc.cli import checkpoint_mismatch_message

    trained = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Linear(16, 12))
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Linear(16, 5))
    with pytest.raises(RuntimeError) as info:
        model.load_state_dict(trained.state_dict())  # torch's own error text
    text = checkpoint_mismatch_message(info.value)
    assert text is not None
    assert "1.weight: [12, 16] vs [5, 16]" in text and "1.bias: [12] vs [5]" in text
    assert "checkpoint has 12 classes, this model 5" in text
    assert checkpoint_mismatch_message(RuntimeError("something else")) is None
