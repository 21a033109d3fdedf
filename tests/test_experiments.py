"""Unit tests for helpers.experiments: methods registry, runner on user tensors, and the CLI (tiny data)."""

import json

import pytest
import torch
from torch import nn

from helpers import experiments
from helpers.datasets import ImageSet
from helpers.experiments import (
    DATASETS,
    METHODS,
    METRICS,
    DatasetSpec,
    build_parser,
    check_methods,
    drw_start,
    main,
    run_experiment,
    summarize,
)
from helpers.imbalance import long_tailed_counts
from helpers.train import TrainConfig

EXPECTED_METHODS = {
    "ce", "ce_inv", "ce_cb", "resample", "focal_g1", "focal_g2", "cb_focal", "ldam", "ldam_drw", "ce_drw",
    "la_loss", "balanced_softmax", "posthoc_la",
}


def blob_tensors(per_class=120, num_classes=3, dim=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = 2.5 * torch.randn(num_classes, dim, generator=g)

    def draw(n):
        y = torch.arange(num_classes).repeat_interleave(n)
        return centers[y] + torch.randn(len(y), dim, generator=g), y

    x_train, y_train = draw(per_class)
    x_test, y_test = draw(30)
    return x_train, y_train, x_test, y_test


def mlp():
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))


TINY = TrainConfig(epochs=3, batch_size=32, lr=1e-2, optimizer="adamw", weight_decay=0.0)


def test_registry_has_every_method_of_the_issue():
    assert set(METHODS) == EXPECTED_METHODS
    counts = torch.tensor([100.0, 10.0, 1.0], dtype=torch.float64)
    for method in METHODS.values():
        loss_fn, drw = method.make_loss(counts, 2, torch.device("cpu"))
        logits, target = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
        if drw is not None:
            drw(loss_fn, 0)
            assert loss_fn.weight is None
            drw(loss_fn, 2)
            assert loss_fn.weight is not None
        assert torch.isfinite(loss_fn(logits, target))
    assert METHODS["posthoc_la"].posthoc_of == "ce"
    assert METHODS["resample"].balanced_sampling and METHODS["ldam"].normed_head
    assert METHODS["ldam_drw"].logit_scale == 30.0 and METHODS["ce"].logit_scale == 1.0
    assert drw_start(10) == 8 and drw_start(2) == 1


def test_check_methods_messages():
    assert check_methods("ce, la_loss") == ["ce", "la_loss"]
    with pytest.raises(ValueError, match="unknown method.*'focal'.*choose from"):
        check_methods("ce,focal")
    with pytest.raises(ValueError, match="repeat"):
        check_methods(["ce", "ce"])
    with pytest.raises(ValueError, match="non-empty"):
        check_methods([])


def test_run_experiment_on_user_tensors_is_tidy_and_deterministic():
    data = blob_tensors()
    methods = ["ce", "ldam_drw", "resample", "posthoc_la"]
    runs = []
    table = run_experiment(
        data, mlp, methods=methods, seeds=[0, 1], imbalance_ratio=10, config=TINY, val_per_class=10,
        runs=runs, show_progress=False,
    )
    assert len(table) == 8 and list(table["method"][:4]) == methods
    for column in ("dataset", "profile", "imbalance_ratio", "seed", "epochs", *METRICS, "val_balanced_accuracy"):
        assert column in table.columns, column
    assert table["accuracy"].between(0, 1).all() and not table["diverged"].any()
    assert len(runs) == 8 and runs[0].counts == long_tailed_counts(110, 3, 10)  # n_max = 120 - 10 for validation
    assert runs[0].test_logits.shape == (90, 3) and len(runs[0].history["train_loss"]) == 3
    post = table[table.method == "posthoc_la"]
    assert (post["seconds"] == 0).all()  # re-uses the CE model
    again = run_experiment(
        data, mlp, methods=["resample", "ce"], seeds=[1], imbalance_ratio=10, config=TINY, val_per_class=10,
        show_progress=False,
    )
    first = table[table.seed == 1].set_index("method").loc[["resample", "ce"], list(METRICS)]
    assert first.reset_index(drop=True).equals(again[list(METRICS)])
    summary = summarize(table)
    assert list(summary.index) == methods and "±" in summary.loc["ce", "accuracy"]


