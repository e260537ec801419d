"""How much memory a worker's sync cache takes when full (SYNC_CACHE_SIZE entries per map).

    .venv/bin/python bench/cache_memory.py [--size 10000]

Fills both maps with the largest entries the service accepts (255-character user ids, 64-
character channel ids) and prints what tracemalloc counts for them.
"""

import argparse
import sys
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sync_cache import SyncCache  # noqa: E402


def full_cache_bytes(size: int) -> int:
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    cache = SyncCache(size)
    for n in range(size + 100):  # past the bound: the oldest entries go
        user_id = f"{n:0>255}"
        cache.remember_users({user_id: {"id": user_id, "name": "x" * 100, "image": "y" * 200}})
        sync = SimpleNamespace(type="messaging", id=None, creator_id=user_id, custom_data={"title": "t"},
                               members={user_id: {}})
        cache.remember_channel(sync, f"!members-{n:0>55}")
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(cache.users) == len(cache.channels) == size
    return used


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=10_000)
    size = parser.parse_args().size
    used = full_cache_bytes(size)
    print(f"SYNC_CACHE_SIZE={size}: a full cache takes {used / 2**20:.1f} MiB per worker "
          f"({used / size:.0f} bytes per user and channel entry pair)")


if __name__ == "__main__":
    main()
