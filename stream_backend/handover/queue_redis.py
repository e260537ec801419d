"""The delivery queue in Redis, for several hosts: the guarantees of queue.py, each change one
Lua script (atomic in Redis). Keys, under `stream-webhook:`:

    e:<id>            hash: the event (body, lane, created_at, state, attempts, ...)
    digest:<sha256>   the id of the event with that body (duplicates)
    lane:<lane>       sorted set of the lane's pending events, by created_at then arrival
    lanes             sorted set of the lanes with pending events, by the time each is next
                      due: a leased lane's score is its lease's end, so it is not due again
                      until its holder answers or the lease expires
    leases            hash: lane -> the token of its lease
    pending, seq      counters: pending events, arrivals
    by_arrival        sorted set of the pending events by arrival (the oldest's age)
    delivered, failed sorted sets of finished events by the time they finished (pruning, replay)
    store-id          this store's id: a process that saw it and finds it gone knows Redis
                      lost its data (restarted without persistence)

An acknowledged write is as durable as Redis makes it: with `appendonly yes` and `appendfsync
everysec` (Redis's default with AOF), a crash of Redis itself can lose the last second of
accepted events; `appendfsync always` loses none, at a cost per write (docs/webhooks.md).
"""

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from stream_backend.errors import QueueFull
from stream_backend.handover.queue import Event, Incoming, Lease, State, Status
from stream_backend.store import redis as redis_store
from stream_backend.store import unavailable_on

log = logging.getLogger("stream_backend.handover")

# A queue command must answer well inside the 6 s Stream waits for the webhook's answer.
REDIS_TIMEOUT_SECONDS = 2

_MEMBER = "string.format('%020d', tonumber(seq)) .. ':' .. id"

_ACCEPT = """
local p = ARGV[1]
local digest, webhook_id, lane, created_at, kind, message_id, body, now, max_pending =
  ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], tonumber(ARGV[10])
local seen = redis.call('GET', p .. 'digest:' .. digest)
if seen then return {0, seen} end
local pending = tonumber(redis.call('GET', p .. 'pending') or '0')
if pending >= max_pending then return {-1, tostring(pending)} end
local id = webhook_id
if webhook_id == '' then id = 'sha256-' .. digest
elseif redis.call('EXISTS', p .. 'e:' .. webhook_id) == 1 then id = webhook_id .. '.sha256-' .. digest end
local seq = redis.call('INCR', p .. 'seq')
redis.call('HSET', p .. 'e:' .. id, 'lane', lane, 'created_at', created_at, 'type', kind, 'message_id', message_id,
  'body', body, 'state', 'pending', 'attempts', 0, 'last_error', '', 'accepted_at', now, 'finished_at', '',
  'digest', digest, 'seq', seq)
redis.call('SET', p .. 'digest:' .. digest, id)
redis.call('ZADD', p .. 'lane:' .. lane, created_at, MEMBER)
redis.call('ZADD', p .. 'lanes', 'NX', now, lane)
redis.call('INCR', p .. 'pending')
redis.call('ZADD', p .. 'by_arrival', seq, id)
return {1, id}
""".replace("MEMBER", _MEMBER)

_LEASE = """
local p, now, until_, limit, token = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local lanes = redis.call('ZRANGEBYSCORE', p .. 'lanes', '-inf', now, 'LIMIT', 0, limit)
local leased = {}
for index, lane in ipairs(lanes) do
  local head = redis.call('ZRANGE', p .. 'lane:' .. lane, 0, 0)[1]
  if head then
    local lease = token .. '-' .. index
    redis.call('HSET', p .. 'leases', lane, lease)
    redis.call('ZADD', p .. 'lanes', until_, lane)
    table.insert(leased, string.sub(head, 22))
    table.insert(leased, lease)
  else
    redis.call('ZREM', p .. 'lanes', lane)
  end
end
return leased
"""

# Give a lane's lease back if it is still this one's (ARGV: p, lane, token): the prologue of
# every outcome.
_RELEASE = """
local p, lane, token = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HGET', p .. 'leases', lane) ~= token then return 0 end
redis.call('HDEL', p .. 'leases', lane)
"""

_FINISH = (
    _RELEASE
    + """
local id, state, error, now = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local e = p .. 'e:' .. id
local seq = redis.call('HGET', e, 'seq')
redis.call('ZREM', p .. 'lane:' .. lane, MEMBER)
redis.call('HSET', e, 'state', state, 'last_error', error, 'finished_at', now)
redis.call('HINCRBY', e, 'attempts', 1)
redis.call('DECR', p .. 'pending')
redis.call('ZREM', p .. 'by_arrival', id)
redis.call('ZADD', p .. state, now, id)
if redis.call('ZCARD', p .. 'lane:' .. lane) == 0 then redis.call('ZREM', p .. 'lanes', lane)
else redis.call('ZADD', p .. 'lanes', now, lane) end
return 1
""".replace("MEMBER", _MEMBER)
)

