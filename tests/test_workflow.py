"""The publishing workflow (.github/workflows/book.yml) cannot run here, so check what can be checked:
it validates against GitHub's workflow schema (vendored by check-jsonschema, offline), it does what the
README says (tests + quick build + browser check on pull requests; full build + Pages deploy on main),
and every command it calls exists in this repository."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
BOOK = ROOT / ".github" / "workflows" / "book.yml"


def _load(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def _runs(job: dict) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


def _uses(job: dict) -> list[str]:
    return [step["uses"].split("@")[0] for step in job["steps"] if "uses" in step]


def test_there_is_a_workflow():
    assert BOOK in WORKFLOWS


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_matches_github_schema(path):
    pytest.importorskip("check_jsonschema")
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_rejects_a_broken_workflow(tmp_path):
    """The check has teeth: a job without runs-on, and a misspelt trigger, fail it."""
    pytest.importorskip("check_jsonschema")
    bad = tmp_path / "bad.yml"
    bad.write_text("on: {pusj: {}}\njobs:\n  x:\n    steps:\n      - run: echo\n")
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(bad)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0


def test_triggers_and_jobs():
    wf = _load(BOOK)
    assert wf["on"]["push"]["branches"] == ["main"]
    assert "pull_request" in wf["on"]
    check, build, deploy = wf["jobs"]["check"], wf["jobs"]["build"], wf["jobs"]["deploy"]
    assert "pull_request" in check["if"] and "!=" not in check["if"]
    assert "!= 'pull_request'" in build["if"]
    assert deploy["needs"] == "build" and "refs/heads/main" in deploy["if"]


def test_pull_requests_run_tests_quick_build_and_browser_check():
    runs = " ; ".join(_runs(_load(BOOK)["jobs"]["check"]))
    for command in ("make test", "make book-quick", "make check-html HTML=_build/quick/_build/html", "make lint"):
        assert command in runs


def test_main_builds_full_book_on_real_data_and_deploys_to_pages():
    wf = _load(BOOK)
    build, deploy = wf["jobs"]["build"], wf["jobs"]["deploy"]
    runs = " ; ".join(_runs(build))
    assert "make book" in runs.replace("make book-quick", "") and "tools/fetch_data.py" in runs
    assert "LOSSBOOK_ALLOW_SYNTHETIC" not in BOOK.read_text()  # the published book never uses the stand-in
    assert {"actions/configure-pages", "actions/upload-pages-artifact"} <= set(_uses(build))
    upload = next(s for s in build["steps"] if s.get("uses", "").startswith("actions/upload-pages-artifact"))
    assert upload["with"]["path"] == "_build/html"
    assert _uses(deploy) == ["actions/deploy-pages"]
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["environment"]["name"] == "github-pages"


def test_caches_cover_data_and_execution_inputs():
    build = _load(BOOK)["jobs"]["build"]
    caches = {s["with"]["path"]: s["with"] for s in build["steps"] if s.get("uses", "").startswith("actions/cache")}
    assert "data" in caches, "datasets are cached between runs"
    key = caches["_build/.jupyter_cache"]["key"]
    for part in ("notebooks/**", "helpers/**", "requirements.txt", "pyproject.toml"):
        assert part in key, f"the execution cache key misses {part}"


def test_every_command_the_workflow_calls_exists():
    text = BOOK.read_text()
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    for target in re.findall(r"\bmake ([\w-]+)", text):
        assert target in targets, f"the workflow calls `make {target}`, which the Makefile lacks"
    for script in re.findall(r"\b((?:tools|tests)/[\w/]+\.py)\b", text):
        assert (ROOT / script).is_file(), f"the workflow calls {script}, which does not exist"


def test_html_baseurl_is_the_pages_address():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["html"]["baseurl"] == "https://lossbook.github.io/pytorch-losses-book/"
    owner, repo = config["repository"]["url"].rstrip("/").split("/")[-2:]
    assert config["html"]["baseurl"] == f"https://{owner}.github.io/{repo}/"