def test_run_experiment_argument_errors():
    data = blob_tensors()
    with pytest.raises(ValueError, match="model_factory"):
        run_experiment(data, None, methods=["ce"], seeds=[0])
    with pytest.raises(ValueError, match="unknown method"):
        run_experiment(data, mlp, methods=["nope"], seeds=[0])
    with pytest.raises(ValueError, match="seeds"):
        run_experiment(data, mlp, methods=["ce"], seeds=[])
    with pytest.raises(ValueError, match="unknown dataset"):
        run_experiment("imagenet", methods=["ce"], seeds=[0])
    with pytest.raises(ValueError, match="profile"):
        run_experiment(data, mlp, methods=["ce"], seeds=[0], profile="linear")
    with pytest.raises(TypeError, match="y_train"):
        run_experiment((data[0], data[1].float(), data[2], data[3]), mlp, methods=["ce"], seeds=[0])


def tiny_spec(imbalance_ratio, profile, seed, epochs=None, protocol=None, device=None, **kwargs):
    """A registered dataset of random 1x8x8 images, for testing the CLI end to end in a second."""
    g = torch.Generator().manual_seed(seed)

    def images(n_per_class):
        labels = torch.arange(2).repeat_interleave(n_per_class)
        base = (labels.view(-1, 1, 1, 1) * 120 + 60).expand(-1, 1, 8, 8)
        noise = torch.randint(0, 40, base.shape, generator=g)
        return ImageSet((base + noise).to(torch.uint8), labels, ("a", "b"), "tiny", (0.5,), (0.25,))

    train = images(40).subset(torch.cat([torch.arange(40), 40 + torch.arange(int(40 / imbalance_ratio))]))
    return DatasetSpec(
        train=train, val=images(5), test=images(10), counts=train.class_counts().tolist(),
        model_factory=lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 2)),
        config=TrainConfig(epochs=epochs or 2, batch_size=16, lr=1e-2, optimizer="adamw"),
        transform=None, augment=None, drw_start_epoch=1, description="tiny",
    )


@pytest.fixture
def tiny_dataset(monkeypatch):
    monkeypatch.setitem(DATASETS, "tiny", tiny_spec)


def test_cli_writes_json_with_provenance(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "results.json"
    status = main(
        ["--dataset", "tiny", "--imbalance", "4", "--methods", "ce,posthoc_la", "--seeds", "0,1", "--epochs", "2",
         "--out", str(out), "--no-progress"]
    )
    assert status == 0
    payload = json.loads(out.read_text())
    assert payload["config"]["methods"] == ["ce", "posthoc_la"] and payload["config"]["imbalance"] == 4.0
    assert payload["train_counts"] == [40, 10]
    assert payload["train_config"]["epochs"] == 2 and payload["train_config"]["optimizer"] == "adamw"
    assert len(payload["runs"]) == 4 and {"accuracy", "balanced_accuracy", "seed"} <= set(payload["runs"][0])
    assert len(payload["curves"]) == 4 and len(payload["curves"][0]["history"]["train_loss"]) == 2
    for key in ("date", "torch_version", "device", "git_commit"):
        assert payload["provenance"][key]
    assert payload["provenance"]["torch_version"] == torch.__version__
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--methods", "ce,focal"], "unknown method"),
        (["--methods", "ce,ce"], "repeat"),
        (["--seeds", "0,x"], "--seeds"),
        (["--seeds", "0,0"], "repeat"),
        (["--imbalance", "0.5"], "--imbalance"),
        (["--profile", "linear"], "--profile"),
        (["--dataset", "svhn"], "--dataset"),
        (["--epochs", "0"], "--epochs"),
        (["--device", "cuda:7"] if not torch.cuda.is_available() else ["--device", "nonsense"], "--device"),
        ([], "--out"),
    ],
)
def test_cli_bad_flags_exit_with_a_clear_message(tiny_dataset, tmp_path, capsys, argv, message):
    if argv and "--out" not in argv:
        argv = [*argv, "--dataset", "tiny", "--out", str(tmp_path / "r.json")] if "--dataset" not in argv else [
            *argv, "--out", str(tmp_path / "r.json")]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_cli_help_documents_every_flag(capsys):
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    text = capsys.readouterr().out
    for action in parser._actions:
        for flag in action.option_strings:
            assert flag in text
        assert action.help, f"{action.option_strings} has no help text"
    for name in METHODS:
        assert name in text


def test_cifar_dataset_is_registered_lazily():
    assert "cifar10" in DATASETS and "mnist" in DATASETS
    assert experiments._cifar10_spec.__name__ == "_cifar10_spec"
