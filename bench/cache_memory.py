"""How much room the shared sync state takes in its store, per user and channel remembered.

    .venv/bin/python bench/cache_memory.py [--entries 10000] [--redis-url redis://127.0.0.1:6379/0]

The state lives outside the workers (the SQLite file, or Redis), so a worker's memory does not
grow with it; every entry expires after SYNC_STATE_TTL_SECONDS. This fills it with the largest
entries the service accepts (255-character user ids, 64-character channel ids, 4 members per
channel) and prints the SQLite file's growth and, with --redis-url, Redis's `used_memory` growth.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sync_state import RedisKeyValues, SQLiteKeyValues, SyncState  # noqa: E402


def fill(state: SyncState, entries: int) -> None:
    for n in range(entries):
        user_id = f"{n:0>255}"
        state.remember_users({user_id: {"id": user_id, "name": "x" * 100, "image": "y" * 200}})
        state.remember_channel("messaging", f"{n:0>64}", [f"{n}-{m:0>250}" for m in range(4)])


def sqlite_bytes(entries: int) -> int:
    path = os.path.join(tempfile.mkdtemp(), "state.sqlite3")
    fill(SyncState(SQLiteKeyValues(path), ttl_seconds=3600), entries)
    return os.path.getsize(path) + (os.path.getsize(path + "-wal") if os.path.exists(path + "-wal") else 0)


def redis_bytes(url: str, entries: int) -> int:
    client = redis.Redis.from_url(url)
    before = client.info("memory")["used_memory"]
    fill(SyncState(RedisKeyValues(url), ttl_seconds=3600), entries)
    used = client.info("memory")["used_memory"] - before
    keys = list(client.scan_iter(match=RedisKeyValues.PREFIX + "*", count=1000))
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start : start + 1000])
    return used


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=10_000, help="users, and as many channels")
    parser.add_argument("--redis-url")
    args = parser.parse_args()
    stores = {"SQLite": lambda: sqlite_bytes(args.entries)}
    if args.redis_url:
        stores["Redis"] = lambda: redis_bytes(args.redis_url, args.entries)
    for name, measure in stores.items():
        used = measure()
        print(
            f"{name}: {args.entries:,} users and {args.entries:,} channels take {used / 2**20:.1f} MiB "
            f"({used / args.entries:,.0f} bytes per user and channel entry pair)"
        )


if __name__ == "__main__":
    main()
