"""Load benchmark: the service as the Procfile starts it, against the Stream stand-in with a
fixed latency per call, driven by wrk (or a Python load generator without it).

    .venv/bin/python bench/run.py                 # the full table for docs/performance.md
    .venv/bin/python bench/run.py --seconds 2     # a short smoke run

`/message+versions` is `/message` with every object versioned (docs/consistency.md,
"Versions"): its rows beside `/message`'s are what versions cost on the warm path:

    .venv/bin/python bench/run.py --routes /message /message+versions --setups procfile --no-conversations

For each route and connection count it prints requests/s, p50 and p99 latency, the CPU time
of the service's processes per request (user and system, from /proc: the figure that does not
depend on the load generator sharing the cores), errors, and the Stream calls made per request
(counted by the stand-in). It runs two setups in the same run, so
that their ratio holds on a noisy machine:

- `procfile`: the service exactly as the Procfile starts it;
- `gthread` (only with `--setups ... gthread`): the service on its earlier gthread workers
  (4 x 8 threads), for comparison;
- `reference`: the reference's setup, for comparison: 4 sync gunicorn workers, no memory of
  what Stream already has (SYNC_STATE_TTL_SECONDS=0), so each sync makes the reference's 3 calls,
  and no log line per request, as the reference logged none.

Then the conversation workload, which shows what the shared sync state saves across workers:
100 channels with ids, 4 members each, 12 messages per channel from random members, all 1,200
in random order, 16 at a time, and the Stream calls per `/message` each setup made. A channel's
first message makes 3 calls (users, channel, message) and the others 1: the floor is 1.17.

Then it reports each worker's resident memory after the load.
"""

import argparse
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import live  # noqa: E402

API_KEY, API_SECRET = "bench-key", "bench-secret-" + "b" * 32
MEMBERS = {"tommaso": {"name": "Tommaso", "image": ""}, "thierry": {"name": "Thierry", "image": ""}}
CHANNEL = {"channel": {"creator_id": "tommaso", "custom_data": {"title": "Benchmark"}}, "members": MEMBERS}
BODIES = {
    "/generate-token": {"user_id": "tommaso"},
    "/channel": CHANNEL,
    # MESSAGE_ID is replaced per request: every message is a new one, as in a live chat.
    "/message": {
        **CHANNEL,
        "message": {"id": "MESSAGE_ID", "text": "hello there!"},
        "user": {"id": "tommaso", "name": "Tommaso", "image": ""},
    },
    # The same from a primary that versions every object (docs/consistency.md, "Versions"): the
    # channel and its users at the version the warm-up applied, each message new.
    "/message+versions": {
        "channel": {
            "id": "bench-versions",
            "creator_id": "tommaso",
            "custom_data": {"title": "Benchmark"},
            "version": 7,
        },
        "members": {user_id: {**user, "version": 3} for user_id, user in MEMBERS.items()},
        "message": {"id": "MESSAGE_ID", "text": "hello there!", "version": 1},
        "user": {"id": "tommaso", "name": "Tommaso", "image": "", "version": 3},
    },
}


def route_path(route):
    """The path a benchmark route posts to: `/message+versions` is `/message` with versions."""
    return route.split("+")[0]


SETUPS = {
    "procfile": (None, {}),
    "gthread": (live.GTHREAD_COMMAND, {}),
    "reference": (live.REFERENCE_COMMAND, {"SYNC_STATE_TTL_SECONDS": "0", "LOG_LEVEL": "WARNING"}),
}

