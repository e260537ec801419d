"""Model-based: a primary system writes versioned users, a channel and messages, and its outbox
delivers each write late, in any order, some twice, some two at once on two instances of the
service sharing one store (SQLite, then a real Redis), with Stream's answers delayed so that
concurrent requests interleave. A write Stream cannot take yet (an update of a message whose
create has not arrived: 404) stays in the outbox, as a primary's would.

When every write has arrived, Stream holds the newest version the primary sent of every
object: each user's name, the channel's title and members, each message's text or its delete.
Users and messages carry integer versions; the channel, timestamps.
"""

import copy
import random
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from app import create_app

from support.machines import run_on_a_shared_store
from support.stream import stream_in_memory

USERS = ["u0", "u1", "u2"]
MESSAGES = ["m0", "m1", "m2", "m3"]
NAMES = st.sampled_from(["Ana", "Bo", "Cy"])
TEXTS = st.sampled_from(["a", "b", "c"])
INSTANCES = st.sampled_from([0, 1])
EPOCH = datetime(2026, 11, 28, tzinfo=UTC)


def channel_version(number: int) -> str:
    """The channel's versions are its updated_at, a second apart, written with an offset."""
    return (EPOCH + timedelta(seconds=number)).astimezone(timezone(timedelta(hours=-5))).isoformat()


