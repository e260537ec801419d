"""The package as a Python backend installs it: the wheel built from pyproject.toml, installed
with its core dependencies only into a fresh venv outside the checkout, runs the README's
Python example against the stand-in, without Flask."""

import json
import re
import subprocess
import sys
import zipfile

import pytest
import requests

import live
from live import ROOT
from support.examples import API_KEY, API_SECRET


def run(command, **options):
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=600, **options)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", out, ROOT])
    (built,) = out.glob("stream_backend-*.whl")
    return built


@pytest.fixture(scope="module")
def python(wheel, tmp_path_factory):
    """A venv outside the checkout with the wheel and its core dependencies only."""
    venv = tmp_path_factory.mktemp("venv") / "venv"
    run([sys.executable, "-m", "venv", venv])
    run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheel])
    return venv / "bin" / "python"


def test_the_wheel_holds_one_top_level_package_typed(wheel):
    names = zipfile.ZipFile(wheel).namelist()

    assert {name.split("/")[0] for name in names if ".dist-info/" not in name} == {"stream_backend"}
    assert "stream_backend/py.typed" in names
    assert "stream_backend/web/templates/docs.html" in names


def test_only_the_core_dependencies_are_installed(python):
    installed = {package["name"].lower() for package in json.loads(run([python, "-m", "pip", "list", "--format=json"]))}

    assert {"stream-backend", "stream-chat", "pydantic"} <= installed
    assert not installed & {"flask", "werkzeug", "gunicorn", "redis", "tqdm", "flask-cors"}


def test_importing_the_package_imports_no_flask(python, tmp_path):
    imported = run(
        [
            python,
            "-c",
            "import sys; from stream_backend import Mirror; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'flask', 'werkzeug', 'redis'}))",
        ],
        cwd=tmp_path,
    )

    assert imported.strip() == "[]"


def test_every_public_name_is_exported_and_typed(python, tmp_path):
    names = run(
        [
            python,
            "-c",
            "import stream_backend; print(' '.join(stream_backend.__all__)); "
            "[getattr(stream_backend, name) for name in stream_backend.__all__]",
        ],
        cwd=tmp_path,
    ).split()

    assert {"Mirror", "parse_channel", "parse_message", "StreamBackendError"} <= set(names)


def readme_python_example() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"```python\n(.*?)```", readme, re.DOTALL)
    assert match, "the README has no ```python example"
    return match.group(1)


def test_the_readmes_python_example_runs_as_written_against_the_stand_in(python, tmp_path):
    (tmp_path / "example.py").write_text(readme_python_example())
    with live.stand_in(API_KEY, API_SECRET) as stand_in:
        env = {
            "STREAM_API_KEY": API_KEY,
            "STREAM_API_SECRET": API_SECRET,
            "STREAM_CHAT_URL": stand_in,
            "PATH": "/usr/bin:/bin",
        }
        printed = run([python, "example.py"], cwd=tmp_path, env=env)
        received = requests.get(f"{stand_in}/_stand_in/requests", timeout=5).json()["requests"]

    assert re.fullmatch(r"messaging:!members-\w+ 123-456-789-01234\n", printed)
    assert [(call["method"], call["path"].rsplit("/", 1)[-1]) for call in received] == [
        ("POST", "users"),
        ("POST", "query"),
        ("POST", "message"),
    ]