WRK_SCRIPT = """
local template = [==[BODY]==]
local counter, started = 0, 0
-- setup runs in the main state: each thread gets its own number as the global `tid`.
function setup(thread) started = started + 1; thread:set("tid", started) end
function request()
  counter = counter + 1
  local body = string.gsub(template, "MESSAGE_ID", "RUN-" .. tid .. "-" .. counter)
  return wrk.format("POST", "PATH", {["Content-Type"] = "application/json"}, body)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('RESULT {"requests": %d, "seconds": %f, "p50_ms": %f, "p99_ms": %f, "errors": %d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def drive(url, path, connections, seconds, run_id):
    """Load `url + path` with `connections` concurrent connections for `seconds`."""
    body = json.dumps(BODIES[path])
    path = route_path(path)
    if shutil.which("wrk"):
        script = WRK_SCRIPT.replace("BODY", body).replace("PATH", path).replace("RUN", run_id)
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as file:
            file.write(script)
        threads = min(connections, 2)
        out = subprocess.run(
            [
                "wrk",
                "-t",
                str(threads),
                "-c",
                str(connections),
                "-d",
                f"{seconds}s",
                "--timeout",
                "10s",
                "-s",
                file.name,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        os.unlink(file.name)
        return json.loads(out.split("RESULT ", 1)[1])
    return drive_with_python(url + path, body, connections, seconds, run_id)


def drive_with_python(url, body, connections, seconds, run_id):
    latencies, errors, lock = [], [0], threading.Lock()
    deadline = time.monotonic() + seconds

    def connection(number):
        session, count = requests.Session(), 0
        while time.monotonic() < deadline:
            count += 1
            data = body.replace("MESSAGE_ID", f"{run_id}-{number}-{count}")
            start = time.perf_counter()
            ok = session.post(url, data=data, headers={"Content-Type": "application/json"}, timeout=10).ok
            with lock:
                latencies.append(time.perf_counter() - start)
                errors[0] += not ok

    started = time.monotonic()
    workers = [threading.Thread(target=connection, args=(n,)) for n in range(connections)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "requests": len(latencies),
        "seconds": time.monotonic() - started,
        "p50_ms": cuts[49] * 1000,
        "p99_ms": cuts[98] * 1000,
        "errors": errors[0],
    }


def stream_calls(stand_in):
    return requests.get(f"{stand_in}/_stand_in/calls", timeout=5).json()["calls"]


def service_processes(service_url):
    """The gunicorn master serving `service_url` and its workers: `(master pids, worker pids)`."""
    port = service_url.rsplit(":", 1)[1]
    found = subprocess.run(
        ["pgrep", "-f", f"gunicorn .*--bind 0.0.0.0:{port}"], capture_output=True, text=True
    ).stdout.split()
    # The workers have the master's command line too: a master is one whose parent is not found.
    masters = [pid for pid in found if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1] not in found]
    workers = [
        worker
        for master in masters
        for worker in subprocess.run(["pgrep", "-P", master], capture_output=True, text=True).stdout.split()
    ]
    return masters, workers


def worker_memory(service_url):
    """Resident memory (MiB) of each gunicorn worker serving `service_url`."""
    sizes = []
    for worker in service_processes(service_url)[1]:
        status = Path(f"/proc/{worker}/status").read_text()
        sizes.append(int(status.split("VmRSS:")[1].split()[0]) / 1024)
    return sizes


def service_cpu_seconds(service_url):
    """CPU seconds (user and system) the service's processes have used so far."""
    masters, workers = service_processes(service_url)
    ticks = 0
    for pid in masters + workers:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def start(name, stand_in, stack):
    command, extra_env = SETUPS[name]
    env = {
        "STREAM_API_KEY": API_KEY,
        "STREAM_API_SECRET": API_SECRET,
        "STREAM_CHAT_URL": stand_in,
        "TOKEN_AUTH": "open",
        "WEBHOOK_DB": os.path.join(tempfile.mkdtemp(), "webhooks.sqlite3"),
        **extra_env,
    }
    return stack.enter_context(live.service(env, command=command, quiet=True))


def measure(name, url, stand_in, path, connections, seconds):
    before, cpu_before = stream_calls(stand_in), service_cpu_seconds(url)
    result = drive(url, path, connections, seconds, f"{name}-{connections}-{time.time_ns()}")
    cpu = service_cpu_seconds(url) - cpu_before
    time.sleep(0.5)  # the last requests finish before their Stream calls are counted
    return {
        "setup": name,
        "route": path,
        "connections": connections,
        "rps": result["requests"] / result["seconds"],
        "p50": result["p50_ms"],
        "p99": result["p99_ms"],
        "errors": result["errors"],
        "calls": (stream_calls(stand_in) - before) / max(result["requests"], 1),
        "cpu_ms": cpu * 1000 / max(result["requests"], 1),
    }


