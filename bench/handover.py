"""Hand-over benchmark: Stream's webhook against a primary system that is away, then slow, with
the service as the Procfile starts it (gunicorn) and Stream's retries simulated.

    .venv/bin/python bench/handover.py                              # the figures for docs/performance.md
    .venv/bin/python bench/handover.py --events 20 --rate 10 --down-seconds 4 --slow-seconds 3 --size-events 200

1. Outage: the primary answers 503 for `--down-seconds` while `--events` events arrive at
   `--rate` a second over 5 channels, delivered on a short schedule (`--schedule`). Stream is
   simulated as its docs describe: 6 s an attempt, 3 attempts on 408/429/5xx and 2 on network
   errors, all within 15 s, then it gives up. Reported: events Stream gave up on, events lost
   (answered 200 but never delivered), the seconds from the primary's return to the last
   delivery, and whether each channel's events reached the primary in the order Stream
   created them.
2. A slow primary: it answers after `--slow-delay` seconds while webhooks arrive at 10 a second
   for `--slow-seconds`, and a prober asks for a token 20 times a second; then the same with a
   fast primary. Reported: the webhook's p50 and p99, and /generate-token's p99 in both, and
   their ratio, from one run.
3. The store's size: `--size-events` events accepted and delivered, then the SQLite file's size
   (with its WAL) and Redis's memory, per million delivered events (kept a day for dedupe).
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tools")]
from stream_backend.handover.queue import Incoming  # noqa: E402
from stream_backend.handover.queue_redis import RedisQueue  # noqa: E402

import live  # noqa: E402
from primary_system import PrimarySystem  # noqa: E402

KEY, SECRET = "bench-key", "bench-secret-" + "b" * 32
CHANNELS = [f"messaging:channel-{n}" for n in range(5)]
# Stream's webhook retries (stream-facts.md): 6 s an attempt, 3 attempts on 408, 429 and 5xx,
# 2 on network errors.
STREAM_TIMEOUT, STREAM_ATTEMPTS, STREAM_ATTEMPTS_ON_NETWORK_ERRORS = 6, 3, 2


def signed(body: bytes) -> str:
    import hashlib
    import hmac

    return hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def event(n: int, cid: str) -> bytes:
    """A message.new event of about a kilobyte, as Stream sends one."""
    members = [{"user_id": f"user-{m}", "role": "member", "created_at": "2026-12-01T09:00:00Z"} for m in range(4)]
    user = {"id": "user-0", "name": "User Zero", "role": "user", "created_at": "2026-11-01T09:00:00Z"}
    return json.dumps(
        {
            "type": "message.new",
            "cid": cid,
            "channel_type": "messaging",
            "channel_id": cid.split(":")[1],
            "message": {
                "id": f"m-{n}",
                "text": f"message {n} " * 8,
                "html": f"<p>message {n}</p>",
                "type": "regular",
                "user": user,
                "attachments": [],
                "mentioned_users": [],
                "created_at": now(),
            },
            "user": user,
            "members": members,
            "watcher_count": 2,
            "created_at": now(),
        }
    ).encode()


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class StreamSimulator:
    """Stream's side of the webhook: each event sent until a 2xx, as Stream retries."""

    def __init__(self, url: str) -> None:
        self.url, self.session = url, requests.Session()
        self.latencies: list[float] = []
        self.acknowledged: list[tuple[str, str]] = []  # (webhook id, cid), in creation order
        self.gave_up = 0
        self.lock = threading.Lock()

    def send(self, n: int, cid: str) -> None:
        body, webhook_id = event(n, cid), f"bench-{n}"
        network_errors = statuses = 0
        while statuses < STREAM_ATTEMPTS and network_errors < STREAM_ATTEMPTS_ON_NETWORK_ERRORS:
            started = time.perf_counter()
            try:
                status = self.session.post(
                    f"{self.url}/stream-incoming-wh",
                    data=body,
                    timeout=STREAM_TIMEOUT,
                    headers={
                        "X-Signature": signed(body),
                        "X-Webhook-Id": webhook_id,
                        "X-Webhook-Attempt": str(statuses + network_errors + 1),
                    },
                ).status_code
            except requests.RequestException:
                network_errors += 1
                continue
            with self.lock:
                self.latencies.append(time.perf_counter() - started)
            if 200 <= status < 300:
                with self.lock:
                    self.acknowledged.append((webhook_id, cid))
                return
            statuses += 1
            time.sleep(1)
        with self.lock:
            self.gave_up += 1

    def send_at(self, rate: float, count: int, first: int = 0) -> None:
        with ThreadPoolExecutor(16) as pool:
            started = time.monotonic()
            for n in range(first, first + count):
                pool.submit(self.send, n, CHANNELS[n % len(CHANNELS)])
                time.sleep(max(0.0, started + (n - first + 1) / rate - time.monotonic()))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def service_env(tmp: Path, primary: PrimarySystem, schedule: str, **extra: str) -> dict[str, str]:
    return {
        "STREAM_API_KEY": KEY,
        "STREAM_API_SECRET": SECRET,
        "TOKEN_AUTH": "open",
        "LOG_LEVEL": "WARNING",
        "WEBHOOK_DB": str(tmp / "webhooks.sqlite3"),
        "PRIMARY_SYNC_URL": primary.url,
        "PRIMARY_SYNC_RETRY_SCHEDULE": schedule,
        **extra,
    }


