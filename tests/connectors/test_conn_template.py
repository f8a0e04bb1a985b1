"""Issue 20: connector authors get a package that works as generated, the guide's pyproject
snippet installs as written, and an outside connector runs in `cme demo` against its own
fake agency while the sandbox serves the built-ins (issue 16, point 2).

Packages are installed for real (pip, offline: --no-index --no-build-isolation) into a
folder of their own that the child processes put on PYTHONPATH, so the dev venv is left
untouched and discovery goes through the installed entry-point metadata.
"""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
import tomllib
from collections import Counter
from pathlib import Path

import httpx
import pytest

from cme.scaffold import new_connector_package

ROOT = Path(__file__).resolve().parents[2]
BUILTINS = "other_la,housing,lpd,dwp,border_force"


def _pip_install(package: Path, target: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
         "--no-build-isolation", "--target", str(target), str(package)],
        check=True, capture_output=True, text=True, timeout=300,
    )


def _env(site: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CME_")}
    env["PYTHONPATH"] = str(site)
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Both kinds of package, generated and installed: name → (package folder, site)."""
    out: dict[str, tuple[Path, Path]] = {}
    for name, deferred in (("gp_registration", False), ("school_nursing", True)):
        base = tmp_path_factory.mktemp(name)
        made = new_connector_package(name, base, deferred=deferred)
        site = base / "site"
        _pip_install(made.root, site)
        out[name] = (made.root, site)
    return out


@pytest.mark.parametrize("name", ["gp_registration", "school_nursing"],
                         ids=["immediate", "deferred"])
def test_a_generated_package_passes_its_own_kit_tests(
    generated: dict[str, tuple[Path, Path]], name: str
) -> None:
    root, site = generated[name]
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                         cwd=root, env=_env(site), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    passed = int(re.search(r"(\d+) passed", run.stdout).group(1))  # type: ignore[union-attr]
    assert passed >= 31  # the kit's standard tests and the fake agency's own
    assert "failed" not in run.stdout and "error" not in run.stdout.lower().split("passed")[-1]


def test_generated_files_name_the_connector_and_its_entry_point(
    generated: dict[str, tuple[Path, Path]],
) -> None:
    root, site = generated["gp_registration"]
    meta = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    assert meta["project"]["entry-points"]["cme.connectors"] == {
        "gp_registration": "cme_gp_registration.connector:GpRegistrationConnector"}
    installed = (site / "cme_gp_registration" / "py.typed")
    assert installed.exists()  # the package's own types reach its users
    text = (root / "src" / "cme_gp_registration" / "connector.py").read_text(encoding="utf-8")
    assert "Connector[GpRegistrationSettings]" in text and "self.settings.lookup_path" in text


def test_an_existing_folder_or_a_bad_name_is_refused(tmp_path: Path) -> None:
    from cme.errors import CmeError

    new_connector_package("gp", tmp_path)
    with pytest.raises(CmeError, match="already exists"):
        new_connector_package("gp", tmp_path)
    with pytest.raises(CmeError, match=r"\[a-z\]"):
        new_connector_package("GP-Registration", tmp_path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_generated_connector_runs_in_cme_demo_against_its_own_fake_agency(
    generated: dict[str, tuple[Path, Path]], tmp_path: Path,
) -> None:
    _, site = generated["gp_registration"]
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    agency = subprocess.Popen(
        [sys.executable, "-m", "cme_gp_registration.fake_agency", "--port", str(port)],
        env=_env(site), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline or agency.poll() is not None:
                    raise
            time.sleep(0.2)
        env = _env(site, CME_CONNECTORS=f"{BUILTINS},gp_registration",
                   CME_GP_REGISTRATION_BASE_URL=base, CME_GP_REGISTRATION_ALLOW_HTTP="true")
        demo = subprocess.run(
            [sys.executable, "-c", "from cme.cli import main; main()", "demo",
             "--children", "40", "--nights", "1"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
        counts = httpx.get(f"{base}/_counts", timeout=5).json()
        _debug_check(tmp_path, env, base)
    finally:
        agency.terminate()
        agency.wait(timeout=30)

    with sqlite3.connect(tmp_path / "cme.db") as db:
        rows = db.execute("SELECT connector, outcome, fields_disclosed FROM \"check\"").fetchall()
    by_connector = Counter((c, o) for c, o, _ in rows)
    gp = {o: n for (c, o), n in by_connector.items() if c == "gp_registration"}
    # Every due referral was asked of the outside agency, at its own host: answers, no errors.
    assert set(gp) == {"found", "not_found"}, gp
    assert sum(gp.values()) == counts["asked"]
    # ... while the sandbox still answered for the built-ins, in process.
    assert {c for (c, _o) in by_connector} == {*BUILTINS.split(","), "gp_registration"}
    assert not any(c != "gp_registration" and o == "error" for (c, o) in by_connector)
    disclosed = {f for c, _, fields in rows if c == "gp_registration"
                 for f in re.findall(r"\w+", fields)}
    assert disclosed <= {"nhs_number", "forename", "surname", "dob"}


def _debug_check(folder: Path, env: dict[str, str], base: str) -> None:
    """Issue 20, point 4: `cme connectors check NAME --reference REF` shows what was sent and
    parsed, with personal values masked unless --show-personal."""
    with sqlite3.connect(folder / "cme.db") as db:
        ref, surname, forename, dob = db.execute(
            "SELECT r.mendix_reference, c.surname, c.forename, c.dob FROM referral r "
            "JOIN child c ON c.id = r.child_id ORDER BY r.id LIMIT 1").fetchone()
    personal = [surname, forename, str(dob)[:10]]

    def check(*extra: str) -> str:
        run = subprocess.run(
            [sys.executable, "-c", "from cme.cli import main; main()", "connectors", "check",
             "gp_registration", "--reference", ref, *extra],
            cwd=folder, env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        return run.stdout

    masked = check()
    assert f"request 1: POST {base}/v1/lookups" in masked
    disclosed = re.search(r"search: disclosed ([a-z_, ]+); 1 HTTP call", masked)
    assert disclosed, masked
    assert {"dob", "forename", "surname"} <= set(disclosed.group(1).split(", "))
    assert "JSON with keys: " in masked and "parsed (search):" in masked
    assert not [p for p in personal if p.lower() in masked.lower()], "personal data printed"
    shown = check("--show-personal")
    assert surname in shown and str(dob)[:10] in shown


def _doc_snippet() -> str:
    text = (ROOT / "docs" / "connectors.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- connector-pyproject -->\s*```toml\n(.*?)```", text, flags=re.S)
    assert match, "docs/connectors.md lost its marked pyproject snippet"
    return match.group(1)


def test_the_guides_pyproject_snippet_installs_as_written(tmp_path: Path) -> None:
    package = tmp_path / "my-agency-connector"
    (package / "src" / "my_agency").mkdir(parents=True)
    (package / "pyproject.toml").write_text(_doc_snippet(), encoding="utf-8")
    (package / "src" / "my_agency" / "__init__.py").write_text("", encoding="utf-8")
    (package / "src" / "my_agency" / "connector.py").write_text(
        "class MyAgencyConnector:\n    pass\n", encoding="utf-8")
    site = tmp_path / "site"
    _pip_install(package, site)
    (info,) = site.glob("my_agency_connector-*.dist-info")
    entry_points = (info / "entry_points.txt").read_text(encoding="utf-8")
    assert "[cme.connectors]" in entry_points
    assert "my_agency = my_agency.connector:MyAgencyConnector" in entry_points
    assert (site / "my_agency" / "connector.py").exists()
