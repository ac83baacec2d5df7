"""One distribution per program: what each declares, and that the web page and eval tool need no model stack."""

from __future__ import annotations

import ast
import re
import tomllib

import pytest

from helpers.paths import ROOT

PYTHON = ROOT / "python"
DISTRIBUTIONS = {
    "sqlcoder_daemon": "sqlcoder-daemon",
    "sqlcoder_web": "sqlcoder-web",
    "sqlcoder_eval": "sqlcoder-eval",
    "sqlcoder_dev": "sqlcoder-dev",
}
MODEL_STACK = {"torch", "transformers", "accelerate", "bitsandbytes", "vllm", "llama-cpp-python", "safetensors"}


def _project(package: str) -> dict:
    return tomllib.loads((PYTHON / package / "pyproject.toml").read_text())


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\[<>=~!; ]", r, maxsplit=1)[0].lower() for r in requirements}


def _imports(package: str) -> set[str]:
    """Top-level modules a package imports anywhere (lazy imports inside functions included)."""
    found: set[str] = set()
    for path in (PYTHON / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(DISTRIBUTIONS))
def test_each_program_is_its_own_distribution(package):
    project = _project(package)["project"]
    assert project["name"] == DISTRIBUTIONS[package]
    setuptools = _project(package)["tool"]["setuptools"]
    assert setuptools["package-dir"] == {package: "."}
    # Every subpackage is listed, or its modules would be missing from the wheel.
    subpackages = {package + "." + ".".join(p.parent.relative_to(PYTHON / package).parts)
                   for p in (PYTHON / package).rglob("__init__.py") if p.parent != PYTHON / package}
    assert set(setuptools["packages"]) == {package} | subpackages


@pytest.mark.parametrize("package", ["sqlcoder_web", "sqlcoder_eval"])
def test_page_and_eval_pull_no_model_stack(package):
    project = _project(package)["project"]
    assert not _names(project["dependencies"]) & MODEL_STACK
    assert not (_imports(package) & {"torch", "transformers", "accelerate", "llama_cpp", "sqlcoder_daemon"})


def test_production_programs_never_import_the_developer_tooling_eagerly():
    # The eval tool's `check` and `judge` start a private cluster with sqlcoder_dev, an optional extra.
    assert "sqlcoder_dev" not in _imports("sqlcoder_daemon") | _imports("sqlcoder_web")
    assert "sqlcoder-dev" in _names(_project("sqlcoder_eval")["project"]["optional-dependencies"]["check"])


def test_versions_are_the_extensions():
    control = re.search(r"default_version\s*=\s*'([^']+)'", (ROOT / "sqlcoder.control").read_text()).group(1)
    for package in ["sqlcoder", *DISTRIBUTIONS]:
        source = (PYTHON / package / "__init__.py").read_text()
        assert re.search(r'^__version__ = "([^"]+)"', source, re.M).group(1) == control, package


def test_the_daemon_image_installs_only_the_daemon():
    dockerfile = (ROOT / "docker" / "daemon.Dockerfile").read_text()
    copies = re.findall(r"^COPY (?!--from)(\S+)", dockerfile, re.M)
    assert "python/sqlcoder_daemon" in copies
    assert not [c for c in copies if c.startswith("python") and c != "python/sqlcoder_daemon"]
    assert "pyproject.toml" not in copies


def test_the_workspace_root_is_no_distribution():
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "project" not in root and "build-system" not in root