class LateDeliveries(RuleBasedStateMachine):
    environ: dict = {}

    def __init__(self) -> None:
        super().__init__()
        self.stream = stream_in_memory(delay=lambda: random.uniform(0, 0.002))
        self.chat = self.stream.__enter__().stand_in.state
        self.apps = [create_app(self.environ) for _ in range(2)]
        self.users = {user: {"version": 1, "name": user.upper()} for user in USERS}
        self.channel = {"version": 0, "title": "start", "members": {"u0", "u1"}}
        self.messages: dict[str, dict] = {}  # id -> {"version", "text", "deleted", "sender"}
        self.newest: dict[str, tuple] = {}  # object -> (version, what it holds): the newest sent
        self.outbox: list[tuple] = []  # (method, path, body), not yet taken by the service
        self.delivered: list[tuple] = []
        self.retry_later: list[tuple] = []  # refused 404 when delivered two at once
        self.write("post", "/channel", self.channel_body())

    def teardown(self) -> None:
        try:
            self.deliver_everything()
            self.assert_stream_holds_the_newest_versions()
        finally:
            self.stream.__exit__(None, None, None)

    # --- The primary's writes, into its outbox ---------------------------------------------------

    @precondition(lambda self: len(self.messages) < len(MESSAGES))
    @rule(data=st.data())
    def send_message(self, data):
        message_id = MESSAGES[len(self.messages)]
        sender = data.draw(st.sampled_from(sorted(self.channel["members"])))
        self.messages[message_id] = {"version": 1, "text": f"hi {message_id}", "deleted": False, "sender": sender}
        body = {
            **self.channel_body(),
            "message": {"id": message_id, "text": f"hi {message_id}", "version": 1},
            "user": self.user_body(sender) | {"id": sender},
        }
        self.sent(f"message:{message_id}", 1, ("text", f"hi {message_id}"))
        self.write("post", "/message", body)

    @precondition(lambda self: self.live_messages())
    @rule(data=st.data(), text=TEXTS)
    def edit_message(self, data, text):
        message_id = data.draw(st.sampled_from(self.live_messages()))
        message = self.messages[message_id]
        message.update(version=message["version"] + 1, text=text)
        self.sent(f"message:{message_id}", message["version"], ("text", text))
        body = {"message": {"text": text, "version": message["version"]}, "user": {"id": message["sender"]}}
        self.write("put", f"/message/{message_id}", body)

    @precondition(lambda self: self.live_messages())
    @rule(data=st.data(), hard=st.booleans())
    def delete_message(self, data, hard):
        message_id = data.draw(st.sampled_from(self.live_messages()))
        message = self.messages[message_id]
        message.update(version=message["version"] + 1, deleted=True)
        self.sent(f"message:{message_id}", message["version"], ("deleted", None))
        self.write("delete", f"/message/{message_id}?hard={str(hard).lower()}&version={message['version']}")

    @rule(user=st.sampled_from(USERS), name=NAMES)
    def rename_user(self, user, name):
        """Renamed in the primary; a member's rename goes out with a sync of their channel."""
        self.users[user] = {"version": self.users[user]["version"] + 1, "name": name}
        if user in self.channel["members"]:
            self.write("post", "/channel", self.channel_body())

    @rule(title=TEXTS, members=st.sets(st.sampled_from(USERS), min_size=1))
    def change_channel(self, title, members):
        self.channel = {"version": self.channel["version"] + 1, "title": title, "members": members}
        body = self.channel_body()
        self.write(
            "put",
            "/channel/messaging/c0",
            {
                "custom_data": body["channel"]["custom_data"],
                "members": body["members"],
                "version": body["channel"]["version"],
            },
        )

    # --- The outbox delivers: late, out of order, twice, two at once -----------------------------

    @precondition(lambda self: self.outbox)
    @rule(data=st.data(), instance=INSTANCES)
    def deliver(self, data, instance):
        self.take(data.draw(st.integers(0, len(self.outbox) - 1)), instance)

    @precondition(lambda self: self.delivered)
    @rule(data=st.data(), instance=INSTANCES)
    def resend(self, data, instance):
        """A resend after a timeout whose write had arrived: it changes nothing older."""
        self.answered(self.send(data.draw(st.sampled_from(self.delivered)), instance))

    @precondition(lambda self: len(self.outbox) >= 2)
    @rule(data=st.data())
    def deliver_two_at_once(self, data):
        """Two writes at once on the two instances (two workers or hosts), perhaps of one object.
        Which goes first is the threads' choice: one that Stream could not take yet (404) waits
        for the final deliveries, so that the next steps do not depend on that choice."""
        first, second = data.draw(st.lists(st.integers(0, len(self.outbox) - 1), min_size=2, max_size=2, unique=True))
        writes = [self.outbox[first], self.outbox[second]]
        statuses: list[int] = [0, 0]

        def run(number):
            statuses[number] = self.send(writes[number], number)

        threads = [threading.Thread(target=run, args=(number,)) for number in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for write, status in zip(writes, statuses, strict=True):
            self.outbox.remove(write)
            self.delivered.append(write)
            if not self.answered(status):
                self.retry_later.append(write)

    # --- Helpers ----------------------------------------------------------------------------------

    def user_body(self, user):
        return {"name": self.users[user]["name"], "version": self.users[user]["version"]}

    def channel_body(self):
        members = sorted(self.channel["members"])
        for user in members:
            self.sent(f"user:{user}", self.users[user]["version"], ("name", self.users[user]["name"]))
        version = channel_version(self.channel["version"])
        self.sent("channel:messaging:c0", self.channel["version"], (self.channel["title"], frozenset(members)))
        return {
            "channel": {
                "id": "c0",
                "creator_id": members[0],
                "custom_data": {"title": self.channel["title"]},
                "version": version,
            },
            "members": {user: self.user_body(user) for user in members},
        }

    def sent(self, name, version, holds):
        if name not in self.newest or self.newest[name][0] <= version:
            self.newest[name] = (version, holds)

    def write(self, method, path, body=None):
        self.outbox.append((method, path, copy.deepcopy(body)))

    def send(self, write, instance) -> int:
        method, path, body = write
        response = getattr(self.apps[instance].test_client(), method)(path, json=body)
        return response.status_code

    @staticmethod
    def answered(status) -> bool:
        """200: taken. 404: Stream lacks what it updates (its create is still in the outbox)."""
        assert status in (200, 404), status
        return status == 200

    def take(self, index, instance):
        write = self.outbox[index]
        if self.answered(self.send(write, instance)):
            self.outbox.remove(write)
            self.delivered.append(write)

    def live_messages(self):
        return sorted(key for key, message in self.messages.items() if not message["deleted"])

    def deliver_everything(self):
        self.outbox.extend(self.retry_later)
        while self.outbox:
            before = len(self.outbox)
            for index in reversed(range(len(self.outbox))):
                self.take(index, index % 2)
            assert len(self.outbox) < before, self.outbox

    def assert_stream_holds_the_newest_versions(self):
        for name, (_, holds) in self.newest.items():
            kind, key = name.split(":", 1)
            if kind == "user":
                assert self.chat.users[key]["name"] == holds[1], name
            elif kind == "channel":
                stored = self.chat.channels["messaging:c0"]
                assert (stored.get("title"), set(stored["members"])) == (holds[0], set(holds[1])), name
            elif holds[0] == "deleted":
                stored = self.chat.messages.get(key)
                assert stored is None or stored["deleted_at"], name
            else:
                assert (self.chat.messages[key]["text"], self.chat.messages[key]["deleted_at"]) == (holds[1], None), (
                    name
                )


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_stream_ends_with_the_newest_version_of_every_object(store, request):
    run_on_a_shared_store(LateDeliveries, store, request, steps=40)
