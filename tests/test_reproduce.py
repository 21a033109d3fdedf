"""The reproduction pipeline: matrix, jobs through the experiment CLI, merge, chapter 5's table, the workflow.

The workflow (.github/workflows/reproduce.yml) cannot run here; test_workflow.py validates it against
GitHub's schema, and the tests below check that it calls this repository's commands with the
matrix's own names, never allows the synthetic stand-in, and that a simulated subset of the matrix
runs and merges through the same functions (tools/reproduce.py simulate).
"""

import importlib.util
import json
import re
from pathlib import Path

import pytest

from helpers import experiments
from helpers.reproduction import (
    GITHUB_MATRIX_LIMIT,
    METHOD_GROUPS,
    METHOD_NAMES,
    NO_RESULTS_SENTENCE,
    SETTINGS,
    build_matrix,
    job_argv,
    load_reproduction,
    merge_job_files,
    repository_results_path,
    reproduction_table,
    short_status,
    sources_text,
)
from helpers.results_store import ResultsConflictError, add_sections, merge_results

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "reproduce.yml"


def _tool():
    spec = importlib.util.spec_from_file_location("reproduce_tool", ROOT / "tools" / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_matrix_is_one_job_per_dataset_setting_method_seed():
    jobs = build_matrix()
    assert len(jobs) == 2 * len(SETTINGS) * len(METHOD_GROUPS) * 3 <= GITHUB_MATRIX_LIMIT
    assert len({j["id"] for j in jobs}) == len(jobs)
    assert build_matrix("cifar10", "step100", "ce,ldam", "3,4") == [
        {"id": "cifar10-step100-ce-s3", "dataset": "cifar10", "setting": "step100", "method": "ce", "seed": 3},
        {"id": "cifar10-step100-ce-s4", "dataset": "cifar10", "setting": "step100", "method": "ce", "seed": 4},
        {"id": "cifar10-step100-ldam-s3", "dataset": "cifar10", "setting": "step100", "method": "ldam", "seed": 3},
        {"id": "cifar10-step100-ldam-s4", "dataset": "cifar10", "setting": "step100", "method": "ldam", "seed": 4},
    ]


BAD_SELECTIONS = [{"datasets": "mnist"}, {"settings": "exp50"}, {"methods": "crt"}, {"seeds": "0,0"}, {"seeds": "a"}]


@pytest.mark.parametrize("kwargs", [*BAD_SELECTIONS, {"seeds": range(5)}])
def test_matrix_rejects_bad_selections_and_githubs_limit(kwargs):
    with pytest.raises(ValueError):
        build_matrix(**kwargs)


def test_every_method_has_a_display_name_and_every_job_is_a_valid_cli_call(tmp_path):
    parser = experiments.build_parser()
    for job in build_matrix(seeds="0"):
        args = parser.parse_args(job_argv(job, "paper", tmp_path / "x.json", epochs=3, n_max=100, device="cpu"))
        profile, ratio = SETTINGS[job["setting"]]
        assert (args.dataset, args.profile, args.imbalance, args.seeds) == (job["dataset"], profile, ratio, [0])
        assert experiments.check_methods(args.methods) == list(METHOD_GROUPS[job["method"]])
        assert "paper" in experiments.DATASET_PROTOCOLS[job["dataset"]]
        assert (args.epochs, args.n_max, args.device, args.no_progress) == (3, 100, "cpu", True)
    assert set(METHOD_NAMES) == {m for group in METHOD_GROUPS.values() for m in group}


def _piece(methods, seeds, **config):
    runs = [{"method": m, "seed": s, "data_seed": s, "accuracy": 0.5 + s / 10} for s in seeds for m in methods]
    return {"config": {"dataset": "cifar10", "profile": "exp", "imbalance": 100.0, "protocol": "quick",
                       "methods": methods, "seeds": seeds} | config,
            "runs": runs, "curves": [], "train_counts": [5, 1], "provenance": {"date": "d"}, "complete": True,
            "job": {"id": f"{methods[0]}-{seeds}", "data_source": "real", "protocol": "paper",
                    "epochs": 200, "n_max": None}}  # fmt: skip


def test_merge_results_unites_methods_and_seeds_and_keeps_a_run_once():
    merged = merge_results([_piece(["ce"], [0]), _piece(["ldam"], [1]), _piece(["ce"], [0, 2])])
    assert merged["config"]["methods"] == ["ce", "ldam"] and merged["config"]["seeds"] == [0, 1, 2]
    assert sorted((r["method"], r["seed"]) for r in merged["runs"]) == [("ce", 0), ("ce", 2), ("ldam", 1)]
    assert len(merged["parts"]) == 3 and len(merged["jobs"]) == 3 and merged["complete"]
    assert len(merge_results([merged, _piece(["ce"], [0])])["jobs"]) == 3  # the same job merged twice counts once
    assert "job" not in merged
    with pytest.raises(ResultsConflictError, match="protocol"):
        merge_results([_piece(["ce"], [0]), _piece(["ce"], [1], protocol="paper")])
    with pytest.raises(ValueError):
        merge_results([])


def test_a_run_without_a_result_is_counted_not_averaged(tmp_path):
    piece = _piece(["crt"], [0, 1, 2])
    piece["runs"][2]["accuracy"] = float("nan")
    path = tmp_path / "p.json"
    path.write_text(json.dumps(piece))
    merge_job_files([path], tmp_path / "m.json")
    cell = reproduction_table(tmp_path / "m.json")["Top-1 error % (95% CI)"].iloc[0]
    assert cell.startswith("45.00 [") and cell.endswith("(1 run(s) without a result)")


def test_add_sections_keeps_the_store_own_sections(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_piece(["ce"], [0])))
    add_sections(path, job={"id": "x"})
    assert json.loads(path.read_text())["job"] == {"id": "x"}
    with pytest.raises(ValueError, match="runs"):
        add_sections(path, runs=[])