def outage(args, tmp: Path) -> None:
    with (
        PrimarySystem(status=503) as primary,
        live.service(service_env(tmp, primary, args.schedule), quiet=True) as url,
    ):
        stream = StreamSimulator(url)
        back_at = time.monotonic() + args.down_seconds
        threading.Timer(args.down_seconds, lambda: setattr(primary, "status", 200)).start()
        stream.send_at(args.rate, args.events)
        received = primary.wait_for(len(stream.acknowledged), timeout=args.down_seconds + 120)
        last = time.monotonic()
    delivered = {entry["webhook_id"] for entry in received}
    lost = [webhook_id for webhook_id, _ in stream.acknowledged if webhook_id not in delivered]
    in_order = all(
        [n for n, _ in sorted_firsts(received, cid)] == sorted(n for n, _ in sorted_firsts(received, cid))
        for cid in CHANNELS
    )
    steps = [float(step) for step in args.schedule.split(",")]
    print(
        f"outage: {args.events} events at {args.rate:g}/s over {len(CHANNELS)} channels, the primary down "
        f"{args.down_seconds:g} s (503), schedule {args.schedule} s"
    )
    print(
        f"  Stream gave up on: {stream.gave_up}; acknowledged: {len(stream.acknowledged)}; lost: {len(lost)}; "
        f"in order per channel: {'yes' if in_order else 'NO'}"
    )
    print(
        f"  the last delivery {max(0.0, last - back_at):.1f} s after the primary came back "
        f"(the longest retry step: {max(steps):g} s)"
    )
    print(
        f"  webhook answers: p50 {percentile(stream.latencies, 0.5) * 1000:.1f} ms, "
        f"p99 {percentile(stream.latencies, 0.99) * 1000:.1f} ms"
    )


def sorted_firsts(received: list[dict], cid: str) -> list[tuple[int, str]]:
    """The events of `cid` by their first arrival at the primary: (their number, id)."""
    firsts = dict.fromkeys(entry["webhook_id"] for entry in received if entry["event"]["cid"] == cid)
    return [(int(webhook_id.split("-")[1]), webhook_id) for webhook_id in firsts]


def probe_tokens(url: str, stop: threading.Event, latencies: list[float]) -> None:
    session = requests.Session()
    while not stop.is_set():
        started = time.perf_counter()
        session.post(f"{url}/generate-token", json={"user_id": "tommaso"}, timeout=10)
        latencies.append(time.perf_counter() - started)
        time.sleep(max(0.0, 0.05 - (time.perf_counter() - started)))


