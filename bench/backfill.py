"""Backfill benchmark: throughput against the Stream stand-in at 25 ms a call, peak memory, and
what a `--resume` sends again after a run under faults was interrupted.

    .venv/bin/python bench/backfill.py --memory-lines 0 --live-memory-lines      # throughput (docs/performance.md)
    .venv/bin/python bench/backfill.py --concurrency --memory-lines 1000000 --live-memory-lines 20000 100000
    .venv/bin/python bench/backfill.py --messages 400 --concurrency 8 32 --memory-lines 0 --live-memory-lines
    .venv/bin/python bench/backfill.py --resume-under-faults                     # resends after --resume

It runs, in one go so that their ratios hold on a noisy machine:

1. `loop`: what a team writes by hand: one `POST /message` after another to the service as the
   Procfile starts it (its sync cache warm, so one Stream call each);
2. `backfill`: `flask --app app backfill FILE --concurrency N` for each N, on a file of
   `--messages` messages going round `--channels` channels (200: a channel's messages go one at
   a time, in order), with no rate limit (the tool itself is measured);
3. memory (alone with `--concurrency` and no value): the peak resident memory of
   `flask --app app backfill FILE --check` on a 1,000,000-line file, and of live runs over
   `--live-memory-lines` lines against a stand-in without latency, to show what the index and the in-flight window take.

Peak memory is each process's own (`ru_maxrss` from wait4), not the machine's.

With `--resume-under-faults` it runs only this, in one go: against a stand-in at 25 ms a call
where a tenth of the calls fail (a 500, a timeout, or a 429 with `Retry-After: 1`), the command
is interrupted once `--stop-at` of the messages have arrived (Ctrl-C, or killed), then run with
`--resume`; the stand-in counts the sends of each message (`GET /_stand_in/sends`), so the
table shows how many of the messages that had arrived were sent again, each one spending one
of Stream's sends a minute. The same is done with the checkpoint as the earlier version kept it
(its mark alone: the lines done beyond it dropped), for the ratio in one run.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import live  # noqa: E402

API_KEY, API_SECRET = "bench-key", "bench-secret-" + "b" * 32
USERS = [f"user-{number:04d}" for number in range(50)]


def channel_ids(count: int) -> list[str]:
    return [f"channel-{number:03d}" for number in range(count)]


CHANNELS = channel_ids(200)


def write_history(path: Path, messages: int, run: str, users=USERS, channels=CHANNELS) -> int:
    """Users, channels with five members each, and `messages` messages: the number of lines.
    The messages go round the channels, as a history exported in time order does: a channel's
    messages are sent one at a time, in order, so concurrency comes from many channels."""
    lines = 0
    with open(path, "w") as file:

        def record(record_type, item):
            nonlocal lines
            file.write(json.dumps({"type": record_type, "item": item}) + "\n")
            lines += 1

        for user_id in users:
            record("user", {"id": user_id, "name": user_id.title()})
        for number, channel_id in enumerate(channels):
            record("channel", {"id": channel_id, "type": "messaging", "created_by": users[number % len(users)]})
            for offset in range(5):
                record(
                    "member",
                    {
                        "channel_type": "messaging",
                        "channel_id": channel_id,
                        "user_id": users[(number + offset) % len(users)],
                    },
                )
        for number in range(messages):
            channel_number = number % len(channels)
            record(
                "message",
                {
                    "id": f"{run}-{number:07d}",
                    "channel_type": "messaging",
                    "channel_id": channels[channel_number],
                    "user": users[channel_number % len(users)],
                    "text": f"message {number} of the history",
                    "created_at": "2021-06-01T12:00:00Z",
                },
            )
    return lines


def run_measured(command: list[str], env: dict) -> tuple[float, float, int, str]:
    """Run a command: `(seconds, peak RSS in MiB, exit status, output)`."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - started, usage.ru_maxrss / 1024, process.returncode, output


def service_env(stand_in_url: str, directory: str) -> dict:
    return live.service_env(API_KEY, API_SECRET, stand_in_url, directory)


def flask(*args: str) -> list[str]:
    return [sys.executable, "-m", "flask", "--app", "app", *args]


