"""The library's layers, read from its imports: every import points down.

Bottom-up: the root (``config``, ``errors``); ``lake`` and ``model`` side by side (the model
never needs a lake); ``evaluate``; ``registry``; ``stages``; the ``shell``. Each package
imports only the layers its ``__init__`` names. Only ``lstm_pipeline/registry`` imports
mlflow, and only ``flows/`` imports prefect. Imports inside functions and under
``TYPE_CHECKING`` count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "lstm_pipeline"
FLOWS = ROOT / "flows"

# package ("" is the root) -> the packages its modules may import, besides itself
MAY_IMPORT: dict[str, set[str]] = {
    "": set(),
    "lake": {""},
    "model": {""},
    "evaluate": {"", "model"},
    "registry": {"", "model", "evaluate"},
    "stages": {"", "lake", "model", "evaluate", "registry"},
    "shell": {"", "lake", "model", "evaluate", "registry", "stages", "flows"},
    "flows": {"", "lake", "model", "evaluate", "registry", "stages"},
}
ROOT_MODULES = {"__init__", "config", "errors"}
# The old name of registry/bundle.py, kept for versions registered before the layout (it
# imports nothing else).
ROOT_MODULES_COMPAT = {"bundle": "registry"}


def modules() -> dict[Path, str]:
    """Every module of the library and of flows/, with the package it belongs to."""
    found = {}
    for path in sorted(LIBRARY.rglob("*.py")):
        parts = path.relative_to(LIBRARY).parts
        if len(parts) == 1:
            found[path] = ROOT_MODULES_COMPAT.get(path.stem, "")
        else:
            found[path] = parts[0]
    for path in sorted(FLOWS.rglob("*.py")):
        found[path] = "flows"
    return found


def imported(path: Path) -> set[str]:
    """Full names of the modules ``path`` imports, relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parts = path.relative_to(ROOT).with_suffix("").parts
    package = parts[:-1]  # a module's package; for an __init__, the package itself
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            names.add(module)
            # `from lstm_pipeline.lake import tables` imports the module lstm_pipeline.lake.tables
            names |= {f"{module}.{alias.name}" for alias in node.names}
    return names


def layer_of(name: str) -> str | None:
    """The package of an imported name inside this project, None when it is outside."""
    parts = name.split(".")
    if parts[0] == "flows":
        return "flows"
    if parts[0] != "lstm_pipeline":
        return None
    if len(parts) > 1 and parts[1] in MAY_IMPORT:
        return parts[1]
    if len(parts) > 1 and parts[1] in ROOT_MODULES_COMPAT:
        return ROOT_MODULES_COMPAT[parts[1]]
    return ""  # the root: lstm_pipeline itself, config, errors


def test_every_module_lives_in_a_layer() -> None:
    flat = [p.name for p, package in modules().items()
            if package == "" and p.parent == LIBRARY and p.stem not in ROOT_MODULES]
    assert flat == [], "modules at the root of lstm_pipeline/: put each in the package of its layer"
    packages = {p.relative_to(LIBRARY).parts[0] for p in LIBRARY.rglob("*.py") if p.parent != LIBRARY}
    assert packages == set(MAY_IMPORT) - {"", "flows"}


def test_every_import_points_down() -> None:
    wrong = []
    for path, package in modules().items():
        allowed = MAY_IMPORT[package] | {package}
        for name in sorted(imported(path)):
            target = layer_of(name)
            if target is not None and target not in allowed:
                wrong.append(f"{path.relative_to(ROOT)} ({package or 'root'}) imports {name} ({target or 'root'})")
    assert wrong == []


def test_the_compatibility_module_only_points_at_the_bundle() -> None:
    for stem, package in ROOT_MODULES_COMPAT.items():
        path = LIBRARY / f"{stem}.py"
        if path.exists():
            assert imported(path) <= {f"lstm_pipeline.{package}.{stem}", f"lstm_pipeline.{package}.{stem}.ModelBundle"}


def _importers(top: str) -> set[str]:
    return {str(path.relative_to(ROOT)) for path in modules()
            if any(name == top or name.startswith(top + ".") for name in imported(path))}


def test_only_the_registry_imports_mlflow() -> None:
    users = _importers("mlflow")
    assert users and all(user.startswith("lstm_pipeline/registry/") for user in users), sorted(users)


def test_only_flows_imports_prefect() -> None:
    users = _importers("prefect")
    assert users and all(user.startswith("flows/") for user in users), sorted(users)


def test_the_model_and_the_evaluation_need_no_storage() -> None:
    for store in ("deltalake", "mlflow", "prefect", "torch.utils.tensorboard"):
        users = [u for u in _importers(store) if u.startswith(("lstm_pipeline/model/", "lstm_pipeline/evaluate/"))]
        assert users == [], f"{store} imported by {users}"


def test_each_package_says_what_lives_there_and_what_it_may_import() -> None:
    for package in set(MAY_IMPORT) - {"", "flows"}:
        tree = ast.parse((LIBRARY / package / "__init__.py").read_text(encoding="utf-8"))
        doc = ast.get_docstring(tree)
        assert doc and len(tree.body) == 1, f"{package}/__init__.py: one docstring and nothing else"
        assert "May import:" in doc, package
        listed = {p.stem for p in (LIBRARY / package).glob("*.py") if p.stem != "__init__"}
        missing = sorted(m for m in listed if f"``{m}``" not in doc)
        assert missing == [], f"{package}/__init__.py does not say what {missing} are"
