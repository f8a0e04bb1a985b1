"""The layers are kept by a check that can fail (docs/architecture.md, "The layers").

``lint-imports`` runs in ``.ci/run`` with the contracts in ``pyproject.toml``. These tests
prove the contracts are kept by the code as it is, and that each one breaks on the import
it exists to stop — run against a copy of the packages with one bad line added, and against
a tiny package tree for the project's own contract type (import-linter has none that stops
one package importing another's private module; ``tools/import_contracts.py`` adds it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("cme", "flows", "tasks", "connectors", "notifications", "models", "policy",
            "sandbox")
LINT = [sys.executable, "-c",
        "import sys; from importlinter.cli import lint_imports_command; "
        "sys.exit(lint_imports_command())", "--no-cache", "--no-logo"]


def _lint(cwd: Path, config: Path) -> subprocess.CompletedProcess[str]:
    # cwd first on the path: the copy's packages, not the installed checkout's; the repository
    # root after it for tools.import_contracts.
    env = {**os.environ, "PYTHONPATH": f"{cwd}{os.pathsep}{ROOT}", "COLUMNS": "200"}
    return subprocess.run([*LINT, str(config)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


def test_the_projects_contracts_are_kept() -> None:
    done = _lint(ROOT, ROOT / "pyproject.toml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 kept, 0 broken" in done.stdout, done.stdout


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's packages (Python files only) and its pyproject.toml, in a temp folder."""
    dest = tmp_path_factory.mktemp("layers")
    for name in PACKAGES:
        shutil.copytree(ROOT / name, dest / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.json", "*.yaml",
                                                      "*.md", "*.tmpl", "worlds", "openapi"))
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


@pytest.mark.parametrize(("module", "line", "contract", "says"), [
    ("tasks/_probe.py", "from flows.settings import get_settings\n",
     "The layers", "tasks is not allowed to import flows"),
    ("connectors/_probe.py", "import cme.errors\n",
     "The layers", "connectors is not allowed to import cme"),
    ("notifications/_probe.py", "from connectors import reveal\n",
     "The layers", "notifications is not allowed to import connectors"),
    ("tasks/_probe.py", "import sandbox\n",
     "Production code never imports the simulator", "tasks is not allowed to import sandbox"),
    ("sandbox/_probe.py", "import tasks\n",
     "The simulator sits beside connectors", "sandbox is not allowed to import tasks"),
    ("flows/_probe.py", "from tasks._common import event\n",
     "No package imports another package's private module",
     "flows._probe imports tasks._common"),
    ("cme/_probe.py", "from flows import _progress\n",
     "No package imports another package's private module",
     "cme._probe imports flows._progress"),
], ids=["tasks-flows", "connectors-cme", "siblings", "tasks-sandbox", "sandbox-tasks",
        "private-module", "private-module-from-import"])
def test_each_contract_breaks_on_the_import_it_stops(
        copy: Path, module: str, line: str, contract: str, says: str) -> None:
    probe = copy / module
    probe.write_text(line)
    try:
        done = _lint(copy, copy / "pyproject.toml")
    finally:
        probe.unlink()
    out = " ".join(done.stdout.split())
    assert done.returncode != 0, out
    assert "3 kept, 1 broken" in out, out
    assert f"{contract}" in out and says in out, out


def _tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


CONFIG = """\
[importlinter]
root_packages =
    alpha
    beta
contract_types =
    private_modules: tools.import_contracts.PrivateModulesStayHome

[importlinter:contract:private]
name = Private modules stay home
type = private_modules
packages =
    alpha
    beta
"""


@pytest.mark.parametrize(("uses", "kept"), [
    ("from alpha._hidden import thing\n", False),
    ("from alpha import _hidden\n", False),
    ("import alpha.sub._deep.inner\n", False),
    ("from alpha import thing\n", True),          # the package's public name
    ("from alpha.public import thing\n", True),   # a public module
], ids=["from-private", "import-private", "private-in-the-middle", "public-name",
        "public-module"])
def test_the_private_module_contract_on_a_tiny_tree(tmp_path: Path, uses: str,
                                                    kept: bool) -> None:
    _tree(tmp_path, {
        "alpha/__init__.py": "from alpha._hidden import thing\n",
        "alpha/_hidden.py": "thing = 1\n",
        "alpha/public.py": "from alpha._hidden import thing\n",  # its own: allowed
        "alpha/sub/__init__.py": "",
        "alpha/sub/_deep/__init__.py": "",
        "alpha/sub/_deep/inner.py": "",
        "beta/__init__.py": "",
        "beta/uses.py": uses,
        ".importlinter": CONFIG,
    })
    done = _lint(tmp_path, tmp_path / ".importlinter")
    out = " ".join(done.stdout.split())
    assert (done.returncode == 0) is kept, out
    if not kept:
        assert "beta.uses imports alpha." in out and "l.1" in out, out
