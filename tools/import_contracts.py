"""import-linter contract types of this project (``[tool.importlinter]`` in pyproject.toml).

``private modules stay home``: a module whose dotted name has a part starting with one
underscore (``tasks._common``, ``policy._calendar``) belongs to its top-level package; any
other listed package importing it breaks the contract. import-linter has no such contract
built in; docs/architecture.md says why the rule exists (each package's ``__init__`` and
public modules are what the rest may rely on, so a package can rearrange its insides).
"""

from __future__ import annotations

from typing import Any

from importlinter import Contract, ContractCheck, fields, output

__all__ = ["PrivateModulesStayHome"]


def _is_private(module: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__")
               for part in module.split(".")[1:])


class PrivateModulesStayHome(Contract):
    """No package in ``packages`` imports another package's private module."""

    type_name = "private modules stay home"

    packages = fields.ListField(subfield=fields.StringField())

    def check(self, graph: Any, verbose: bool) -> ContractCheck:
        packages = {str(p) for p in self.packages}  # type: ignore[attr-defined]
        broken: list[dict[str, Any]] = []
        for importer in sorted(graph.modules):
            home = importer.split(".")[0]
            if home not in packages:
                continue
            for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                owner = imported.split(".")[0]
                if owner == home or owner not in packages or not _is_private(imported):
                    continue
                lines = sorted({d["line_number"] for d in graph.get_import_details(
                    importer=importer, imported=imported)})
                broken.append({"importer": importer, "imported": imported, "lines": lines})
        return ContractCheck(kept=not broken, metadata={"broken": broken})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for b in check.metadata["broken"]:
            where = ", ".join(f"l.{n}" for n in b["lines"])
            output.print_error(
                f"{b['importer']} imports {b['imported']}, a private module of another "
                f"package ({where}): import a public name instead", bold=False)
            output.new_line()
