"""`make lint` catches what it is there for: a planted violation of each kind fails it
(ruff, sqlfluff, an import contract), with the project's own configuration."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from program_reporting.core.settings import REPO_ROOT

BIN = Path(sys.executable).parent


def _run(*args: str, cwd: Path = REPO_ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env, timeout=600)


def test_ruff_fails_on_an_unused_import(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text('"""Planted."""\n\nimport os\n')
    out = _run(str(BIN / "ruff"), "check", "--config", str(REPO_ROOT / "pyproject.toml"), str(planted))
    assert out.returncode != 0 and "imported but unused" in out.stdout


def test_ruff_format_check_fails_on_unformatted_code(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text("x=[1,2 ,3]\n")
    out = _run(str(BIN / "ruff"), "format", "--check", "--config", str(REPO_ROOT / "pyproject.toml"), str(planted))
    assert out.returncode != 0 and "planted.py" in out.stdout


def test_sqlfluff_fails_on_an_upper_case_keyword(tmp_path):
    models = tmp_path / "dbt_project" / "models"
    models.mkdir(parents=True)
    (models / "planted.sql").write_text("SELECT 1 AS one\n")
    shutil.copy(REPO_ROOT / ".sqlfluff", tmp_path / ".sqlfluff")
    out = _run(str(BIN / "sqlfluff"), "lint", "dbt_project/models", cwd=tmp_path)
    assert out.returncode != 0 and "CP01" in out.stdout


def test_import_contract_fails_when_core_imports_a_stage(tmp_path):
    shutil.copytree(REPO_ROOT / "include", tmp_path / "include", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    settings = tmp_path / "include" / "program_reporting" / "core" / "settings.py"
    settings.write_text(settings.read_text() + "\nfrom program_reporting.publishing import wap  # noqa: E402, F401\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path / "include")}
    out = _run(str(BIN / "lint-imports"), "--config", str(tmp_path / "pyproject.toml"), cwd=tmp_path, env=env)
    assert out.returncode != 0
    assert (
        "BROKEN" in out.stdout and "program_reporting.core.settings -> program_reporting.publishing.wap" in out.stdout
    )