def test_merged_file_is_a_simulation_unless_every_job_ran_on_real_data(tmp_path):
    parts = []
    for i, (methods, seeds) in enumerate(((["ce"], [0, 1]), (["ldam_drw"], [0, 1]))):
        parts.append(tmp_path / f"p{i}.json")
        parts[-1].write_text(json.dumps(_piece(methods, seeds)))
    real = merge_job_files(parts, tmp_path / "real.json")
    assert real["kind"] == "reproduction"
    table = reproduction_table(tmp_path / "real.json")
    ce = table.set_index("Method").loc[METHOD_NAMES["ce"]]
    assert ce["Top-1 error % (95% CI)"].startswith("45.00 [") and ce["Cao et al. 2019"] == "29.64"
    assert ce["Menon et al. 2021"] == "27.16" and "real data" in ce["Source"]
    bad = json.loads(parts[0].read_text())
    bad["job"]["data_source"] = "synthetic"
    parts[0].write_text(json.dumps(bad))
    assert merge_job_files(parts, tmp_path / "sim.json")["kind"] == "simulation"
    assert reproduction_table(tmp_path / "sim.json")["Source"].str.contains("SIMULATION").all()
    assert "SIMULATION" in sources_text(tmp_path / "sim.json") and "simulation" in short_status(tmp_path / "sim.json")
    assert "real CIFAR" in sources_text(tmp_path / "real.json")
    assert short_status(tmp_path / "real.json").startswith("2 jobs on real CIFAR-LT, protocol paper")
    assert sources_text(tmp_path / "absent.json") == NO_RESULTS_SENTENCE
    assert short_status(tmp_path / "absent.json") == "not run yet"
    raw = json.loads(parts[1].read_text())
    del raw["job"]  # a results file without a job's provenance is refused, not merged as real
    parts[1].write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="no job section"):
        merge_job_files(parts, tmp_path / "raw.json")
    # a later dispatch (other seeds) merged with the earlier file keeps the earlier runs
    later = tmp_path / "later.json"
    later.write_text(json.dumps(_piece(["ce"], [2])))
    both = merge_job_files([later], tmp_path / "both.json", previous=tmp_path / "real.json")
    assert sorted(r["seed"] for r in both["experiments"][0]["runs"] if r["method"] == "ce") == [0, 1, 2]


def test_the_committed_results_file_if_any_is_a_real_reproduction():
    path = repository_results_path()
    assert path == ROOT / "results" / "cifar_lt_reproduction.json"
    if path.exists():
        payload = load_reproduction(path)
        assert payload["kind"] == "reproduction", "a simulated file must never be committed as the results"
        assert all(j["data_source"] == "real" and not j["simulation"] for e in payload["experiments"]
                   for j in e["jobs"])  # fmt: skip


