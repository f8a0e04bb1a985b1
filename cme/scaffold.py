"""``cme connectors new``: write a connector package of its own from the template in
``cme/templates/connector/``.

A small template of our own (``string.Template``, seven files, four names to fill in) rather
than copier or cookiecutter: nothing to install for one command, and the files it writes
are tested here exactly as a connector author receives them (README, "Connector authors").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

from cme.errors import CmeError

__all__ = ["ConnectorPackage", "new_connector_package"]

_TEMPLATES = Path(__file__).parent / "templates" / "connector"
_NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class ConnectorPackage:
    """What :func:`new_connector_package` wrote."""

    root: Path
    dist: str
    package: str
    class_name: str
    files: tuple[Path, ...]


def new_connector_package(name: str, out: Path, *, deferred: bool = False,
                          agency: str | None = None) -> ConnectorPackage:
    """Write the package ``cme-connector-<name>`` into ``out`` (a new folder of that name);
    :class:`CmeError` if ``name`` is not a connector name or the folder exists."""
    if not _NAME.fullmatch(name):
        raise CmeError(f"connector name {name!r} must match [a-z][a-z0-9_]* "
                       "(it is also the CME_<NAME>_ settings prefix)")
    dist = f"cme-connector-{name.replace('_', '-')}"
    root = out / dist
    if root.exists():
        raise CmeError(f"{root} already exists: choose another folder with --out")
    words = name.split("_")
    camel = "".join(w.capitalize() for w in words)
    values = {
        "name": name,
        "dist": dist,
        "package": f"cme_{name}",
        "class_name": f"{camel}Connector",
        "settings_class": f"{camel}Settings",
        "env": name.upper(),
        "agency": agency or " ".join(words).capitalize() + " service",
        "lookup_path": "v1/requests" if deferred else "v1/lookups",
        "deferred_bool": str(deferred),
        "deferred_flag": " --deferred" if deferred else "",
        "demo_nights": " --nights 2" if deferred else "",
    }
    mode = "deferred" if deferred else "immediate"
    src = Path("src") / values["package"]
    layout = {
        "pyproject.toml": "pyproject.toml",
        "README.md": "README.md",
        str(src / "__init__.py"): "__init__.py",
        str(src / "py.typed"): "py.typed",
        str(src / "connector.py"): f"connector_{mode}.py",
        str(src / "fake_agency.py"): "fake_agency.py",
        "tests/test_conformance.py": f"test_conformance_{mode}.py",
        "tests/test_fake_agency.py": "test_fake_agency.py",
    }
    written = []
    for target, template in layout.items():
        text = Template((_TEMPLATES / f"{template}.tmpl").read_text(encoding="utf-8"))
        path = root / target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.substitute(values), encoding="utf-8")
        written.append(path)
    return ConnectorPackage(root, dist, values["package"], values["class_name"],
                            tuple(written))
