"""The CLI as a new user meets it: configuration errors in a few lines, help that names things."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightning_pc.cli import TRACEBACK_ENV, cli_description, main, plain_config_error

QUICKSTART = str(Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml")


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            ["--model.init_args.model", "nosuchnet"],
            "unknown model 'nosuchnet'; known: concerto_base",
        ),
        (
            ["--model.init_args.class_weights", "[1,2]"],
            "class_weights has 2 entries for 12 classes",
        ),
        (["--model.init_args.num_classes", "5"], "num_classes 5 disagrees with the data module"),
    ],
)
def test_config_error_shows_our_message_first(
    override: list[str],
    expected: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
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
        (
            [
                "--data.init_args.train_transforms",
                "[NormalizeScale, RandomScale, {class_path: RandomRotat, init_args: {axis: z}}]",
            ],
            "error: data.init_args.train_transforms[2]: unknown transform 'RandomRotat'; did you "
            "mean 'RandomRotate'?",
        ),
        (
            [
                "--data.init_args.eval_transforms",
                "[{class_path: RandomRotate, init_args: {angle: 3}}]",
            ],
            "error: data.init_args.eval_transforms[0]: RandomRotate has no argument 'angle' "
            "(RandomRotate accepts: axis='z', max_degrees=180, degrees=None, p=1, "
            "center='origin')",
        ),
        (
            [
                "--model.init_args.tta_transforms",
                "[{class_path: RandomScale, init_args: {low: x}}]",
            ],
            "error: model.init_args.tta_transforms[0]: RandomScale: argument 'low' must be float",
        ),
    ],
)
def test_bad_transform_is_named_by_config_location_before_anything_is_built(
    override: list[str],
    expected: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    import lightning_pc.data.modules.base as data_base
    import lightning_pc.tasks.base as task_base

    built: list[str] = []
    monkeypatch.setattr(task_base, "create_model", lambda *a, **k: built.append("model"))
    monkeypatch.setattr(
        data_base.PointCloudDataModule, "setup", lambda *a, **k: built.append("data")
    )
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
    for name in (
        "ClassificationTask",
        "SemanticSegmentationTask",
        "pointnet2_ssg",
        "dgcnn",
        "S3DISDataModule",
        "SyntheticShapesDataModule",
    ):
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
    [
        ("ClassificationTask", "pointnet2_ssg"),
        ("SemanticSegmentationTask", "ptv3"),
        ("PartSegmentationTask", "dgcnn_part_seg"),
    ],
)
def test_task_help_is_short_and_lists_the_networks(
    task: str, network: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from lightning_pc.models.registry import describe_model, list_models

    text = _help(["fit", "--model.help", task], capsys)
    assert "torch.nn." not in text and "torch_geometric" not in text  # was ~700 lines of them
    # the task's options, the networks and the pretrained cards (794-814 lines with torch.nn)
    assert len(text.splitlines()) < 250
    assert "--model.lr" in text and "--model.class_weights" in text  # the task's own options
    for name in list_models():  # each network on its own line, with its description
        assert f"  {name}: {describe_model(name)}"[:60] in text
    assert network in text


def test_fit_help_names_networks_and_data_modules(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(["fit", "--help"], capsys)
    for name in (
        "pointnet2_ssg",
        "sparse_unet",
        "ptv3",
        "SyntheticShapesDataModule",
        "S3DISDataModule",
        "ClassificationTask",
        "--trainer.max_epochs",
    ):
        assert name in text
    top = _help(["--help"], capsys)
    assert (
        "  dgcnn: DGCNN classifier (ModelNet40 shapes)" in top and "  ModelNetDataModule: " in top
    )


@pytest.mark.slow
def test_quickstart_rerun_keeps_best_ckpt_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's `--ckpt_path runs/quickstart/checkpoints/best.ckpt` stays true on a re-run."""
    import json

    monkeypatch.chdir(tmp_path)
    tiny = {"sa_mlps": [[[8]], [[16]]], "global_mlp": [16], "head": [16], "dropout": 0.0}
    args = [
        "fit",
        "--config",
        QUICKSTART,
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=1",
        "--trainer.limit_val_batches=1",
        "--data.init_args.num_train=4",
        "--data.init_args.num_val=2",
        "--data.init_args.num_points=32",
        "--data.init_args.batch_size=2",
        f"--model.init_args.model_kwargs={json.dumps(tiny)}",
    ]
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