_EXTEND = """
local p, lane, token, until_ = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('HGET', p .. 'leases', lane) ~= token then return 0 end
redis.call('ZADD', p .. 'lanes', until_, lane)
return 1
"""

_RETRY_LATER = (
    _RELEASE
    + """
local id, due, error = ARGV[4], ARGV[5], ARGV[6]
redis.call('HINCRBY', p .. 'e:' .. id, 'attempts', 1)
redis.call('HSET', p .. 'e:' .. id, 'last_error', error)
redis.call('ZADD', p .. 'lanes', due, lane)
return 1
"""
)

# Finished events (ids in KEYS-free ARGV[3..]) pending again, from their first attempt.
_REQUEUE = """
local p, now = ARGV[1], ARGV[2]
local count = 0
for index = 3, #ARGV do
  local id = ARGV[index]
  local e = p .. 'e:' .. id
  local state = redis.call('HGET', e, 'state')
  if state == 'delivered' or state == 'failed' then
    local lane, seq, created_at = unpack(redis.call('HMGET', e, 'lane', 'seq', 'created_at'))
    redis.call('ZREM', p .. state, id)
    redis.call('HSET', e, 'state', 'pending', 'attempts', 0, 'finished_at', '')
    redis.call('ZADD', p .. 'lane:' .. lane, created_at, MEMBER)
    redis.call('ZADD', p .. 'lanes', 'NX', now, lane)
    redis.call('INCR', p .. 'pending')
    redis.call('ZADD', p .. 'by_arrival', seq, id)
    count = count + 1
  end
end
return count
""".replace("MEMBER", _MEMBER)

_PRUNE = """
local p, state, before, batch = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local ids = redis.call('ZRANGEBYSCORE', p .. state, '-inf', '(' .. before, 'LIMIT', 0, batch)
for _, id in ipairs(ids) do
  local digest = redis.call('HGET', p .. 'e:' .. id, 'digest')
  if digest then redis.call('DEL', p .. 'digest:' .. digest) end
  redis.call('DEL', p .. 'e:' .. id)
  redis.call('ZREM', p .. state, id)
end
return #ids
"""

_FIELDS = (
    "lane",
    "created_at",
    "type",
    "message_id",
    "body",
    "state",
    "attempts",
    "last_error",
    "accepted_at",
    "finished_at",
)


def _event(event_id: str, fields: dict[str, str]) -> Event:
    return Event(
        id=event_id,
        lane=fields["lane"],
        created_at=float(fields["created_at"]),
        type=fields["type"],
        message_id=fields["message_id"] or None,
        body=fields["body"].encode(),
        state=fields["state"],  # type: ignore[arg-type]
        attempts=int(fields["attempts"]),
        last_error=fields["last_error"] or None,
        accepted_at=float(fields["accepted_at"]),
        finished_at=float(fields["finished_at"]) if fields["finished_at"] else None,
    )


