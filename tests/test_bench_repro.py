"""The whole-pipeline timing bench (pipeline/bench/repro.py) against a stand-in `dvc` and a real pytest report."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import machine
from pipeline.bench import repro

# A stand-in for `dvc`: `repro -f` sleeps 0.3 s (and rewrites dvc.lock when CHANGE_LOCK is set), `repro` 0.05 s.
FAKE_DVC = """#!{python}
import os, sys, time
args = sys.argv[1:]
if args == ["repro", "-f"]:
    time.sleep(0.3)
    if os.environ.get("CHANGE_LOCK"):
        open("dvc.lock", "a").write("changed\\n")
elif args == ["repro"]:
    time.sleep(0.05)
else:
    sys.exit(2)
"""


@pytest.fixture
def fake_dvc_repo(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    dvc = bin_dir / "dvc"
    dvc.write_text(FAKE_DVC.format(python=sys.executable))
    dvc.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    root = tmp_path / "repo"
    root.mkdir()
    (root / "dvc.lock").write_text("schema: '2.0'\n")
    return root


def test_measure_times_each_run_and_checks_the_goals(fake_dvc_repo):
    report = repro.measure(fake_dvc_repo, default_runs=2, noop_runs=3, smoke=False)
    seconds = report["seconds"]
    assert set(seconds) == {"default", "noop"} and report["runs"] == {"default": 2, "noop": 3, "smoke": 0}
    assert 0.3 <= seconds["default"]["min"] <= seconds["default"]["median"] <= seconds["default"]["max"] < 30
    assert 0.05 <= seconds["noop"]["min"] <= seconds["noop"]["max"] < seconds["default"]["min"]
    assert report["met"] == {"default": True, "noop": True}
    text = repro.markdown(report)
    assert "| no-op `dvc repro` | 3 |" in text and "| 300 | yes |" in text


def test_a_run_that_changes_the_lock_stops_the_bench(fake_dvc_repo, monkeypatch):
    monkeypatch.setenv("CHANGE_LOCK", "1")
    with pytest.raises(SystemExit, match=r"dvc\.lock: `dvc repro -f` changed"):
        repro.measure(fake_dvc_repo, default_runs=1, noop_runs=1, smoke=False)


def test_a_failing_command_names_itself(tmp_path):
    with pytest.raises(SystemExit, match=r"`.* -c import sys; sys.exit\(3\)` exited 3"):
        repro.timed([sys.executable, "-c", "import sys; sys.exit(3)"], tmp_path)


def test_the_smoke_property_is_read_from_pytest_junit_xml(tmp_path):
    (tmp_path / "test_probe.py").write_text(
        "def test_probe(record_property):\n    record_property('dvc repro seconds', 12.5)\n")
    xml = tmp_path / "out.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_probe.py",
                    f"--junitxml={xml}"], cwd=tmp_path, check=True, capture_output=True)
    assert repro.junit_property(xml.read_text(), repro.SMOKE_PROPERTY) == 12.5
    assert repro.junit_property(xml.read_text(), "other seconds") is None


def test_the_cpu_is_named_with_its_family_and_model():
    two_cpus = "processor\t: 0\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\n\nprocessor\t: 1\nmodel\t: 99\n"
    assert machine.cpu_model(two_cpus) == "AMD EPYC (family 25, model 17)"
    assert machine.cpu_model("model name\t: Some CPU\n") == "Some CPU"
