"""newman (pinned in package.json) for the tests that run Postman collections: where it is,
and a skip (or, in CI, a failure) when `npm ci` has not installed it."""

import os
import shutil

import pytest

import live

NEWMAN = live.ROOT / "node_modules" / ".bin" / "newman"


def require_newman() -> None:
    if not NEWMAN.exists() or shutil.which("node") is None:
        if os.environ.get("CI"):
            pytest.fail("newman is not installed: run `npm ci`")
        pytest.skip("newman is not installed: run `npm ci` (make test does)")