class RedisQueue:
    """The queue in Redis, shared by every host (the module's docstring has its keys)."""

    def __init__(
        self, url: str, max_pending: int, clock: Callable[[], float] = time.time, prefix: str = "stream-webhook:"
    ) -> None:
        self.max_pending, self.clock, self.prefix = max_pending, clock, prefix
        self.redis = redis_store.connect(url, REDIS_TIMEOUT_SECONDS)
        self._scripts = {
            name: self.redis.register_script(source)
            for name, source in (
                ("accept", _ACCEPT),
                ("lease", _LEASE),
                ("extend", _EXTEND),
                ("finish", _FINISH),
                ("retry_later", _RETRY_LATER),
                ("requeue", _REQUEUE),
                ("prune", _PRUNE),
            )
        }
        self._store_id: str | None = None

    def _run(self, script: str, *args: object) -> Any:
        return self._scripts[script](args=[self.prefix, *args])

    @unavailable_on(lambda self: redis_store.errors())
    def accept(self, incoming: Incoming) -> tuple[bool, str]:
        self._check_store_id()
        outcome, value = self._run(
            "accept",
            incoming.digest,
            incoming.webhook_id or "",
            incoming.lane,
            repr(incoming.created_at),
            incoming.type,
            incoming.message_id or "",
            incoming.body.decode(),
            repr(self.clock()),
            self.max_pending,
        )
        if outcome == -1:
            raise QueueFull(f"{value} events are waiting for the primary system (PRIMARY_SYNC_MAX_PENDING)")
        return outcome == 1, value

    @unavailable_on(lambda self: redis_store.errors())
    def lease(self, limit: int, lease_seconds: float) -> list[Lease]:
        now = self.clock()
        leased: list[str] = self._run(
            "lease",
            repr(now),
            repr(now + lease_seconds),
            limit,
            uuid.uuid4().hex,
        )
        pairs = list(zip(leased[::2], leased[1::2], strict=True))
        pipeline = self.redis.pipeline(transaction=False)
        for event_id, _ in pairs:
            pipeline.hgetall(self.prefix + "e:" + event_id)
        return [
            Lease(_event(event_id, fields), token)
            for (event_id, token), fields in zip(pairs, pipeline.execute(), strict=True)
        ]

    @unavailable_on(lambda self: redis_store.errors())
    def extend(self, lease: Lease, lease_seconds: float) -> bool:
        return self._run("extend", lease.event.lane, lease.token, repr(self.clock() + lease_seconds)) == 1

    def delivered(self, lease: Lease) -> bool:
        return self._finish(lease, "delivered", "")

    def give_up(self, lease: Lease, error: str) -> bool:
        return self._finish(lease, "failed", error)

    @unavailable_on(lambda self: redis_store.errors())
    def _finish(self, lease: Lease, state: State, error: str) -> bool:
        return self._run("finish", lease.event.lane, lease.token, lease.event.id, state, error, repr(self.clock())) == 1

    @unavailable_on(lambda self: redis_store.errors())
    def retry_later(self, lease: Lease, due_at: float, error: str) -> bool:
        return self._run("retry_later", lease.event.lane, lease.token, lease.event.id, repr(due_at), error) == 1

    # --- What the commands and metrics see ----------------------------------------------

    @unavailable_on(lambda self: redis_store.errors())
    def status(self) -> Status:
        now, key = self.clock(), self.prefix
        leases = self.redis.hkeys(key + "leases")
        in_flight = sum(
            1
            for score in (self.redis.zmscore(key + "lanes", leases) if leases else [])
            if score is not None and score > now
        )
        oldest = self.redis.zrange(key + "by_arrival", 0, 0)
        accepted = self.redis.hget(key + "e:" + oldest[0], "accepted_at") if oldest else None
        return Status(
            pending=int(self.redis.get(key + "pending") or 0),
            in_flight=in_flight,
            failed=self.redis.zcard(key + "failed"),
            delivered_last_hour=self.redis.zcount(key + "delivered", now - 3600, "+inf"),
            oldest_pending_age=None if accepted is None else max(0.0, now - float(accepted)),
        )

    @unavailable_on(lambda self: redis_store.errors())
    def events(self, state: State | None = None, lane: str | None = None, limit: int = 100) -> list[Event]:
        """Events by arrival, the latest last: of one state and lane, when given."""
        key = self.prefix
        ids: list[str] = []
        for kind in [state] if state else ["pending", "delivered", "failed"]:
            ids += self.redis.zrange(key + ("by_arrival" if kind == "pending" else kind), 0, -1)
        pipeline = self.redis.pipeline(transaction=False)
        for event_id in ids:
            pipeline.hgetall(key + "e:" + event_id)
        found = [
            (int(fields["seq"]), _event(event_id, fields))
            for event_id, fields in zip(ids, pipeline.execute(), strict=True)
            if fields and (lane is None or fields["lane"] == lane)
        ]
        return [event for _, event in sorted(found, key=lambda pair: pair[0])][-limit:]

    @unavailable_on(lambda self: redis_store.errors())
    def retry_failed(self, event_id: str | None = None) -> int:
        ids = [event_id] if event_id is not None else self.redis.zrange(self.prefix + "failed", 0, -1)
        return self._requeue([event for event in ids if self.redis.zscore(self.prefix + "failed", event) is not None])

    @unavailable_on(lambda self: redis_store.errors())
    def replay(self, since: float) -> int:
        return self._requeue(self.redis.zrangebyscore(self.prefix + "delivered", since, "+inf"))

    def _requeue(self, ids: list[str]) -> int:
        count = 0
        for start in range(0, len(ids), 500):  # in parts: a script holds Redis while it runs
            count += self._run("requeue", repr(self.clock()), *ids[start : start + 500])
        return count

    @unavailable_on(lambda self: redis_store.errors())
    def prune(self, delivered_before: float, failed_before: float, batch: int = 1000) -> int:
        pruned = self._run("prune", "delivered", repr(delivered_before), batch)
        return pruned + self._run("prune", "failed", repr(failed_before), batch)

    def _check_store_id(self) -> None:
        """Notice a Redis that lost its data since this process first used it: said loudly,
        then the store goes on with what it has (what was pending is gone either way)."""
        key = self.prefix + "store-id"
        if self._store_id is None:
            self.redis.set(key, uuid.uuid4().hex, nx=True)
            self._store_id = self.redis.get(key)
        elif self.redis.get(key) != self._store_id:
            log.error(
                "Redis lost the delivery queue's data (restarted without persistence?): events accepted "
                "before are gone, and a replay of one could be delivered again. Set appendonly yes."
            )
            self.redis.set(key, self._store_id)