def loop_over_post_message(stand_in_url: str, directory: str, messages: int) -> float:
    """Messages a second of a one-request-at-a-time loop over the service's POST /message."""
    with live.service(service_env(stand_in_url, directory), quiet=True) as url:
        session = requests.Session()
        channel = {
            "channel": {"creator_id": USERS[0], "id": "loop"},
            "members": {user_id: {"name": user_id.title()} for user_id in USERS[:5]},
        }

        def send(number: int) -> None:
            body = {
                **channel,
                "message": {"id": f"loop-{number:07d}", "text": f"message {number}"},
                "user": {"id": USERS[0], "name": USERS[0].title()},
            }
            response = session.post(f"{url}/message", json=body, timeout=10)
            response.raise_for_status()

        for number in range(10):  # the service's workers learn the users and the channel
            send(number)
        started = time.perf_counter()
        for number in range(10, 10 + messages):
            send(number)
        return messages / (time.perf_counter() - started)


def backfill_throughput(stand_in_url: str, directory: str, concurrency: int, messages: int, channels: int) -> dict:
    path = Path(directory) / f"history-{concurrency}.jsonl"
    lines = write_history(path, messages, run=f"c{concurrency}-{time.time_ns()}", channels=channel_ids(channels))
    seconds, peak, status, output = run_measured(
        flask("backfill", str(path), "--concurrency", str(concurrency), "--rate-share", "1"),
        service_env(stand_in_url, directory),
    )
    if status != 0:
        raise RuntimeError(f"backfill failed ({status}):\n{output}")
    return {
        "concurrency": concurrency,
        "lines": lines,
        "seconds": seconds,
        "records_per_second": lines / seconds,
        "messages_per_second": messages / seconds,
        "peak_mib": peak,
    }


def memory_runs(directory: str, check_lines: int, live_lines: list[int]) -> list[dict]:
    results = []
    many_users = [f"user-{number:05d}" for number in range(1000)]
    many_channels = [f"channel-{number:03d}" for number in range(100)]
    if check_lines:
        path = Path("/tmp") / "backfill-bench-1m.jsonl"
        lines = write_history(path, check_lines - 1000 - 100 * 6, "m", many_users, many_channels)
        seconds, peak, status, output = run_measured(
            flask("backfill", str(path), "--check"), service_env("http://127.0.0.1:9", directory)
        )
        results.append(
            {
                "run": "--check",
                "lines": lines,
                "megabytes": path.stat().st_size / 1e6,
                "seconds": seconds,
                "peak_mib": peak,
                "status": status,
            }
        )
        path.unlink()
    with live.stand_in(API_KEY, API_SECRET, latency_ms=0) as stand_in_url:
        for count in live_lines:
            path = Path(directory) / f"memory-{count}.jsonl"
            lines = write_history(path, count - 1000 - 100 * 6, f"mem{count}", many_users, many_channels)
            seconds, peak, status, output = run_measured(
                flask("backfill", str(path), "--concurrency", "32", "--rate-share", "1"),
                service_env(stand_in_url, directory),
            )
            results.append(
                {
                    "run": "live",
                    "lines": lines,
                    "megabytes": path.stat().st_size / 1e6,
                    "seconds": seconds,
                    "peak_mib": peak,
                    "status": status,
                }
            )
    return results


# A tenth of the calls fail, and the command's timeout is shorter than an injected timeout's.
FAULTS = ("--fail-rate", "0.1", "--fail-kinds", "500,timeout,429", "--timeout-ms", "500")
RESUME_TIMEOUT_SECONDS = "0.25"


def sends(stand_in_url: str) -> tuple[dict[str, int], set[str]]:
    """The stand-in's sends of each message id, and the messages it holds."""
    answer = requests.get(f"{stand_in_url}/_stand_in/sends", timeout=30).json()
    return answer["sends"], set(answer["held"])


def interrupted_then_resumed(
    directory: str, messages: int, stop_at: float, how: str, mark_alone: bool, seed: int
) -> dict:
    """One interruption and its `--resume`: how many of the messages held at the interruption
    were sent again."""
    path = Path(directory) / f"resume-{how}-{mark_alone}.jsonl"
    write_history(path, messages, run=f"r{seed}")
    with live.stand_in(API_KEY, API_SECRET, latency_ms=25, options=(*FAULTS, "--seed", str(seed))) as url:
        env = {**os.environ, **service_env(url, directory), "STREAM_CHAT_TIMEOUT": RESUME_TIMEOUT_SECONDS}
        command = flask("backfill", str(path), "--concurrency", "64", "--rate-share", "1")
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while len(sends(url)[1]) < stop_at * messages and process.poll() is None:
            time.sleep(0.2)
        process.send_signal(signal.SIGINT if how == "Ctrl-C" else signal.SIGKILL)
        process.wait(timeout=300)
        before, held = sends(url)
        if mark_alone:
            checkpoint = Path(f"{path}.checkpoint.json")
            state = json.loads(checkpoint.read_text())
            checkpoint.write_text(json.dumps({k: v for k, v in state.items() if k not in ("read_through", "open")}))
        seconds, _, status, output = run_measured(command + ["--resume"], {**env})
        after, held_after = sends(url)
    resent = [message_id for message_id in held if after.get(message_id, 0) > before.get(message_id, 0)]
    return {
        "interruption": how,
        "checkpoint": "its mark alone (as before)" if mark_alone else "its mark and the lines done beyond it",
        "held": len(held),
        "resent": len(resent),
        "resent_calls": sum(after.get(message_id, 0) - before.get(message_id, 0) for message_id in held),
        "status": status,
        "complete": len(held_after) == messages,
        "seconds": seconds,
    }


