"""Model-based: whatever order Stream's events and its duplicate retries arrive in, whatever the
primary system does (fail, answer late), whichever of two hosts sharing the store leases,
answers, stalls or is killed, and however the clock moves, every accepted event ends delivered
or failed (and listed so), each channel's events reach the primary in the order Stream created
them, and a lane is never in flight in two places at once. On SQLite and on a real Redis.

The model drives the queue as the delivery workers do (lease, attempt, record the outcome,
renew a lease under way), with a schedule of its own: two waits, then give up."""

import itertools
import uuid
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from stream_backend.handover.queue import Incoming, Lease, SQLiteQueue
from stream_backend.handover.queue_redis import RedisQueue

LANES = ("messaging:a", "messaging:b", "messaging:c")
LEASE_SECONDS = 60
WAITS = (5, 30)  # then give up: three attempts in all


class Clock:
    now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Host:
    """A service host: its queue client, and the attempts it has under way."""

    queue: object
    under_way: dict[str, tuple[Lease, float]] = field(default_factory=dict)  # event id -> (lease, its end)


class Deliveries(RuleBasedStateMachine):
    make_queue = None  # set by the test: (clock) -> a queue on a store of its own

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        make = type(self).make_queue(self.clock)
        self.hosts = [Host(make()), Host(make())]
        self.created = itertools.count(1)
        self.events: dict[str, Incoming] = {}  # accepted, by id
        self.finished: set[str] = set()  # delivered or failed, as recorded
        self.primary_got: list[str] = []  # every id the primary took (duplicates included)
        self.primary_up = True

    # --- Stream ---------------------------------------------------------------------------

    @rule(lane=st.sampled_from(LANES), host=st.integers(0, 1), late=st.booleans())
    def stream_sends_an_event(self, lane, host, late):
        n = next(self.created)
        # A late one was created before the events already pending, as a delivery Stream retried.
        created_at = float(n) - (1000.5 if late else 0)
        body = f'{{"type": "message.new", "cid": "{lane}", "n": {n}}}'.encode()
        incoming = Incoming(body, f"digest-{uuid.uuid4().hex}", f"wh-{n}", lane, created_at, "message.new")
        accepted, event_id = self.hosts[host].queue.accept(incoming)
        assert accepted and event_id == f"wh-{n}"
        self.events[event_id] = incoming

    @precondition(lambda self: self.events)
    @rule(data=st.data(), host=st.integers(0, 1))
    def stream_retries_an_event(self, data, host):
        event_id = data.draw(st.sampled_from(sorted(self.events)))
        assert self.hosts[host].queue.accept(self.events[event_id]) == (False, event_id)

    # --- The hosts and the primary ---------------------------------------------------------

    @rule(host=st.integers(0, 1), limit=st.integers(1, 3))
    def a_host_leases(self, host, limit):
        for lease in self.hosts[host].queue.lease(limit, LEASE_SECONDS):
            event = lease.event
            assert event.id not in self.finished
            # The head of its lane: no event of the lane pending and created earlier.
            assert not [
                other
                for other in self.pending_in(event.lane)
                if self.events[other].created_at < self.events[event.id].created_at
            ]
            self.hosts[host].under_way[event.id] = (lease, self.clock.now + LEASE_SECONDS)

    @rule(host=st.integers(0, 1), data=st.data())
    def an_attempt_ends(self, host, data):
        under_way = self.hosts[host].under_way
        if not under_way:
            return
        event_id = data.draw(st.sampled_from(sorted(under_way)))
        lease, _ = under_way.pop(event_id)
        queue = self.hosts[host].queue
        if self.primary_up:
            self.primary_got.append(event_id)
            if queue.delivered(lease):
                self.record(lease, "delivered")
            return
        wait = WAITS[lease.event.attempts] if lease.event.attempts < len(WAITS) else None
        if wait is None:
            if queue.give_up(lease, "HTTP 500"):
                self.record(lease, "failed")
        else:
            queue.retry_later(lease, self.clock.now + wait, "HTTP 500")

    @rule(host=st.integers(0, 1))
    def a_host_renews_its_leases(self, host):
        for event_id, (lease, _) in list(self.hosts[host].under_way.items()):
            if self.hosts[host].queue.extend(lease, LEASE_SECONDS):
                self.hosts[host].under_way[event_id] = (lease, self.clock.now + LEASE_SECONDS)

    @rule(host=st.integers(0, 1))
    def a_host_is_killed(self, host):
        self.hosts[host].under_way.clear()  # its attempts never answer; its leases run out

    @rule(up=st.booleans())
    def the_primary_goes_up_or_down(self, up):
        self.primary_up = up

    @rule(seconds=st.sampled_from([1, 5, 30, 61, 600]))
    def time_passes(self, seconds):
        self.clock.now += seconds

    @rule()
    def the_operator_retries_the_failed(self):
        failed = {event.id for event in self.hosts[0].queue.events("failed", limit=10_000)}
        assert self.hosts[0].queue.retry_failed() == len(failed)
        self.finished -= failed

    # --- What must hold --------------------------------------------------------------------

    def pending_in(self, lane):
        return [
            event_id for event_id, event in self.events.items() if event.lane == lane and event_id not in self.finished
        ]

    def record(self, lease, state):
        """An outcome the queue took. (An event of the lane that arrived while this one was in
        flight, created before it, comes next: its order was checked when this one was leased.)"""
        self.finished.add(lease.event.id)

    @invariant()
    def a_lane_is_in_flight_in_one_place_at_a_time(self):
        live = [
            lease.event.lane for host in self.hosts for lease, end in host.under_way.values() if end > self.clock.now
        ]
        assert len(live) == len(set(live))

    @invariant()
    def the_queue_counts_what_is_not_finished(self):
        assert self.hosts[1].queue.status().pending == len(self.events) - len(self.finished)

    def teardown(self):
        """The primary comes back and time goes on: every event ends delivered or failed."""
        self.primary_up, queue = True, self.hosts[0].queue
        for _ in range(200):
            self.clock.now += 3600
            leases = queue.lease(10, LEASE_SECONDS)
            if not leases:
                break
            for lease in leases:
                self.primary_got.append(lease.event.id)
                assert queue.delivered(lease)
                self.record(lease, "delivered")
        states = {event.id: event.state for event in queue.events(limit=10_000)}
        assert set(states) == set(self.events)
        assert all(state in ("delivered", "failed") for state in states.values())
        assert {event_id for event_id, state in states.items() if state == "delivered"} <= set(self.primary_got)
        assert queue.status().pending == 0


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path):
    """For each example, a store of its own: a function of the clock that makes its hosts' queues."""
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None

    def hosts_of_a_new_store(clock):
        name = uuid.uuid4().hex
        if url is None:
            return lambda: SQLiteQueue(str(tmp_path / f"{name}.sqlite3"), 10_000, clock)
        return lambda: RedisQueue(url, 10_000, clock, prefix=f"model-{name}:")

    return hosts_of_a_new_store


def test_every_accepted_event_is_delivered_or_failed_in_order_and_never_in_flight_twice(store):
    Deliveries.make_queue = staticmethod(store)
    run_state_machine_as_test(
        Deliveries,
        settings=settings(
            max_examples=40, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
        ),
    )