# --- mistakes in the config file and on the command line: file and line, or the option --------


def _parse_error(
    args: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> list[str]:
    """stderr of ``lightning-pc fit ARGS --print_config`` (nothing trains if it parses), which
    must be a short error: exit 2, ``error: ...`` first, no usage, report or traceback."""
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args, "--print_config"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2, err
    assert err[0].startswith("error: ") and len(err) <= 4, err  # was 54-69 lines
    assert not any(line.startswith(("usage:", "tip:")) for line in err), err
    assert not any("Traceback" in line or "Union subtypes" in line for line in err), err
    return err


def _broken_quickstart(tmp_path: Path, old: str, new: str, marker: str) -> tuple[str, int]:
    """The quickstart config with ``old`` replaced by ``new``, and the line of ``marker``."""
    text = Path(QUICKSTART).read_text()
    assert text.count(old) == 1
    text = text.replace(old, new)
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    return str(path), text[: text.index(marker)].count("\n") + 1


@pytest.mark.parametrize(
    ("old", "new", "marker", "expected"),
    [
        (
            "global_mlp: [128, 256]",
            "global_mlp: [128, 256",
            "global_mlp",
            "the '[' opened here (column 19) is not closed",
        ),
        (
            "  max_epochs: 12",
            "\tmax_epochs: 12",
            "\tmax_epochs",
            "a tab character; YAML indents with spaces only",
        ),
        (
            "  log_every_n_steps: 5",
            "  log_every_n_steps: 5\n  max_epochs: 3",
            "  max_epochs: 3",
            "key 'max_epochs' is already set at line 7 in the same mapping",
        ),
        (
            "  max_epochs: 12",
            "  max_epoch: 12",
            "max_epoch",
            "trainer has no option 'max_epoch'; did you mean 'max_epochs'",
        ),
        (
            "seed_everything: 0",
            "seed_everythin: 0",
            "seed_everythin",
            "has no option 'seed_everythin'; did you mean 'seed_everything'?",
        ),
        (
            "    num_points: 256",
            "    num_point: 256",
            "num_point",
            "SyntheticShapesDataModule has no option 'num_point'; did you mean 'num_points'",
        ),
        (
            "every_n_epochs: 3",
            "every_n_epoch: 3",
            "every_n_epoch",
            "RenderPredictions has no option 'every_n_epoch'; did you mean 'every_n_epochs'?",
        ),
        (
            "  max_epochs: 12",
            "  max_epochs: ten",
            "max_epochs",
            "trainer.max_epochs expects int or null, got 'ten'",
        ),
        (
            "    lr: 0.003",
            "    lr: fast",
            "lr: fast",
            "model.init_args.lr expects float, got 'fast'",
        ),
    ],
    ids=[
        "unclosed-bracket",
        "tab",
        "duplicate-key",
        "unknown-trainer-key",
        "unknown-top-key",
        "unknown-data-key",
        "unknown-callback-key",
        "wrong-type",
        "wrong-type-in-task",
    ],
)
def test_config_file_mistake_names_file_and_line(
    old: str,
    new: str,
    marker: str,
    expected: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    path, line = _broken_quickstart(tmp_path, old, new, marker)
    err = _parse_error(["--config", path], capsys, monkeypatch, tmp_path)
    assert err[0].startswith(f"error: {path}, line {line}: "), err
    assert expected in err[0]
    assert any(quoted.startswith(f"  {line} | ") for quoted in err[1:3]), err  # the line itself


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            ["--trainer.max_epochs", "[1"],
            "error: --trainer.max_epochs '[1': not valid YAML (a '[' is not closed); expects int or null",
        ),
        (
            ["--model.model_kwargs", "{dropout: [1,"],
            "error: --model.model_kwargs '{dropout: [1,': not valid YAML (a '[' is not closed); "
            "expects dict[str, Any] or null",
        ),
        (
            ["--model.init_args.model_kwargs={dropout: 0.1"],
            "error: --model.init_args.model_kwargs '{dropout: 0.1': not valid YAML (a '{' is not "
            "closed); expects dict[str, Any] or null",
        ),
        (
            ["--trainer.max_epochs", "ten"],
            "error: --trainer.max_epochs ten: expects int or null, got 'ten'",
        ),
        (
            ["--model.init_args.lr", "fast"],
            "error: --model.init_args.lr fast: expects float, got 'fast'",
        ),
        (
            ["--model.optimizer", "adamax"],
            "error: --model.optimizer adamax: expects one of 'adamw', 'adam', 'sgd', got 'adamax'",
        ),
        (
            ["--trainer.max_epochz", "3"],
            "error: --trainer.max_epochz: no such option; did you mean --trainer.max_epochs",
        ),
        (
            ["--model.optimizer_kwargs", "{lr: 0.1}"],
            "error: --model.optimizer_kwargs: "
            "ClassificationTask has no option 'optimizer_kwargs'; did you mean 'optimizer'",
        ),
    ],
    ids=[
        "unclosed-list",
        "unclosed-list-in-dict",
        "unclosed-dict",
        "wrong-type",
        "wrong-type-in-task",
        "not-a-choice",
        "unknown-trainer-option",
        "unknown-task-option",
    ],
)
def test_override_mistake_names_the_option(
    override: list[str],
    expected: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    err = _parse_error(["--config", QUICKSTART, *override], capsys, monkeypatch, tmp_path)
    assert err[0].startswith(expected), err


def test_mistake_is_named_where_the_refused_value_is(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path, line = _broken_quickstart(tmp_path, "  max_epochs: 12", "  max_epochs: ten", "max_epochs")
    err = _parse_error(["--config", QUICKSTART, "--config", path], capsys, monkeypatch, tmp_path)
    assert err[0].startswith(f"error: {path}, line {line}: trainer.max_epochs expects"), err
    # jsonargparse checks the option before it reads the file that sets the key again
    err = _parse_error(
        ["--trainer.max_epochs", "ten", "--config", QUICKSTART], capsys, monkeypatch, tmp_path
    )
    assert err[0].startswith("error: --trainer.max_epochs ten: expects int or null"), err


def test_missing_config_file_is_named_with_the_nearest_name(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    typo = str(Path(QUICKSTART).with_name("quickstar.yaml"))
    err = _parse_error(["--config", typo], capsys, monkeypatch, tmp_path)
    assert err[0].startswith(f"error: --config {typo}: no such file"), err
    assert err[0].endswith(f"did you mean {QUICKSTART}?"), err
    err = _parse_error(["--config", "nowhere/x.yaml"], capsys, monkeypatch, tmp_path)
    assert err[0] == (
        f"error: --config nowhere/x.yaml: no such file (current folder: {tmp_path}); "
        "the folder nowhere does not exist either"
    )


def test_parse_error_traceback_on_request(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from argparse import ArgumentError

    from lightning_pc.cli import ConfigError

    monkeypatch.setenv(TRACEBACK_ENV, "1")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="expects int or null") as info:
        main(["fit", "--config", QUICKSTART, "--trainer.max_epochs", "ten"])
    assert isinstance(info.value.__cause__, ArgumentError)  # jsonargparse's whole report
    assert "Union subtypes" in str(info.value.__cause__)


# --- what the review of the short errors found --------------------------------------------------


def _run_error(
    args: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> list[str]:
    """stderr of ``lightning-pc ARGS`` (no subcommand added), a short error as in _parse_error."""
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2, err
    assert err[0].startswith("error: ") and len(err) <= 4, err
    assert not any("Traceback" in line or "Union subtypes" in line for line in err), err
    return err


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("comment.yaml", "trainer:\n  max_epochs: 2\t# two epochs\n"),
        ("trailing.yaml", "trainer:\n  max_epochs: 2\t\n"),
        ("after-colon.yaml", "trainer:\n  max_epochs:\t2\n"),
        ("in-brackets.yaml", "trainer:\n  max_epochs: 2\n  plugins: [\t]\n"),
        ("indented.json", '{\n\t"trainer": {\n\t\t"max_epochs": 2\n\t}\n}\n'),
    ],
)
def test_config_with_a_tab_that_jsonargparse_reads_is_accepted(
    name: str,
    text: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Files are checked with the loader jsonargparse reads them with (libyaml's), which takes
    a tab outside the indentation; the pure-Python one refused them all ("a tab character")."""
    path = tmp_path / name
    path.write_text(text)
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", QUICKSTART, "--config", str(path), "--print_config"])
    captured = capsys.readouterr()
    assert exit_info.value.code == 0, captured.err
    assert "  max_epochs: 2\n" in captured.out


def test_quoted_line_keeps_a_trailing_tab() -> None:
    from lightning_pc.cli_config import _quote_line

    assert _quote_line("a: 1\t\nb: 2  \n", 0) == "  1 | a: 1⇥   "
    assert _quote_line("a: 1\t\nb: 2  \n", 1) == "  2 | b: 2"


def test_bad_value_from_elsewhere_is_not_blamed_on_a_config_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from lightning_pc.cli_config import find_source

    # the value was set where no argument shows it: no file, no line (quickstart says 12)
    assert find_source(["fit", "--config", QUICKSTART], "trainer.max_epochs", "ten") is None
    monkeypatch.setenv("JSONARGPARSE_DEFAULT_ENV", "true")
    monkeypatch.setenv("PL_FIT__TRAINER__MAX_EPOCHS", "ten")
    err = _parse_error(["--config", QUICKSTART], capsys, monkeypatch, tmp_path)
    assert err[0] == (
        "error: environment variable PL_FIT__TRAINER__MAX_EPOCHS=ten: "
        "trainer.max_epochs expects int or null, got 'ten'"
    ), err


def test_bad_value_in_top_level_or_group_config_names_that_file(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    top = tmp_path / "top_bad.yaml"
    top.write_text("fit:\n  trainer:\n    max_epochs: two\n")
    err = _run_error(
        ["--config", str(top), "fit", "--config", QUICKSTART, "--print_config"],
        capsys,
        monkeypatch,
        tmp_path,
    )
    assert err[0] == f"error: {top}, line 3: trainer.max_epochs expects int or null, got 'two'", err
    assert err[1] == "  3 |     max_epochs: two", err
    group = tmp_path / "trainer_bad.yaml"
    group.write_text("max_epochs: ten\n")
    err = _parse_error(
        ["--config", QUICKSTART, "--trainer", str(group)], capsys, monkeypatch, tmp_path
    )
    assert err[0] == (
        f"error: {group}, line 1: trainer.max_epochs expects int or null, got 'ten'"
    ), err


def test_config_before_the_subcommand_says_it_goes_after(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    err = _run_error(["--config", QUICKSTART, "fit"], capsys, monkeypatch, tmp_path)
    assert err[0].startswith(
        f"error: {QUICKSTART}, line 15: 'trainer.logger.init_args.save_dir' is an option of 'fit'"
    ), err
    assert f"(lightning-pc fit --config {QUICKSTART})" in err[0], err
    assert "has no option" not in err[0], err


def test_class_argument_before_the_config_that_sets_the_class(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    err = _parse_error(
        ["--model.lr", "0.01", "--config", QUICKSTART], capsys, monkeypatch, tmp_path
    )
    assert err[0] == (
        "error: --model.lr 0.01: given before model's class is chosen; put it after "
        "the --config (or --model CLASS) that sets model's class_path"
    ), err


def test_bad_value_in_second_list_item_names_that_item(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "two_checkpoints.yaml"
    path.write_text(
        "trainer:\n  callbacks:\n"
        "    - class_path: lightning_pc.callbacks.ModelCheckpoint\n"
        "      init_args:\n        monitor: val/acc\n        save_top_k: 2\n"
        "    - class_path: lightning_pc.callbacks.ModelCheckpoint\n"
        "      init_args:\n        monitor: val/loss\n        save_top_k: many\n"
    )
    err = _parse_error(
        ["--config", QUICKSTART, "--config", str(path)], capsys, monkeypatch, tmp_path
    )
    assert err[0].startswith(f"error: {path}, line 10: "), err
    assert err[1] == "  10 |         save_top_k: many", err


@pytest.mark.timeout(60)
def test_recursive_alias_is_an_error_not_a_hang(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "rec.yaml"
    path.write_text("x: &a\n  - *a\n")
    err = _parse_error(
        ["--config", QUICKSTART, "--config", str(path)], capsys, monkeypatch, tmp_path
    )
    assert err[0].startswith(f"error: {path}, line 1: this list holds itself through an alias"), err


def test_keys_of_different_types_are_not_duplicates(tmp_path: Path) -> None:
    from lightning_pc.cli_config import config_file_problem

    path = tmp_path / "keys.yaml"
    path.write_text('model_kwargs:\n  1: a\n  "1": b\n')
    assert config_file_problem(str(path)) is None
    path.write_text("model_kwargs:\n  \"1\": a\n  '1': b\n")
    assert "key '1' is already set at line 2" in str(config_file_problem(str(path)))


def test_unknown_key_hint_names_the_whole_class_path(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text(
        "trainer:\n  callbacks:\n"
        "    - class_path: lightning_pc.callbacks.ModelCheckpoint\n"
        "      init_args:\n        monitor: val/loss\n        mdoe: min\n"
    )
    err = _parse_error(
        ["--config", QUICKSTART, "--config", str(path)], capsys, monkeypatch, tmp_path
    )
    hint = "lightning-pc fit --trainer.callbacks.help lightning_pc.callbacks.ModelCheckpoint"
    assert err[2] == f"({hint} lists its options)", err
    assert "--trainer.callbacks.mode" in _help(hint.split()[1:], capsys)  # the hint itself works


def test_broken_file_is_not_blamed_on_a_tab_jsonargparse_reads(tmp_path: Path) -> None:
    from lightning_pc.cli_config import config_file_problem

    path = tmp_path / "open.yaml"
    path.write_text("trainer:\n  devices: [1,\t2\n  max_epochs: 3\n")  # the '[' is the mistake
    problem = str(config_file_problem(str(path)))
    assert problem.startswith(f"{path}, line 2: the '[' opened here (column 12) is not closed"), (
        problem
    )
    path.write_text("trainer:\n  max_epochs: 3\t# three\n\tdevices: 1\n")  # the indenting tab is
    problem = str(config_file_problem(str(path)))
    assert problem.startswith(f"{path}, line 3: a tab character"), problem


# --- the place comes from our walk of the sources, never from jsonargparse's wording ------------


def test_place_is_found_whatever_jsonargparse_says(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """jsonargparse words its errors differently from one version to the next (4.27: 'No
    action for key', 4.32: 'Key ... is not expected', 4.45: 'Option ... is not accepted'):
    the short error must not change when the report says something else entirely."""
    import lightning_pc.cli as cli

    real = cli.parse_error_message
    monkeypatch.setattr(cli, "parse_error_message", lambda text, *rest: real("?", *rest))
    path, line = _broken_quickstart(tmp_path, "  max_epochs: 12", "  max_epoch: 12", "max_epoch")
    err = _parse_error(["--config", path], capsys, monkeypatch, tmp_path)
    assert err[0].startswith(f"error: {path}, line {line}: trainer has no option 'max_epoch'"), err
    err = _parse_error(
        ["--config", QUICKSTART, "--model.lr", "fast"], capsys, monkeypatch, tmp_path
    )
    assert err[0] == "error: --model.lr fast: expects float, got 'fast'", err


def test_unexplained_error_is_jsonargparse_own(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """When the walk finds nothing (or fails), jsonargparse's message is shown, never ours."""
    import lightning_pc.cli_walk as walk
    from lightning_pc.cli import ConfigError

    err = _parse_error(["--config", QUICKSTART, "stray_word"], capsys, monkeypatch, tmp_path)
    assert "stray_word" in err[0], err
    monkeypatch.setattr(walk._Walk, "run", lambda self: 1 / 0)
    monkeypatch.setenv(TRACEBACK_ENV, "1")
    with pytest.raises(ConfigError) as info:
        main(["fit", "--config", QUICKSTART, "--trainer.max_epochs", "ten"])
    own = [line.strip() for line in str(info.value.__cause__).splitlines() if line.strip()]
    assert [line.strip() for line in str(info.value).splitlines()][:3] == own[:3]


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("tab.yaml", "max_epochs: 2\n\tdevices: 1\n", "line 2: a tab character"),
        ("typo.yaml", "max_epoch: 3\n", "line 1: trainer has no option 'max_epoch'"),
        ("type.yaml", "devices: auto\nmax_epochs: [3]\n", "line 2: trainer.max_epochs expects"),
    ],
)
def test_group_config_file_mistake_names_that_file(
    name: str,
    text: str,
    expected: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    path = tmp_path / name
    path.write_text(text)
    err = _parse_error(
        ["--config", QUICKSTART, "--trainer", str(path)], capsys, monkeypatch, tmp_path
    )
    assert err[0].startswith(f"error: {path}, {expected}"), err


def test_unusual_but_valid_values_are_not_blamed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each value is checked by jsonargparse itself against its annotation: a bool seed, a
    string device count, an int for a float, a tab after a value pass; the mistake is named."""
    path = tmp_path / "odd.yaml"
    path.write_text(
        "seed_everything: true\ntrainer:\n  devices: auto\n  precision: bf16-mixed\n"
        "  gradient_clip_val: 1\t# an int for a float\n  limit_train_batches: 1\n"
        "  max_epoch: 3\t# the mistake\n"
    )
    err = _parse_error(
        ["--config", QUICKSTART, "--config", str(path)], capsys, monkeypatch, tmp_path
    )
    assert err[0].startswith(f"error: {path}, line 7: trainer has no option 'max_epoch'"), err
    assert err[1] == "  7 |   max_epoch: 3⇥   # the mistake", err
    fine = [
        "--seed_everything",
        "true",
        "--trainer.devices",
        "auto",
        "--imports",
        "[json]",
        "--trainer.precision=bf16-mixed",
        "--trainer.limit_train_batches",
        "0.5",
    ]
    err = _parse_error(
        ["--config", QUICKSTART, *fine, "--trainer.max_epochs", "ten"],
        capsys,
        monkeypatch,
        tmp_path,
    )
    assert err[0] == "error: --trainer.max_epochs ten: expects int or null, got 'ten'", err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--config", "{trainer: {max_epochs: ten}}"],
            "--config '{trainer: {max_epochs: ten}}': trainer.max_epochs expects int or null, "
            "got 'ten'",
        ),
        (
            ["--model", "ClassificationTask", "--model.init_args.lr", "fast"],
            "--model.init_args.lr fast: expects float, got 'fast'",
        ),
        (
            [
                "--trainer.callbacks",
                "[{class_path: lightning_pc.callbacks.ModelCheckpoint, init_args: {save_top_k: many}}]",
            ],
            "trainer.callbacks.init_args.save_top_k expects int, got 'many'",
        ),
        (
            ["--data", "{init_args: {num_point: 3}}"],
            "--data: SyntheticShapesDataModule has no option 'num_point'",
        ),
    ],
    ids=["inline-config", "class-by-short-name", "list-item-in-option", "init-args-alone"],
)
def test_mistake_inside_an_option_value(
    args: list[str],
    expected: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    err = _parse_error(["--config", QUICKSTART, *args], capsys, monkeypatch, tmp_path)
    assert err[0].startswith(f"error: {args[-2]}") and expected in err[0], err


def test_option_before_the_subcommand_says_it_goes_after(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    err = _run_error(
        ["--trainer.max_epochs", "3", "fit", "--config", QUICKSTART], capsys, monkeypatch, tmp_path
    )
    assert err[0] == (
        "error: --trainer.max_epochs: an option of 'fit'; it goes after the "
        "subcommand (lightning-pc fit --trainer.max_epochs ...)"
    ), err


@pytest.mark.timeout(60)
def test_inline_config_is_checked_like_a_file(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    err = _parse_error(
        ["--config", QUICKSTART, "--config", "{x: &a [*a]}"], capsys, monkeypatch, tmp_path
    )
    assert err[0].startswith("error: --config '{x: &a [*a]}', line 1: this list holds itself"), err
    err = _parse_error(
        ["--config", "{trainer: {max_epochs: 1}, trainer: {}}"], capsys, monkeypatch, tmp_path
    )
    assert "key 'trainer' is already set at line 1" in err[0] and len(err) == 3, err
