"""Slow-client benchmark: while `--slow` connections send their request a byte a second (the
headers, or a body), a normal client asks for a token `--rate` times a second, and the
probes' latency is reported: the service as the Procfile starts it, and, in the same run, the
reference-like setup (4 sync workers) and the service on gthread workers (its earlier Procfile).

    .venv/bin/python bench/slow_clients.py                       # 1,000 slow connections, 30 s
    .venv/bin/python bench/slow_clients.py --slow 50 --seconds 5 # a smoke run

A slow connection opens, then sends `POST /generate-token HTTP/1.1\\r\\nHost: ...` one byte
a second (`--kind headers`), or complete headers announcing a 1 KB body and then that body a
byte a second (`--kind body`); the server may close it (a read timeout), and it opens again.
"""

import argparse
import asyncio
import multiprocessing
import socket
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tools")]
import live  # noqa: E402

KEY, SECRET = "bench-key", "bench-secret-" + "b" * 32
SETUPS = {
    "procfile": None,
    "gthread": live.GTHREAD_COMMAND,
    "reference": live.REFERENCE_COMMAND,
}
BODY = b'{"user_id": "tommaso"' + b" " * 1000 + b"}"


async def slow_connection(port: int, kind: str, stop: asyncio.Event, opened: list[int]) -> None:
    head = f"POST /generate-token HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(1)
            continue
        opened[0] += 1
        try:
            if kind == "body":
                writer.write(f"{head}Content-Length: {len(BODY)}\r\n\r\n".encode())
                trickle = BODY
            else:
                trickle = head.encode()
            for byte in trickle:
                if stop.is_set():
                    break
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(1)
        except OSError:
            pass  # closed by the server: open another
        finally:
            writer.close()


def probe(port: int, seconds: float, rate: float) -> list[float]:
    """A normal client, in a process of its own (the slow connections have theirs, so that
    neither's work delays the other's clock): a token request `rate` times a second, each on a
    fresh connection."""
    latencies = []
    request = (
        f"POST /generate-token HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: 22\r\nConnection: close\r\n\r\n" + '{"user_id": "tommaso"}'
    ).encode()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
                connection.sendall(request)
                while connection.recv(65536):
                    pass
            latencies.append(time.perf_counter() - started)
        except OSError:
            latencies.append(10.0)
        time.sleep(max(0.0, 1 / rate - (time.perf_counter() - started)))
    return latencies


def slow_clients(port: int, count: int, kind: str, seconds: float, opened) -> None:
    """The slow connections, for `seconds`, in this (child) process: `opened` counts them."""

    async def run() -> None:
        stop, counted = asyncio.Event(), [0]
        tasks = [asyncio.create_task(slow_connection(port, kind, stop, counted)) for _ in range(count)]
        await asyncio.sleep(seconds)
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        opened.value = counted[0]

    asyncio.run(run())


def measure(port: int, args) -> tuple[list[float], int]:
    opened = multiprocessing.Value("i", 0)
    settle = min(5.0, args.seconds / 4)  # the slow connections in place first
    slow = multiprocessing.Process(
        target=slow_clients, args=(port, args.slow, args.kind, settle + args.seconds, opened)
    )
    slow.start()
    time.sleep(settle)
    latencies = probe(port, args.seconds, args.rate)
    slow.join()
    return latencies, opened.value


def percentile(values: list[float], share: float) -> float:
    return sorted(values)[min(len(values) - 1, int(share * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slow", type=int, default=1000)
    parser.add_argument("--kind", choices=["headers", "body"], default="headers")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument("--setups", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    args = parser.parse_args()
    print(
        f"{args.slow} connections sending their {args.kind} a byte a second; /generate-token probed "
        f"{args.rate:g} times a second for {args.seconds:g} s"
    )
    print("| setup | probes | p50 | p99 | max | slow connections opened |")
    print("| --- | --- | --- | --- | --- | --- |")
    env = {"STREAM_API_KEY": KEY, "STREAM_API_SECRET": SECRET, "TOKEN_AUTH": "open", "LOG_LEVEL": "WARNING"}
    for name in args.setups:
        with live.service(
            {**env, "WEBHOOK_DB": f"/tmp/bench-slow-{name}.sqlite3"}, command=SETUPS[name], quiet=True
        ) as url:
            latencies, opened = measure(int(url.rsplit(":", 1)[1]), args)
        print(
            f"| {name} | {len(latencies)} | {statistics.median(latencies) * 1000:.1f} ms | "
            f"{percentile(latencies, 0.99) * 1000:.1f} ms | {max(latencies) * 1000:.1f} ms | {opened} |"
        )


if __name__ == "__main__":
    main()
