"""Model-based: whatever order Stream's deliveries, its retries, a failing primary and an
attacker's replays come in, the primary system gets each event once, and every 200 means the
primary has the event."""

import itertools

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from app import create_app

from support.examples import API_KEY, API_SECRET, sign, webhook_event
from support.primary import PrimarySystem

_ids = itertools.count()


@pytest.fixture(scope="module")
def primary():
    with PrimarySystem() as server:
        yield server


class Deliveries(RuleBasedStateMachine):
    primary: PrimarySystem
    db_folder = None

    events = Bundle("events")

    def __init__(self) -> None:
        super().__init__()
        self.primary.received.clear()
        self.primary.status = 200
        self.client = create_app(
            {
                "STREAM_API_KEY": API_KEY,
                "STREAM_API_SECRET": API_SECRET,
                "TOKEN_AUTH": "open",
                "PRIMARY_SYNC_URL": self.primary.url,
                "PRIMARY_SYNC_TIMEOUT": "1",
                "WEBHOOK_DB": str(self.db_folder / f"webhooks-{next(_ids)}.sqlite3"),
            }
        ).test_client()
        self.acknowledged: set[str] = set()  # message ids answered 200 "forwarded" or "duplicate"

    @rule(target=events, event_type=st.sampled_from(["message.new", "message.updated", "reaction.new"]))
    def stream_creates_an_event(self, event_type):
        n = next(_ids)
        body = webhook_event(event_type, message={"id": f"m-{n}", "text": "hi", "user": {"id": "thierry"}})
        return {"body": body, "webhook_id": f"wh-{n}", "message_id": f"m-{n}"}

    @rule(event=events, primary_up=st.booleans())
    def stream_delivers_or_retries(self, event, primary_up):
        self.primary.status = 200 if primary_up else 500
        handed_over = event["message_id"] in self.acknowledged
        response = self.post(event, event["webhook_id"])

        if not primary_up and not handed_over:
            assert response.status_code == 503
        else:
            assert response.status_code == 200

    @rule(event=events, replay_id=st.sampled_from([None, "fresh", "of another event"]), other=events)
    def an_attacker_replays_a_signed_body(self, event, replay_id, other):
        self.primary.status = 200
        webhook_id = {None: None, "fresh": f"wh-replay-{next(_ids)}", "of another event": other["webhook_id"]}[
            replay_id
        ]
        handed_over = event["message_id"] in self.acknowledged
        response = self.post(event, webhook_id)

        assert response.status_code == 200
        if handed_over:
            assert response.get_json()["outcome"] == "duplicate"

    def post(self, event, webhook_id):
        headers = {"X-Signature": sign(event["body"])}
        if webhook_id is not None:
            headers["X-Webhook-Id"] = webhook_id
        response = self.client.post("/stream-incoming-wh", data=event["body"], headers=headers)
        if response.status_code == 200 and response.get_json()["outcome"] in ("forwarded", "duplicate"):
            self.acknowledged.add(event["message_id"])
        return response

    @invariant()
    def the_primary_has_each_acknowledged_event_once(self):
        taken = [entry["event"]["message"]["id"] for entry in self.primary.accepted()]
        assert len(taken) == len(set(taken))
        assert self.acknowledged <= set(taken)
        # The primary dedupes on the id: two events under one id would lose the second.
        ids = [entry["webhook_id"] for entry in self.primary.accepted()]
        assert len(ids) == len(set(ids))


def test_each_event_reaches_the_primary_once_whatever_the_order(primary, tmp_path):
    Deliveries.primary, Deliveries.db_folder = primary, tmp_path
    Deliveries.TestCase.settings = settings(
        max_examples=30,
        stateful_step_count=12,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    run_state_machine_as_test(Deliveries, settings=Deliveries.TestCase.settings)
