"""The package's shape, as docs/development.md states it: imports point down and never at
app.py; Flask only in app.py and stream_backend/web/; every module says what it holds."""

import ast
from pathlib import Path

import pytest

from live import ROOT

PACKAGE = ROOT / "stream_backend"
MODULES = sorted(PACKAGE.rglob("*.py"))
WEB_ONLY = {
    "flask",
    "flask_cors",
    "flask_swagger_ui",
    "werkzeug",
    "gunicorn",
    "dotenv",
    "jwt",
    "click",
    "prometheus_client",
    "pythonjsonlogger",
}


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(ROOT)))
def test_no_module_imports_the_app(path):
    assert not {name for name in imported(path) if name.split(".")[0] == "app"}


@pytest.mark.parametrize(
    "path",
    [path for path in MODULES if "web" not in path.relative_to(PACKAGE).parts],
    ids=lambda path: str(path.relative_to(ROOT)),
)
def test_flask_and_the_web_stack_stay_in_web(path):
    assert not {name.split(".")[0] for name in imported(path)} & WEB_ONLY
    assert not {name for name in imported(path) if name.startswith("stream_backend.web")}


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_module_has_a_docstring(path):
    if path.name == "py.typed":
        return
    assert ast.get_docstring(ast.parse(path.read_text())), f"{path.relative_to(ROOT)} says nothing of what it holds"
