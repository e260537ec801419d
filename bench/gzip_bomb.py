"""A gunicorn worker's peak memory when the webhook is sent a gzip bomb.

    .venv/bin/python bench/gzip_bomb.py [--inflated-mib 1024]

Starts the service as the Procfile does (one worker, so that its memory is the one measured),
against the Stream stand-in, and posts to /stream-incoming-wh: a few ordinary signed events,
then a gzip body of zeros (1 GiB inflated, about 1 MB sent), unsigned, then the same bomb
signed over its inflated bytes. After each step it reads the worker's peak resident memory
(VmHWM in /proc/<pid>/status, which only grows) and prints it with the answer's status.

With --sdk, it also measures, in a subprocess of its own, the SDK's `verify_and_parse_webhook`
on the same unsigned bomb: what the webhook cost before it inflated bodies itself (about
2 GiB: run it where that much memory is free).
"""

import argparse
import hashlib
import hmac
import json
import subprocess
import sys
import tempfile
import time
import zlib
from datetime import UTC, datetime
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import live  # noqa: E402

API_KEY, API_SECRET = "bench-key", "bench-secret-" + "b" * 32
MIB = 1024 * 1024


def gzip_of_zeros(size: int) -> tuple[bytes, str]:
    """A gzip stream of `size` zero bytes, and Stream's signature over those bytes, made a
    mebibyte at a time so that this process never holds them."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    signature = hmac.new(API_SECRET.encode(), digestmod=hashlib.sha256)
    chunk, parts = bytes(MIB), []
    for _ in range(size // MIB):
        parts.append(compressor.compress(chunk))
        signature.update(chunk)
    return b"".join(parts) + compressor.flush(), signature.hexdigest()


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise LookupError("VmHWM")


def worker_pid(master_pid: int) -> int:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    if len(children) != 1:
        raise RuntimeError(f"expected one worker, found {children}")
    return int(children[0])


def signed_event() -> tuple[bytes, str]:
    body = json.dumps(
        {
            "type": "message.new",
            "cid": "messaging:bench",
            "message": {"id": f"m-{time.time_ns()}"},
            "created_at": datetime.now(UTC).isoformat(),
        }
    ).encode()
    return body, hmac.new(API_SECRET.encode(), body, hashlib.sha256).hexdigest()


SDK_PEAK = """
import resource, sys
from stream_chat.base.exceptions import InvalidWebhookError
from stream_chat.webhook import verify_and_parse_webhook
body = sys.stdin.buffer.read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    verify_and_parse_webhook(body, "0" * 64, "secret")
except InvalidWebhookError as error:
    outcome = str(error)
print(before / 1024, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, outcome)
"""


def sdk_peak(bomb: bytes) -> None:
    result = subprocess.run([sys.executable, "-c", SDK_PEAK], input=bomb, capture_output=True, check=True)
    before, after, outcome = result.stdout.decode().split(maxsplit=2)
    print(
        f"the SDK's verify_and_parse_webhook, unsigned bomb: peak RSS {float(before):.1f} -> "
        f"{float(after):.1f} MiB, then {outcome.strip()!r}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inflated-mib", type=int, default=1024)
    parser.add_argument("--sdk", action="store_true", help="also measure the SDK's own inflation")
    args = parser.parse_args()
    bomb, bomb_signature = gzip_of_zeros(args.inflated_mib * MIB)
    print(f"bomb: {len(bomb):,} bytes of gzip, {args.inflated_mib * MIB:,} bytes inflated")

    with live.stand_in(API_KEY, API_SECRET) as stand_in:
        port = live.free_port()
        env = {
            "STREAM_API_KEY": API_KEY,
            "STREAM_API_SECRET": API_SECRET,
            "STREAM_CHAT_URL": stand_in,
            "TOKEN_AUTH": "open",
            "WEB_CONCURRENCY": "1",
            "PORT": str(port),
            "LOG_LEVEL": "WARNING",
            "WEBHOOK_DB": str(Path(tempfile.mkdtemp(), "webhooks.sqlite3")),
        }
        url = f"http://127.0.0.1:{port}"
        with live.running(f"exec {live.procfile_command()}", f"{url}/healthz", env=env, shell=True) as master:
            worker = worker_pid(master.pid)
            webhook = f"{url}/stream-incoming-wh"
            for _ in range(20):
                body, signature = signed_event()
                requests.post(webhook, data=body, headers={"X-Signature": signature}, timeout=10)
            print(f"{'step':<34} {'status':>6} {'worker peak RSS':>16}")
            baseline = peak_rss_mib(worker)
            print(f"{'after 20 ordinary events':<34} {200:>6} {baseline:>12.1f} MiB")
            for label, signature in [("gzip bomb, unsigned", "0" * 64), ("gzip bomb, signed", bomb_signature)]:
                answer = requests.post(
                    webhook,
                    data=bomb,
                    timeout=60,
                    headers={"X-Signature": signature, "Content-Encoding": "gzip", "Content-Type": "application/json"},
                )
                print(f"{label:<34} {answer.status_code:>6} {peak_rss_mib(worker):>12.1f} MiB")
            print(f"growth of the worker's peak: {peak_rss_mib(worker) - baseline:.1f} MiB")
    if args.sdk:
        sdk_peak(bomb)


if __name__ == "__main__":
    main()