def conversation_bodies(run_id, channels=100, members=4, messages=12, seed=1):
    """The `/message` bodies of the conversation workload, in random order."""
    rng = random.Random(seed)
    bodies = []
    for channel in range(channels):
        users = {f"{run_id}-c{channel}-u{n}": {"name": f"User {n}", "image": ""} for n in range(members)}
        first = next(iter(users))
        for number in range(messages):
            sender = rng.choice(list(users))
            bodies.append(
                {
                    "channel": {
                        "id": f"{run_id}-c{channel}",
                        "creator_id": first,
                        "custom_data": {"title": f"Channel {channel}"},
                    },
                    "members": users,
                    "user": {"id": sender, **users[sender]},
                    "message": {"id": f"{run_id}-c{channel}-m{number}", "text": "hello there!"},
                }
            )
    rng.shuffle(bodies)
    return bodies


def measure_conversations(name, url, stand_in, channels, concurrency=16):
    """The conversation workload against one setup: Stream calls per `/message`."""
    bodies = conversation_bodies(f"{name}-{time.time_ns()}", channels=channels)
    before, started = stream_calls(stand_in), time.perf_counter()

    def send(body):
        with requests.post(f"{url}/message", json=body, timeout=30) as answer:
            return answer.status_code == 200

    with ThreadPoolExecutor(concurrency) as pool:
        errors = sum(not ok for ok in pool.map(send, bodies))
    seconds = time.perf_counter() - started
    time.sleep(0.5)
    calls = (stream_calls(stand_in) - before) / len(bodies)
    print(
        f"| {name} | {len(bodies)} | {concurrency} | {len(bodies) / seconds:,.0f} | {errors} | {calls:.3f} |",
        flush=True,
    )
    return errors


def median_row(rows):
    """The round with the median requests/s, errors summed over all rounds."""
    middle = sorted(rows, key=lambda row: row["rps"])[len(rows) // 2]
    return {**middle, "errors": sum(row["errors"] for row in rows)}


def print_row(row):
    print(
        f"| {row['setup']} | `{row['route']}` | {row['connections']} | {row['rps']:,.0f} | "
        f"{row['p50']:.1f} ms | {row['p99']:.1f} ms | {row['cpu_ms']:.2f} ms | {row['errors']} | {row['calls']:.2f} |",
        flush=True,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-ms", type=float, default=25, help="the stand-in's delay per Stream call")
    parser.add_argument("--seconds", type=int, default=5, help="duration of each measurement")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per setup; the median is shown")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--routes", nargs="+", default=list(BODIES), choices=list(BODIES))
    parser.add_argument("--setups", nargs="+", default=["procfile", "reference"], choices=list(SETUPS))
    parser.add_argument("--no-conversations", action="store_true", help="skip the conversation workload")
    parser.add_argument("--channels", type=int, default=100, help="channels of the conversation workload")
    args = parser.parse_args()

    print(
        f"Stream stand-in at {args.latency_ms:g} ms a call; median of {args.rounds} rounds of {args.seconds} s; "
        f"load from {'wrk' if shutil.which('wrk') else 'a Python load generator'}; {os.cpu_count()} cores\n"
    )
    print("| setup | route | connections | requests/s | p50 | p99 | CPU per request | errors | Stream calls/request |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    rows = []
    with live.stand_in(API_KEY, API_SECRET, latency_ms=args.latency_ms) as stand_in, ExitStack() as stack:
        services = {name: start(name, stand_in, stack) for name in args.setups}
        for path in args.routes:
            for name, url in services.items():
                # Warm-up: the users and the channel exist, as after the first message of a chat.
                drive(url, path, 32, 1, f"warm-{name}")
            time.sleep(0.5)
            for connections in args.connections:
                # The setups take turns, round after round, so that they share the machine's
                # noise; each row is a setup's median round.
                rounds = {name: [] for name in services}
                for _ in range(args.rounds):
                    for name, url in services.items():
                        rounds[name].append(measure(name, url, stand_in, path, connections, args.seconds))
                for name in services:
                    rows.append(median_row(rounds[name]))
                    print_row(rows[-1])
        if not args.no_conversations:
            print(f"\nConversations: {args.channels} channels x 12 messages from 4 members, random order\n")
            print("| setup | messages | at a time | messages/s | errors | Stream calls per /message |")
            print("| --- | --- | --- | --- | --- | --- |")
            for name, url in services.items():
                rows.append({"errors": measure_conversations(name, url, stand_in, args.channels)})
        print()
        for name, url in services.items():
            print(
                f"Resident memory per worker after the load, {name}: "
                + ", ".join(f"{size:.0f} MiB" for size in worker_memory(url)),
                flush=True,
            )
    sys.exit(1 if any(row["errors"] for row in rows) else 0)


if __name__ == "__main__":
    main()
