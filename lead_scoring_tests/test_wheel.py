"""The wheel ships the product only: the package with its migrations, templates and static
files; no benchmark, no screenshot tool, no test."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory) -> list[str]:
    """The file names of a wheel built from a copy of the sources (a build in the repository
    would leave build/ and egg-info folders behind)."""
    source = tmp_path_factory.mktemp("wheel_source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPOSITORY / name, source / name)
    shutil.copytree(
        REPOSITORY / "lead_scoring_assets",
        source / "lead_scoring_assets",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = out.glob("lead_scoring-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def test_the_wheel_holds_the_product(wheel_names):
    for expected in (
        "lead_scoring_assets/definitions.py",
        "lead_scoring_assets/cli.py",
        "lead_scoring_assets/api/templates/contacts.html",
        "lead_scoring_assets/api/static/dashboard.js",
        "lead_scoring_assets/db/migrations/versions/0001_operational_schema.py",
    ):
        assert expected in wheel_names


def test_the_wheel_holds_no_benchmark_screenshot_tool_or_test(wheel_names):
    tooling = [
        name
        for name in wheel_names
        if name.startswith(
            ("lead_scoring_assets/benchmarks/", "benchmarks/", "lead_scoring_tests/", "tools/")
        )
        or name.endswith("/screenshots.py")
    ]
    assert not tooling, tooling