def test_a_real_job_refuses_the_synthetic_stand_in(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSBOOK_ALLOW_SYNTHETIC", "1")
    job = build_matrix("cifar10", "exp100", "ce", "0")[0]
    with pytest.raises(RuntimeError, match="LOSSBOOK_ALLOW_SYNTHETIC"):
        _tool().run_job(job, "paper", tmp_path)
    assert not list(tmp_path.iterdir())


def test_a_real_job_fails_when_its_data_was_not_the_real_dataset(tmp_path, monkeypatch):
    monkeypatch.delenv("LOSSBOOK_ALLOW_SYNTHETIC", raising=False)
    tool = _tool()
    calls = []
    monkeypatch.setattr(experiments, "main", lambda argv: calls.append(argv) or 0)  # the CLI "ran"
    monkeypatch.setattr(tool, "data_source", lambda dataset: "synthetic")
    job = build_matrix("cifar100", "exp10", "ldam", "1")[0]
    with pytest.raises(RuntimeError, match="did not run on real cifar100"):
        tool.run_job(job, "paper", tmp_path)
    assert calls == [job_argv(job, "paper", tmp_path / f"{job['id']}.json")]


def test_simulation_runs_a_subset_of_the_matrix_through_the_cli_and_merges(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LOSSBOOK_ALLOW_SYNTHETIC", "1")  # simulate sets it too; monkeypatch restores it
    tool = _tool()
    status = tool.main(["simulate", "--tiny", "--datasets", "cifar10", "--settings", "step100",
                        "--methods", "ce,ldam_drw", "--seeds", "0,1", "--out-dir", str(tmp_path)])  # fmt: skip
    assert status == 0
    merged = load_reproduction(tmp_path / "cifar_lt_simulation.json")
    assert merged["kind"] == "simulation" and len(merged["experiments"]) == 1
    exp = merged["experiments"][0]
    assert exp["config"]["methods"] == ["ce", "posthoc_la", "crt", "tau_norm", "ldam_drw"]
    assert exp["config"]["seeds"] == [0, 1] and len(exp["runs"]) == 10 and exp["complete"]
    for job in exp["jobs"]:
        assert job["simulation"] and job["protocol"] == "quick" and job["epochs"] == 1
        for key in ("git_commit", "torch_version", "torchvision_version", "device", "data_source", "started",
                    "finished", "runner"):  # fmt: skip
            assert job[key], key
    table = reproduction_table(tmp_path / "cifar_lt_simulation.json")
    assert len(table) == 5 and (table["Setting"] == "step 100").all()
    assert table["Source"].str.contains("SIMULATION, not a CIFAR result").all()
    assert table.set_index("Method").loc["LDAM-DRW", "Cao et al. 2019"] == "23.08"
    printed = capsys.readouterr().out
    assert "simulated 4 jobs" in printed and "a SIMULATION of the pipeline" in printed
    before = sorted((ROOT / "results").rglob("*")) if (ROOT / "results").exists() else []
    for folder in (ROOT / "results", ROOT / "results" / "sim"):
        with pytest.raises(ValueError, match="never writes"):
            tool.simulate(folder, "quick", 1, "cifar10", "exp100", "ce", "0")
    assert (sorted((ROOT / "results").rglob("*")) if (ROOT / "results").exists() else []) == before


def test_matrix_command_writes_githubs_matrix_format(tmp_path, monkeypatch, capsys):
    out = tmp_path / "github_output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(out))
    assert _tool().main(["matrix", "--datasets", "cifar100", "--seeds", "0", "--github-output"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert len(printed["include"]) == len(SETTINGS) * len(METHOD_GROUPS)
    lines = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert json.loads(lines["matrix"]) == printed and lines["count"] == str(len(printed["include"]))


yaml = pytest.importorskip("yaml")


def _workflow() -> dict:
    data = yaml.safe_load(WORKFLOW.read_text())
    data["on"] = data.pop(True, data.get("on"))
    return data


def test_workflow_is_manual_and_its_defaults_are_the_matrix():
    wf = _workflow()
    assert list(wf["on"]) == ["workflow_dispatch"]
    inputs = wf["on"]["workflow_dispatch"]["inputs"]
    assert inputs["methods"]["default"].split(",") == list(METHOD_GROUPS)
    assert inputs["settings"]["default"].split(",") == list(SETTINGS)
    assert inputs["datasets"]["default"] == "cifar10,cifar100"
    assert inputs["timeout_minutes"]["default"] < 360  # GitHub-hosted runners stop a job at 6 hours
    assert set(inputs["protocol"]["options"]) <= set(experiments.DATASET_PROTOCOLS["cifar10"])


def test_workflow_trains_on_real_data_only_and_merges_every_job():
    wf = _workflow()
    text = WORKFLOW.read_text()
    train, merge = wf["jobs"]["train"], wf["jobs"]["merge"]
    assert "fromJSON(needs.plan.outputs.matrix)" in train["strategy"]["matrix"]
    assert train["strategy"]["fail-fast"] is False
    runs = [s["run"] for s in train["steps"] if "run" in s]
    assert 'test -z "${LOSSBOOK_ALLOW_SYNTHETIC:-}"' in runs
    assert text.count("LOSSBOOK_ALLOW_SYNTHETIC") == 1  # only the assertion: it is never set
    assert "fetch_data.py --only cifar10 --only cifar100" in text
    assert any("tools/reproduce.py job" in r and "--protocol ${{ inputs.protocol }}" in r for r in runs)
    assert merge["needs"] == ["plan", "train"] and "!cancelled()" in merge["if"]
    assert any("tools/reproduce.py merge parts" in s.get("run", "") for s in merge["steps"])
    assert "results/cifar_lt_reproduction.json" in text and wf["permissions"] == {"contents": "read"}
    assert "venv" in set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    subcommands = set(re.findall(r"tools/reproduce\.py (\w+)", text))
    assert {"matrix", "job", "merge"} <= subcommands
    parser = _tool().build_parser()
    for command in subcommands:
        with pytest.raises(SystemExit) as exit_:  # an existing subcommand prints its help and exits with 0
            parser.parse_args([command, "--help"])
        assert exit_.value.code == 0, command


def _real_parts(tmp_path, protocol, epochs, n_max=None):
    parts = []
    for seed in (0, 1, 2):
        piece = _piece(["ldam_drw"], [seed], protocol=protocol, epochs=epochs)
        piece["job"].update(id=f"cifar10-exp100-ldam_drw-s{seed}", protocol=protocol, epochs=epochs, n_max=n_max,
                            simulation=False, device="cpu")  # fmt: skip
        parts.append(tmp_path / f"j{seed}.json")
        parts[-1].write_text(json.dumps(piece))
    return parts


@pytest.mark.parametrize(
    ("protocol", "epochs", "n_max", "how"),
    [("paper", 1, None, "protocol paper, 1 epochs"), ("gpu-fast", 40, None, "protocol gpu-fast, 40 epochs"),
     ("paper", 250, None, "protocol paper, 250 epochs"), ("quick", 2, None, "protocol quick, 2 epochs"),
     ("paper", 200, 100, "protocol paper, 200 epochs, n_max 100")],
)  # fmt: skip
def test_real_jobs_off_the_papers_protocol_are_never_a_reproduction(tmp_path, protocol, epochs, n_max, how):
    merged = merge_job_files(_real_parts(tmp_path, protocol, epochs, n_max), tmp_path / "merged.json")
    assert merged["kind"] == "off-protocol"
    status = short_status(tmp_path / "merged.json")
    assert "not the paper's protocol" in status and how in status and "not a reproduction" in status
    text = sources_text(tmp_path / "merged.json")
    assert "reproduction on real" not in text and "NOT THE PAPER'S PROTOCOL" in text and how in text
    assert reproduction_table(tmp_path / "merged.json")["Source"].str.contains("NOT THE PAPER'S PROTOCOL").all()


def test_real_jobs_with_the_papers_protocol_are_a_reproduction(tmp_path):
    parts = _real_parts(tmp_path, "paper", 200)
    assert merge_job_files(parts, tmp_path / "full.json")["kind"] == "reproduction"
    assert "reproduction on real CIFAR" in sources_text(tmp_path / "full.json")
    piece = json.loads(parts[0].read_text())
    del piece["job"]["epochs"]  # an unknown budget is not the paper's protocol
    parts[0].write_text(json.dumps(piece))
    assert merge_job_files(parts, tmp_path / "unknown.json")["kind"] == "off-protocol"
    assert "unknown epochs" in short_status(tmp_path / "unknown.json")
    piece["job"]["epochs"] = 200
    del piece["job"]["n_max"]  # nor is an unknown cap on the images per class
    parts[0].write_text(json.dumps(piece))
    assert merge_job_files(parts, tmp_path / "no_cap.json")["kind"] == "off-protocol"
    assert "n_max unknown" in short_status(tmp_path / "no_cap.json")