def resume_under_faults(directory: str, args) -> None:
    print(
        f"\n{args.messages:,} messages round 200 channels; interrupted at {args.stop_at:.0%} of them arrived, "
        "then --resume; a tenth of the calls failing (500, timeout, 429)"
    )
    print("| interrupted by | checkpoint | messages held | sent again | share | resumed run |")
    print("| --- | --- | --- | --- | --- | --- |")
    runs = [("Ctrl-C", False), ("Ctrl-C", True), ("kill -9", False), ("kill -9", True)]
    for seed, (how, mark_alone) in enumerate(runs, start=1):
        result = interrupted_then_resumed(directory, args.messages, args.stop_at, how, mark_alone, seed)
        outcome = "all arrived" if result["complete"] and result["status"] == 0 else f"exit {result['status']}"
        print(
            f"| {how} | {result['checkpoint']} | {result['held']:,} | {result['resent']:,} "
            f"({result['resent_calls']:,} sends) | {result['resent'] / max(result['held'], 1):.1%} | "
            f"{outcome}, {result['seconds']:.0f} s |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000, help="messages per backfill run")
    parser.add_argument("--channels", type=int, default=200, help="channels the messages go round")
    parser.add_argument("--loop-messages", type=int, default=200, help="messages of the POST /message loop")
    parser.add_argument("--concurrency", type=int, nargs="*", default=[1, 4, 8, 16, 32, 64])
    parser.add_argument("--latency-ms", type=float, default=25)
    parser.add_argument("--memory-lines", type=int, default=1_000_000, help="lines of the --check run (0: none)")
    parser.add_argument("--live-memory-lines", type=int, nargs="*", default=[20_000, 100_000])
    parser.add_argument("--resume-under-faults", action="store_true", help="only: what a --resume sends again")
    parser.add_argument("--stop-at", type=float, default=0.4, help="the share of messages arrived at the interruption")
    args = parser.parse_args()

    if args.resume_under_faults:
        with tempfile.TemporaryDirectory() as directory:
            return resume_under_faults(directory, args)
    with tempfile.TemporaryDirectory() as directory:
        with live.stand_in(API_KEY, API_SECRET, latency_ms=args.latency_ms) as stand_in_url:
            if not args.concurrency:
                return memory(directory, args)
            loop = loop_over_post_message(stand_in_url, directory, args.loop_messages)
            print(f"loop over POST /message, one at a time: {loop:.1f} messages/s", flush=True)
            print("| --concurrency | lines | seconds | records/s | messages/s | × the loop | peak RSS |")
            print("| --- | --- | --- | --- | --- | --- | --- |")
            for concurrency in args.concurrency:
                messages = args.messages if concurrency > 1 else min(args.messages, args.loop_messages)
                result = backfill_throughput(stand_in_url, directory, concurrency, messages, args.channels)
                print(
                    f"| {concurrency} | {result['lines']:,} | {result['seconds']:.1f} | "
                    f"{result['records_per_second']:,.0f} | {result['messages_per_second']:,.0f} | "
                    f"{result['messages_per_second'] / loop:.1f}× | {result['peak_mib']:.0f} MiB |",
                    flush=True,
                )
        memory(directory, args)


def memory(directory: str, args) -> None:
    if args.memory_lines or args.live_memory_lines:
        print("\n| run | lines | file | seconds | peak RSS |")
        print("| --- | --- | --- | --- | --- |")
        for result in memory_runs(directory, args.memory_lines, args.live_memory_lines):
            print(
                f"| {result['run']} | {result['lines']:,} | {result['megabytes']:.0f} MB | "
                f"{result['seconds']:.1f} | {result['peak_mib']:.0f} MiB |",
                flush=True,
            )


if __name__ == "__main__":
    main()
