"""Rate-limited benchmark: how fast every sync route answers when Stream answers every call 429
with `Retry-After: 20`, the service as the Procfile starts it.

    .venv/bin/python bench/rate_limited.py

The stand-in answers each call 429, code 9, `Retry-After: 20` (`--fail-rate 1 --fail-kinds 429
--retry-after-s 20`). Each route gets `--requests` requests, `--connections` at a time; the
table shows their status, the `Retry-After` they carried, their median and slowest time, and
the calls Stream received per request: 1 means none was sent again. Before, the SDK's session
slept through the `Retry-After` and sent a GET, PUT or DELETE again: 20 s a request.
"""

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import live  # noqa: E402

API_KEY, API_SECRET = "bench-key", "bench-secret-" + "b" * 32
MEMBERS = {"tommaso": {"name": "Tommaso"}, "thierry": {"name": "Thierry"}}
CHANNEL = {"channel": {"creator_id": "tommaso"}, "members": MEMBERS}
ROUTES = [
    ("POST", "/channel", CHANNEL),
    ("POST", "/message", {**CHANNEL, "message": {"id": "m-1", "text": "hi"}, "user": {"id": "tommaso"}}),
    ("PUT", "/message/m-1", {"message": {"text": "x"}, "user": {"id": "tommaso"}}),
    ("DELETE", "/message/m-1", None),
    ("PUT", "/channel/messaging/general", {"custom_data": {"title": "x"}}),
    ("DELETE", "/channel/messaging/general", None),
    ("DELETE", "/user/tommaso", None),
]


def calls(stand_in_url: str) -> int:
    return requests.get(f"{stand_in_url}/_stand_in/calls", timeout=5).json()["calls"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=40, help="requests per route")
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    faults = ("--fail-rate", "1", "--fail-kinds", "429", "--retry-after-s", "20")
    with (
        tempfile.TemporaryDirectory() as directory,
        live.stand_in(API_KEY, API_SECRET, options=faults) as stand_in_url,
        live.service(live.service_env(API_KEY, API_SECRET, stand_in_url, directory), quiet=True) as url,
    ):
        session = requests.Session()
        print("| route | answers | Retry-After | p50 | slowest | Stream calls/request |")
        print("| --- | --- | --- | --- | --- | --- |")
        for method, path, body in ROUTES:
            before = calls(stand_in_url)

            def one(_, method=method, path=path, body=body):
                started = time.perf_counter()
                response = session.request(method, f"{url}{path}", json=body, timeout=60)
                return response.status_code, response.headers.get("Retry-After"), time.perf_counter() - started

            with ThreadPoolExecutor(args.connections) as pool:
                answers = list(pool.map(one, range(args.requests)))
            statuses = Counter(status for status, _, _ in answers)
            retry_afters = Counter(retry_after for _, retry_after, _ in answers)
            seconds = [elapsed for _, _, elapsed in answers]
            print(
                f"| `{method} {path}` | {', '.join(f'{n}× {s}' for s, n in statuses.items())} | "
                f"{', '.join(f'{r}' for r in retry_afters)} | {statistics.median(seconds) * 1000:.1f} ms | "
                f"{max(seconds) * 1000:.1f} ms | {(calls(stand_in_url) - before) / args.requests:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
