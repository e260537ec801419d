"""GET /docs in a real browser: Debian's headless chromium loads the page from the service as
the Procfile starts it, Swagger UI renders /openapi.json, and every route is listed."""

import os
import shutil
import subprocess
import tempfile

import pytest

from app import api

import live

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Headless and quiet: without the background-networking flags chromium keeps calling home.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def rendered(url: str) -> str:
    """The page's DOM once its scripts ran and its requests were answered."""
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=15000", "--dump-dom", url],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def docs_page(tmp_path_factory):
    if not shutil.which(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run installs it")
        pytest.skip("chromium is not installed: apt-get install chromium (.ci/run does)")
    env = {
        "STREAM_API_KEY": "docs-key",
        "STREAM_API_SECRET": "docs-secret-" + "d" * 32,
        "TOKEN_AUTH": "open",
        "WEBHOOK_DB": str(tmp_path_factory.mktemp("db") / "webhooks.sqlite3"),
        "WEB_CONCURRENCY": "1",
    }
    with live.service(env, quiet=True) as url:
        return rendered(f"{url}/docs")


def test_swagger_ui_renders_the_document(docs_page):
    assert '<h1 class="title">Stream Chat backend' in docs_page  # the document's title, as Swagger UI shows it
    assert "OAS 3.1" in docs_page
    assert "Unable to render" not in docs_page and "Failed to load" not in docs_page


@pytest.mark.parametrize("route", api.routes, ids=lambda route: f"{route.method} {route.path}")
def test_every_route_is_listed(docs_page, route):
    assert f'id="operations-{route.tag}-{route.name}"' in docs_page
    assert f'data-path="{route.path}"' in docs_page
