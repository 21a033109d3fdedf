"""Unit tests for the long-tail modules: methods registry, runner on user tensors, tables and the CLI (tiny data)."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from helpers import longtail_data as lt_data
from helpers import longtail_runner as lt_runner
from helpers import longtail_tables as lt_tables
from helpers.datasets import ImageSet
from helpers.experiments import build_parser, main
from helpers.imbalance import long_tailed_counts
from helpers.longtail_data import DATASETS
from helpers.longtail_methods import METHODS, check_methods
from helpers.longtail_runner import METRICS, run_experiment
from helpers.longtail_tables import summarize
from helpers.longtail_types import DatasetSpec, drw_start
from helpers.train import TrainConfig

EXPECTED_METHODS = {
    "ce", "ce_inv", "ce_cb", "resample", "focal_g1", "focal_g2", "cb_focal", "ldam", "ldam_drw", "ce_drw",
    "la_loss", "balanced_softmax", "posthoc_la", "cb_resample", "cb_focal_sigmoid", "crt", "tau_norm",
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


def test_dependency_runs_one_way_from_the_registry_up_to_the_command_line():
    """Each long-tail module imports only the ones below it; cifar and the types import none of them."""
    import ast
    import importlib
    import inspect

    from helpers import cifar, longtail_types

    order = ["longtail_methods", "longtail_data", "longtail_runner", "longtail_tables", "longtail_plots", "experiments"]
    assert {"mnist", "cifar10", "cifar100"} <= set(DATASETS)
    for level, name in enumerate(["cifar", "longtail_types", *order]):
        module = importlib.import_module(f"helpers.{name}")
        tree = ast.parse(inspect.getsource(module))
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        above = order if level < 2 else order[level - 1 :]
        assert not imported & {f"helpers.{m}" for m in above}, (name, imported)
        assert "importlib" not in imported, name
    assert DatasetSpec is longtail_types.DatasetSpec is cifar.DatasetSpec


def test_each_seed_draws_its_own_data_unless_the_data_seed_is_fixed():
    data = blob_tensors()
    common = dict(methods=["ce"], imbalance_ratio=10, config=TINY, val_per_class=10, show_progress=False)
    paired_runs, fixed_runs = [], []
    paired = run_experiment(data, mlp, seeds=[0, 1], runs=paired_runs, **common)
    fixed = run_experiment(data, mlp, seeds=[0, 1], data_seed=0, runs=fixed_runs, **common)
    assert paired["data_seed"].tolist() == [0, 1] and fixed["data_seed"].tolist() == [0, 0]
    assert [r.pair for r in paired_runs] == [(0, 0), (1, 1)] and [r.pair for r in fixed_runs] == [(0, 0), (1, 0)]
    # Pair 0 is the same run either way; seed 1 trained on another draw differs from seed 1 on draw 0.
    assert torch.equal(paired_runs[0].test_logits, fixed_runs[0].test_logits)
    assert not torch.equal(paired_runs[1].test_logits, fixed_runs[1].test_logits)
    # The validation split is balanced and drawn per data seed.
    val0, val1 = paired_runs[0].extra["val_logits"], paired_runs[1].extra["val_logits"]
    assert val0.shape == val1.shape == (30, 3)
    _, counts = lt_data.tensors_spec(data, 10, "exp", seed=1, val_per_class=10)
    parts0, _ = lt_data.tensors_spec(data, 10, "exp", seed=0, val_per_class=10)
    parts1, _ = lt_data.tensors_spec(data, 10, "exp", seed=1, val_per_class=10)
    assert torch.bincount(parts1["y_val"]).tolist() == [10, 10, 10]
    assert not torch.equal(parts0["x_val"], parts1["x_val"]) and not torch.equal(parts0["x_train"], parts1["x_train"])
    with pytest.raises(ValueError, match="data_seed"):
        run_experiment(data, mlp, seeds=[0], data_seed=-1, **common)


def fake_table(values: dict, val_values: dict | None = None, data_seeds=None) -> pd.DataFrame:
    """A runs table with given balanced accuracies per method over pairs (seed i, data seed i)."""
    rows = []
    for method, scores in values.items():
        for i, score in enumerate(scores):
            val = (val_values or values)[method][i]
            rows.append({"method": method, "seed": i, "data_seed": i if data_seeds is None else data_seeds[i],
                         "balanced_accuracy": score, "val_balanced_accuracy": val, "many_recall": 0.9,
                         "medium_recall": 0.5, "few_recall": score, "diverged": False})
    return pd.DataFrame(rows)


def test_paired_table_uses_paired_t_intervals_and_computed_verdicts():
    from helpers.stats import QUICK_VERDICT, paired_difference

    ce = [0.60, 0.70, 0.65, 0.55]
    table = fake_table({
        "ce": ce,
        "better": [c + d for c, d in zip(ce, [0.05, 0.06, 0.04, 0.05], strict=True)],  # consistent gain: paired CI > 0
        "noisy": [c + d for c, d in zip(ce, [0.05, -0.06, 0.04, -0.03], strict=True)],
    })
    stats = lt_tables.paired_stats(table, quick=False)
    expected = paired_difference(table[table.method == "better"]["balanced_accuracy"], ce)
    assert stats.loc["better", "diff"] == pytest.approx(expected.mean)
    low_high = (stats.loc["better", "diff_low"], stats.loc["better", "diff_high"])
    assert low_high == pytest.approx((expected.low, expected.high))
    assert stats.loc["better", "verdict"] == "improves" and stats.loc["noisy", "verdict"] == "cannot be told apart from"
    assert stats.loc["ce", "verdict"] == "baseline" and stats.loc["better", "n_pairs"] == 4
    # The unpaired spreads overlap although the paired interval excludes zero: pairing is the point.
    assert stats.loc["better", "mean"] - stats.loc["better", "std"] < stats.loc["ce", "mean"] + stats.loc["ce", "std"]
    assert lt_tables.paired_stats(table, quick=True).loc["better", "verdict"] == QUICK_VERDICT
    shown = lt_tables.paired_table(table, quick=False)
    assert shown.loc["better", "vs ce, 95% CI"].startswith("+5.0 [") and shown.loc["better", "verdict"] == "improves"
    assert shown.loc["ce", "many / medium / few recall (test)"].startswith("90.0 / 50.0 / ")
    with pytest.raises(ValueError, match="baseline"):
        lt_tables.paired_stats(table, baseline="la_loss")


def test_val_best_set_names_a_winner_only_when_validation_separates_it():
    val = {"ce": [0.60, 0.70, 0.65], "a": [0.70, 0.80, 0.75], "b": [0.69, 0.81, 0.74], "c": [0.50, 0.55, 0.52]}
    table = fake_table(val)
    assert sorted(lt_tables.val_best_set(table)) == ["a", "b"]  # a and b cannot be told apart on validation
    stats = lt_tables.paired_stats(table, quick=False)
    assert stats["val_tied_best"].to_dict() == {"ce": False, "a": True, "b": True, "c": False}
    one_pair = fake_table({m: v[:1] for m, v in val.items()})
    assert sorted(lt_tables.val_best_set(one_pair)) == ["a", "b", "c", "ce"]  # one pair separates nothing
    one = lt_tables.paired_stats(one_pair, quick=False)
    assert one.loc["a", "verdict"] == lt_tables.ONE_PAIR_VERDICT and math.isnan(one.loc["a", "diff_low"])
    diverged = fake_table({**val, "d": [0.99, math.nan, 0.99]})
    assert "d" not in lt_tables.val_best_set(diverged)
    assert lt_tables.paired_stats(diverged, quick=False).loc["d", "n_pairs"] == 2


# ------------------------------------------------------------------------- results are never lost
def count_trainings(monkeypatch) -> list[tuple[str, int]]:
    """A list that fills with (method, seed) of every model run_experiment trains from now on."""
    trained = []
    original = lt_runner._train_one

    def counting(method, seed, pair, device):
        trained.append((method.name, seed))
        return original(method, seed, pair, device)

    monkeypatch.setattr(lt_runner, "_train_one", counting)
    return trained


class Interrupted(RuntimeError):
    """Stands for a kill or a Colab disconnect after some runs."""


def test_cli_records_each_run_as_it_finishes_and_resumes_only_the_missing_ones(tiny_dataset, tmp_path, monkeypatch):
    from helpers.results_store import ResultsStore

    out = tmp_path / "r.json"
    argv = ["--dataset", "tiny", "--imbalance", "4", "--methods", "ce,la_loss,posthoc_la", "--seeds", "0,1,2",
            "--no-progress", "--out", str(out)]  # fmt: skip
    original_add = ResultsStore.add
    calls = []

    def add_then_die(self, rows, records=()):
        original_add(self, rows, records)
        calls.append(len(rows))
        if len(calls) == 3:  # killed right after the 3rd finished group was written
            raise Interrupted

    monkeypatch.setattr(ResultsStore, "add", add_then_die)
    with pytest.raises(Interrupted):
        main(argv)
    partial = json.loads(out.read_text())
    # groups: (ce + posthoc_la, seed 0), (la_loss, seed 0), (ce + posthoc_la, seed 1) -> 5 runs on disk
    assert len(partial["runs"]) == 5 and not partial["complete"]
    assert not (tmp_path / "r.json.tmp").exists()  # the atomic write left no temporary file

    monkeypatch.setattr(ResultsStore, "add", original_add)
    trained = count_trainings(monkeypatch)
    assert main(argv) == 0
    assert trained == [("la_loss", 1), ("ce", 2), ("la_loss", 2)]  # only the missing runs
    final = json.loads(out.read_text())
    assert final["complete"] and len(final["runs"]) == 9 and len(final["resumed"]) == 1
    keys = [(r["method"], r["seed"], r["data_seed"]) for r in final["runs"]]
    assert len(set(keys)) == 9 and all(r["seed"] == r["data_seed"] for r in final["runs"])
    assert final["runs"][:5] == partial["runs"]  # finished runs are kept, never recomputed
    trained.clear()
    assert main(argv) == 0 and trained == []  # a complete file: nothing to run


def test_cli_refuses_to_overwrite_results_of_other_arguments_without_force(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "r.json"
    base = ["--dataset", "tiny", "--imbalance", "4", "--methods", "ce", "--seeds", "0", "--no-progress",
            "--out", str(out)]  # fmt: skip
    assert main(base) == 0
    before = out.read_text()
    with pytest.raises(SystemExit) as exit_info:
        main([*base[:-2], "--epochs", "3", "--out", str(out)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--out" in err and "different arguments" in err and "epochs" in err and "--force" in err
    assert out.read_text() == before
    assert main([*base, "--epochs", "3", "--force"]) == 0
    assert json.loads(out.read_text())["config"]["epochs"] == 3


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    from helpers.results_store import write_json_atomic

    path = tmp_path / "r.json"
    write_json_atomic(path, {"runs": [1]})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"runs": [object()]})  # not serialisable: fails half-way
    assert json.loads(path.read_text()) == {"runs": [1]}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--dataset", "cifar10", "--protocol", "warp"], "--protocol"),
        (["--dataset", "mnist", "--protocol", "paper"], "--protocol"),
        (["--dataset", "cifar100", "--recipe", "sgd"], "--recipe"),
        (["--dataset", "tiny", "--data-seed", "-1"], "--data-seed"),
        (["--dataset", "tiny", "--lr", "0"], "--lr"),
        (["--dataset", "mnist", "--n-max", "10", "--imbalance", "1000"], "smallest class empty"),
    ],
)
def test_every_bad_argument_gets_a_usage_error(tiny_dataset, tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--methods", "ce", "--seeds", "0", "--no-progress", "--out", str(tmp_path / "r.json")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" in err and message in err and "Traceback" not in err
    assert not (tmp_path / "r.json").exists()


def test_mnist_sgd_recipes_for_the_instability_study():
    adamw, sgd, warm = (lt_data.mnist_config(4, recipe=r) for r in lt_data.MNIST_RECIPES)
    assert adamw.optimizer == "adamw" and adamw.warmup_epochs == 0.5
    assert (sgd.optimizer, sgd.momentum, sgd.lr, sgd.warmup_epochs) == ("sgd", 0.9, lt_data.MNIST_SGD_LR, 0.0)
    assert warm.optimizer == "sgd" and warm.warmup_epochs == 1.0
    assert lt_data.mnist_config(1, recipe="sgd_warmup").warmup_epochs == 0.5
    assert lt_data.mnist_config(4, recipe="sgd", lr=0.02, warmup_epochs=2).lr == 0.02
    with pytest.raises(ValueError, match="recipe"):
        lt_data.mnist_config(4, recipe="adam")


def test_holm_turns_a_lone_marginal_verdict_into_no_verdict_among_many():
    ce = [0.60, 0.70, 0.65, 0.55, 0.62]
    marginal = [c + d for c, d in zip(ce, [0.02, 0.004, 0.03, 0.006, 0.012], strict=True)]  # p = 0.04
    others = {f"null{i}": [c + 0.01 * ((i + j) % 3 - 1) for j, c in enumerate(ce)] for i in range(6)}
    table = fake_table({"ce": ce, "marginal": marginal, **others})
    plain = lt_tables.paired_stats(table, quick=False, holm=False)
    adjusted = lt_tables.paired_stats(table, quick=False)
    assert plain.loc["marginal", "verdict"] == "improves" and plain.loc["marginal", "p_value"] < 0.05
    assert adjusted.loc["marginal", "p_holm"] >= 0.05
    assert adjusted.loc["marginal", "verdict"] == "cannot be told apart from (after Holm)"
    shown = lt_tables.paired_table(table, quick=False, display_names=True)
    assert "cross-entropy (CE)" in shown.index and "val: possibly best" in shown.columns


def test_drw_switches_at_80_percent_of_the_steps_even_with_three_epochs():
    """F6: with 3 epochs, whole-epoch rounding switched after 67% of training; the step count gives 80%."""
    from helpers.longtail_types import drw_start_step

    assert drw_start(3) == 2 and drw_start_step(3, 10) == 24
    assert drw_start_step(200, 97) == 160 * 97  # Cao et al.: the first step of epoch 160
    with pytest.raises(ValueError, match="steps_per_epoch"):
        drw_start_step(3, 0)
    runs = []
    run_experiment(blob_tensors(), mlp, methods=["ce_drw"], seeds=[0], imbalance_ratio=10,
                   config=replace_epochs(TINY, 3), val_per_class=10, runs=runs, show_progress=False)  # fmt: skip
    assert abs(runs[0].extra["drw_fraction"] - 0.8) < 0.05
    assert len(runs[0].history["train_ce"]) == 3  # plain CE recorded for every method


def replace_epochs(config, epochs):
    from dataclasses import replace

    return replace(config, epochs=epochs)


def test_cb_focal_sigmoid_keeps_its_last_bias_out_of_weight_decay():
    from helpers.train import make_optimizer

    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    cfg = TrainConfig(epochs=1, weight_decay=0.1, decay_last_bias=False)
    groups = make_optimizer(model, cfg).param_groups
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0] and groups[1]["params"][0] is model[2].bias
    assert METHODS["cb_focal_sigmoid"].decay_last_bias is False and METHODS["ce"].decay_last_bias is True


def test_results_file_records_whether_the_data_was_real_or_the_synthetic_stand_in(tmp_path, monkeypatch, capsys):
    from dataclasses import replace

    from helpers.results_store import read_results_json

    def stand_in(*args, **kwargs):
        spec = tiny_spec(*args, **kwargs)
        return replace(spec, train=replace(spec.train, synthetic=True))

    monkeypatch.setitem(DATASETS, "tiny", tiny_spec)
    monkeypatch.setitem(DATASETS, "tiny_fake", stand_in)
    argv = ["--imbalance", "4", "--methods", "ce,posthoc_la", "--seeds", "0", "--epochs", "1", "--no-progress"]
    for dataset, source in (("tiny", "real"), ("tiny_fake", "synthetic")):
        out = tmp_path / f"{dataset}.json"
        assert main([*argv, "--dataset", dataset, "--out", str(out)]) == 0
        assert json.loads(out.read_text())["provenance"]["data_source"] == source
        assert read_results_json(out)[1]["data_source"] == source
        printed = capsys.readouterr().out
        assert ("SYNTHETIC -- these numbers are NOT results" in printed) == (source == "synthetic")
        assert f"(data: {source})" in printed


def test_a_published_difference_is_called_consistent_only_within_a_narrow_interval():
    from helpers.longtail_tables import AGREEMENT_MARGIN, compare_with_published

    assert AGREEMENT_MARGIN == 2.0
    # 3 pairs, t-interval half-width 0.5; a one-run paper: prediction half-width 0.5 * sqrt(1 + 3) = 1
    assert compare_with_published(-4.1, -4.5, -3.5, 3, paper_runs=1) == "consistent"
    assert compare_with_published(-5.1, -4.5, -3.5, 3, paper_runs=1) == "not consistent"
    assert compare_with_published(-4.8, -4.5, -3.5, 3, paper_runs=1) == "consistent"  # outside the CI, inside
    # the same interval against a 5-run mean: half-width 0.5 * sqrt(1 + 3/5) = 0.63
    assert compare_with_published(-4.8, -4.5, -3.5, 3, paper_runs=5) == "not consistent"
    assert compare_with_published(-4.1, -4.5, -3.5, 3).endswith("(the paper's run count is unknown: taken as 1)")
    # the reviewer's case: a 3-pair interval of +-24.6 points contains nearly anything; it says nothing
    assert compare_with_published(-4.56, -34.6, 14.7, 3, 1) == "interval too wide to compare (\u00b149.3 points)"
    assert compare_with_published(30.0, -34.6, 14.7, 3, 1).startswith("interval too wide")
    assert compare_with_published(0.0, -1.0, 1.0, 3, 1, margin=2.0).startswith("interval too wide")  # exactly
    assert compare_with_published(0.0, math.nan, math.nan, 1, 1) == "-"
    assert compare_with_published(math.nan, -1.0, 1.0, 3, 1) == "-"  # no published number
    assert compare_with_published(0.5, 0.5, 0.5, 3, 1) == "cannot judge (our interval has zero width)"
    with pytest.raises(ValueError, match="margin"):
        compare_with_published(0.0, -1.0, 1.0, 3, 1, margin=0.0)
    with pytest.raises(ValueError, match="low"):
        compare_with_published(0.0, 1.0, -1.0, 3, 1)
    with pytest.raises(ValueError, match="paper_runs"):
        compare_with_published(0.0, -1.0, 1.0, 3, 0)


def test_a_published_difference_with_the_same_true_effect_is_rarely_called_not_consistent():
    """Same true effect, 5 pairs against a one-run paper: 'not consistent' about 5% of the time, not 32%."""
    from helpers.longtail_tables import compare_with_published
    from helpers.stats import paired_difference

    rng = np.random.default_rng(0)
    verdicts = []
    for _ in range(2000):
        ours = rng.normal(-3.0, 0.3, size=5)  # paired differences, spread 0.3 point
        paper = rng.normal(-3.0, 0.3)  # one run's difference: the same spread
        ci = paired_difference(ours, np.zeros(5))
        verdicts.append(compare_with_published(paper, ci.low, ci.high, 5, paper_runs=1))
    assert np.mean([v.startswith("interval too wide") for v in verdicts]) < 0.01
    assert abs(np.mean([v == "not consistent" for v in verdicts]) - 0.05) < 0.015


def test_resuming_a_file_without_a_data_source_never_labels_its_old_runs_real(tmp_path):
    """A file written before data_source existed: adding a real run makes it "mixed", not "real"."""
    from helpers.longtail_types import RunRecord
    from helpers.results_store import ResultsStore

    path, config = tmp_path / "old.json", {"dataset": "cifar10", "methods": ["ce"], "seeds": [0, 1]}
    row = {"method": "ce", "seed": 0, "data_seed": 0, "accuracy": 0.5}
    old = ResultsStore(path, config, provenance={"date": "before data_source"})
    old.add([row])  # no record, so no source: the file has a run and no data_source
    assert "data_source" not in json.loads(path.read_text())["provenance"]
    resumed = ResultsStore(path, config, provenance={"date": "now"})
    record = RunRecord("ce", 1, {}, {}, torch.zeros(1, 2), torch.zeros(1, dtype=torch.int64), [1, 1],
                       extra={"data_source": "real"}, data_seed=1)  # fmt: skip
    resumed.add([row | {"seed": 1, "data_seed": 1}], [record])
    assert json.loads(path.read_text())["provenance"]["data_source"] == "mixed"
    fresh = ResultsStore(tmp_path / "new.json", config, provenance={"date": "now"})
    fresh.add([row | {"seed": 1, "data_seed": 1}], [record])  # a new file of real runs stays "real"
    assert json.loads((tmp_path / "new.json").read_text())["provenance"]["data_source"] == "real"