def slow_primary(args, tmp: Path) -> None:
    results = {}
    with PrimarySystem() as primary, live.service(service_env(tmp, primary, "1,1,1"), quiet=True) as url:
        for name, delay in (("fast", 0.0), ("slow", args.slow_delay)):
            primary.delay = delay
            stream, tokens, stop = StreamSimulator(url), [], threading.Event()
            prober = threading.Thread(target=probe_tokens, args=(url, stop, tokens))
            prober.start()
            stream.send_at(10, int(10 * args.slow_seconds), first=100_000 * (delay > 0))
            stop.set()
            prober.join()
            results[name] = (stream.latencies, tokens)
    print(f"a slow primary: webhooks at 10/s for {args.slow_seconds:g} s, /generate-token probed 20 times a second")
    for name, (webhooks, tokens) in results.items():
        print(
            f"  primary {name:4}: webhook p50 {percentile(webhooks, 0.5) * 1000:.1f} ms, "
            f"p99 {percentile(webhooks, 0.99) * 1000:.1f} ms; /generate-token p99 "
            f"{percentile(tokens, 0.99) * 1000:.1f} ms"
        )
    ratio = percentile(results["slow"][1], 0.99) / percentile(results["fast"][1], 0.99)
    print(f"  /generate-token p99, slow primary / fast primary: {ratio:.2f}")


def store_size(args, tmp: Path) -> None:
    with PrimarySystem() as primary, live.service(service_env(tmp, primary, "1"), quiet=True) as url:
        stream = StreamSimulator(url)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: stream.send(n, CHANNELS[n % len(CHANNELS)]), range(args.size_events)))
        primary.wait_for(args.size_events, timeout=300)
        time.sleep(1)
    files = [tmp / "webhooks.sqlite3", tmp / "webhooks.sqlite3-wal"]
    size = sum(path.stat().st_size for path in files if path.exists())
    body = len(event(0, CHANNELS[0]))
    print(
        f"store: {args.size_events} delivered events of {body} bytes: SQLite {size / 2**20:.1f} MiB, "
        f"{size / args.size_events:.0f} bytes an event, {size / args.size_events * 1e6 / 2**30:.2f} GiB "
        "per million"
    )
    redis_size(args, body)


def redis_size(args, body: int) -> None:
    import redis

    with live.redis_server() as url:
        queue = RedisQueue(url, 10**9)
        client = redis.Redis.from_url(url)
        before = client.info("memory")["used_memory"]
        for n in range(args.size_events):
            data = event(n, CHANNELS[n % len(CHANNELS)])
            cid = CHANNELS[n % len(CHANNELS)]
            queue.accept(Incoming(data, f"{n:064d}", f"bench-{n}", cid, float(n), "message.new", f"m-{n}"))
        while leases := queue.lease(100, 60):
            for lease in leases:
                queue.delivered(lease)
        used = client.info("memory")["used_memory"] - before
    print(
        f"store: the same in Redis: {used / 2**20:.1f} MiB, {used / args.size_events:.0f} bytes an event, "
        f"{used / args.size_events * 1e6 / 2**30:.2f} GiB per million"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--rate", type=float, default=5)
    parser.add_argument("--down-seconds", type=float, default=60)
    parser.add_argument("--schedule", default="2,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5")
    parser.add_argument("--slow-delay", type=float, default=3.5)
    parser.add_argument("--slow-seconds", type=float, default=30)
    parser.add_argument("--size-events", type=int, default=20_000)
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; commit {commit()}; {datetime.now(UTC):%Y-%m-%d}")
    import tempfile

    for scenario in (outage, slow_primary, store_size):
        with tempfile.TemporaryDirectory(prefix="bench-handover-") as tmp:
            scenario(args, Path(tmp))


def commit() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=live.ROOT
    ).stdout.strip()


if __name__ == "__main__":
    main()
