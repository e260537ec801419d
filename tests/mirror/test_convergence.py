"""Model-based: random sequences of the primary system's operations, sent through two instances
of the service that share one state store (SQLite, then Redis), mixed with edits made directly
in Stream (the stand-in, as a chat client or the dashboard would) and the webhooks Stream sends
for them. The primary system is the model.

After every sync, Stream has each user and member the request named; after each sequence and
one final sync of each channel from the primary, Stream equals the model: users, channel
members and data, message texts and deletions.
"""

import json
import uuid
from contextlib import ExitStack

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from app import create_app

from support.examples import sign
from support.machines import run_on_a_shared_store
from support.stream import stream_in_memory as stream_stand_in

USERS = [f"u{n}" for n in range(5)]
CHANNELS = ["c0", "c1", "c2"]
DATA_FIELDS = ["title", "topic"]
NAMES = st.sampled_from(["Ana", "Bo", "Cy", "Di"])
DATA_VALUES = st.one_of(st.none(), st.sampled_from(["x", "y"]))
INSTANCES = st.sampled_from([0, 1])


class Convergence(RuleBasedStateMachine):
    """The primary system: users (name, deleted), channels (members, data), messages."""

    environ: dict = {}

    def __init__(self) -> None:
        super().__init__()
        self.resources = ExitStack()
        self.stream = self.resources.enter_context(stream_stand_in())
        self.chat = self.stream.stand_in.state
        self.instances = [create_app(self.environ).test_client() for _ in range(2)]
        self.names = {user: user.upper() for user in USERS}
        self.deleted_users: set[str] = set()
        self.mirrored_users: set[str] = set()
        self.channels: dict[str, dict] = {}  # id -> {"members": set, "data": dict}
        self.messages: dict[str, dict] = {}  # id -> {"channel", "sender", "text", "deleted"}
        self.distinct: dict[frozenset, str] = {}  # a distinct channel's members -> the cid Stream gave it

    def teardown(self) -> None:
        try:
            self.final_sync()
            self.assert_stream_equals_the_model()
        finally:
            self.resources.close()

    # --- The primary's operations ----------------------------------------------------------

    @rule(
        instance=INSTANCES,
        channel=st.sampled_from(CHANNELS),
        joining=st.sets(st.sampled_from(USERS), max_size=2),
        title=st.sampled_from(["x", "y"]),
    )
    def sync_channel(self, instance, channel, joining, title):
        """Create a channel, or sync it with members joining (the `/channel` route adds them)."""
        joining = joining - self.deleted_users
        if channel not in self.channels:
            if not joining:
                return
            self.channels[channel] = {"members": set(), "data": {"title": title}}
        self.channels[channel]["members"] |= joining
        self.post(instance, "/channel", self.channel_body(channel))

    @precondition(lambda self: self.channels)
    @rule(instance=INSTANCES, data=st.data(), joining=st.sampled_from(USERS))
    def send_message(self, instance, data, joining):
        channel = data.draw(st.sampled_from(sorted(self.channels)))
        members = self.channels[channel]["members"]
        if joining not in self.deleted_users:
            members.add(joining)  # a member the channel lacks comes with the message
        sender = data.draw(st.sampled_from(sorted(members)))
        message_id = f"m-{uuid.uuid4().hex[:12]}"
        self.messages[message_id] = {"channel": channel, "sender": sender, "text": f"hi {message_id}", "deleted": False}
        body = {
            **self.channel_body(channel),
            "message": {"id": message_id, "text": f"hi {message_id}"},
            "user": {"id": sender, "name": self.names[sender]},
        }
        self.post(instance, "/message", body)

    @precondition(lambda self: self.live_messages())
    @rule(instance=INSTANCES, data=st.data(), text=st.sampled_from(["edited", "again"]))
    def edit_message(self, instance, data, text):
        message_id = data.draw(st.sampled_from(self.live_messages()))
        self.messages[message_id]["text"] = text
        self.call(
            instance,
            "put",
            f"/message/{message_id}",
            {"message": {"text": text}, "user": {"id": self.messages[message_id]["sender"]}},
        )

    @precondition(lambda self: self.live_messages())
    @rule(instance=INSTANCES, data=st.data(), hard=st.booleans())
    def delete_message(self, instance, data, hard):
        message_id = data.draw(st.sampled_from(self.live_messages()))
        self.messages[message_id]["deleted"] = True
        self.call(instance, "delete", f"/message/{message_id}?hard={str(hard).lower()}")

    @rule(user=st.sampled_from(USERS), name=NAMES)
    def rename_user(self, user, name):
        """Renamed in the primary: its next sync of the user carries the new name."""
        self.names[user] = name

    @precondition(lambda self: self.channels)
    @rule(instance=INSTANCES, user=st.sampled_from(USERS), hard=st.booleans())
    def delete_user(self, instance, user, hard):
        if user in self.deleted_users or any(channel["members"] == {user} for channel in self.channels.values()):
            return
        self.deleted_users.add(user)
        for channel in self.channels.values():
            channel["members"].discard(user)
        if hard:
            for message in self.messages.values():
                if message["sender"] == user:
                    message["deleted"] = True
        self.call(instance, "delete", f"/user/{user}?hard={str(hard).lower()}")

    @precondition(lambda self: self.channels)
    @rule(instance=INSTANCES, data=st.data(), title=DATA_VALUES, topic=DATA_VALUES)
    def rename_channel(self, instance, data, title, topic):
        channel = data.draw(st.sampled_from(sorted(self.channels)))
        changes = {"title": title, "topic": topic}
        for field, value in changes.items():
            if value is None:
                self.channels[channel]["data"].pop(field, None)
            else:
                self.channels[channel]["data"][field] = value
        self.call(instance, "put", f"/channel/messaging/{channel}", {"custom_data": changes})

    @precondition(lambda self: self.channels)
    @rule(instance=INSTANCES, data=st.data(), members=st.sets(st.sampled_from(USERS), min_size=1, max_size=3))
    def set_members(self, instance, data, members):
        channel = data.draw(st.sampled_from(sorted(self.channels)))
        members = members - self.deleted_users
        if not members:
            return
        self.channels[channel]["members"] = set(members)
        self.call(
            instance,
            "put",
            f"/channel/messaging/{channel}",
            {"members": {user: {"name": self.names[user]} for user in members}},
        )
        self.mirrored_users |= members

    @precondition(lambda self: self.channels)
    @rule(instance=INSTANCES, data=st.data())
    def delete_channel(self, instance, data):
        channel = data.draw(st.sampled_from(sorted(self.channels)))
        del self.channels[channel]
        self.messages = {key: message for key, message in self.messages.items() if message["channel"] != channel}
        self.call(instance, "delete", f"/channel/messaging/{channel}?hard=true")

    @rule(instance=INSTANCES, members=st.sets(st.sampled_from(USERS), min_size=2, max_size=2))
    def send_distinct_message(self, instance, members):
        """A message to the distinct channel of two users (no channel id): Stream derives its id."""
        if members & self.deleted_users:
            return
        sender = min(members)
        message_id = f"m-{uuid.uuid4().hex[:12]}"
        body = {
            **self.distinct_body(members),
            "message": {"id": message_id, "text": f"hi {message_id}"},
            "user": {"id": sender, "name": self.names[sender]},
        }
        self.post_distinct(instance, "/message", body)
        self.messages[message_id] = {"channel": None, "sender": sender, "text": f"hi {message_id}", "deleted": False}

    # --- Edits made directly in Stream, and their webhooks -------------------------------------

    @rule(instance=INSTANCES, user=st.sampled_from(USERS), name=NAMES)
    def stream_renames_user(self, instance, user, name):
        if self.in_stream(user):
            self.deliver(instance, self.chat.edit_user_directly(user, name=name))

    @precondition(lambda self: self.channels)
    @rule(instance=INSTANCES, data=st.data(), user=st.sampled_from(USERS))
    def stream_removes_member(self, instance, data, user):
        channel = data.draw(st.sampled_from(sorted(self.channels)))
        if f"messaging:{channel}" in self.chat.channels:
            self.deliver(instance, self.chat.remove_member_directly(f"messaging:{channel}", user))

    @precondition(lambda self: self.distinct)
    @rule(instance=INSTANCES, data=st.data())
    def stream_removes_distinct_member(self, instance, data):
        members = data.draw(st.sampled_from(sorted(self.distinct, key=sorted)))
        user = data.draw(st.sampled_from(sorted(members)))
        self.deliver(instance, self.chat.remove_member_directly(self.distinct[members], user))

    @precondition(lambda self: self.channels)
    @rule(instance=INSTANCES, data=st.data(), user=st.sampled_from(USERS))
    def stream_adds_member(self, instance, data, user):
        channel = data.draw(st.sampled_from(sorted(self.channels)))
        if f"messaging:{channel}" in self.chat.channels and self.in_stream(user):
            self.deliver(instance, self.chat.add_member_directly(f"messaging:{channel}", user))

    @precondition(lambda self: self.channels)
    @rule(instance=INSTANCES, data=st.data(), field=st.sampled_from(DATA_FIELDS), value=st.sampled_from(["z", "w"]))
    def stream_edits_channel(self, instance, data, field, value):
        channel = data.draw(st.sampled_from(sorted(self.channels)))
        if f"messaging:{channel}" in self.chat.channels:
            self.deliver(instance, self.chat.edit_channel_directly(f"messaging:{channel}", **{field: value}))

    @precondition(lambda self: self.live_messages())
    @rule(instance=INSTANCES, data=st.data(), text=st.sampled_from(["from a client", "typo fixed"]))
    def stream_edits_message(self, instance, data, text):
        """A user edits their message in a chat client: the hand-over gives the edit to the
        primary, which keeps it."""
        message_id = data.draw(st.sampled_from(self.live_messages()))
        self.messages[message_id]["text"] = text
        self.deliver(instance, self.chat.edit_message_directly(message_id, text))

    # --- Helpers ---------------------------------------------------------------------------

    def channel_body(self, channel):
        members = sorted(self.channels[channel]["members"])
        return {
            "channel": {"id": channel, "creator_id": members[0], "custom_data": self.channels[channel]["data"]},
            "members": {user: {"name": self.names[user]} for user in members},
        }

    def distinct_body(self, members):
        return {
            "channel": {"creator_id": min(members), "custom_data": {}},
            "members": {user: {"name": self.names[user]} for user in sorted(members)},
        }

    def post_distinct(self, instance, route, body):
        """A sync of a distinct channel, and what it promises: Stream's channel has its members."""
        response = self.instances[instance].post(route, json=body)
        assert response.status_code == 200, (route, response.get_json())
        cid = response.get_json()["cid"]
        self.distinct[frozenset(body["members"])] = cid
        self.mirrored_users |= set(body["members"])
        assert set(body["members"]) <= set(self.chat.channels[cid]["members"]), (body["members"], cid)

    def post(self, instance, route, body):
        """A sync, and what it promises: Stream now has every user and member it named."""
        self.call(instance, "post", route, body)
        named = {**body["members"], **({body["user"]["id"]: body["user"]} if "user" in body else {})}
        self.mirrored_users |= set(named)
        for user, fields in named.items():
            assert self.chat.users[user]["name"] == fields["name"], (user, self.chat.users[user])
        stream_members = self.chat.channels[f"messaging:{body['channel']['id']}"]["members"]
        assert set(body["members"]) <= set(stream_members), (body["members"], stream_members)

    def call(self, instance, method, path, body=None):
        response = getattr(self.instances[instance], method)(path, json=body)
        assert response.status_code == 200, (method, path, response.get_json())

    def deliver(self, instance, event):
        body = json.dumps(event).encode()
        response = self.instances[instance].post(
            "/stream-incoming-wh", data=body, headers={"X-Signature": sign(body), "X-Webhook-Id": uuid.uuid4().hex}
        )
        assert response.status_code == 200, response.get_json()

    def in_stream(self, user):
        return user in self.chat.users and not self.chat.users[user].get("deleted_at")

    def live_messages(self):
        return sorted(key for key, message in self.messages.items() if not message["deleted"])

    # --- The final sync and the comparison ----------------------------------------------------

    def final_sync(self):
        for number, channel in enumerate(sorted(self.channels)):
            self.post(number % 2, "/channel", self.channel_body(channel))
            data = {field: self.channels[channel]["data"].get(field) for field in DATA_FIELDS}
            members = {user: {"name": self.names[user]} for user in self.channels[channel]["members"]}
            self.call(number % 2, "put", f"/channel/messaging/{channel}", {"custom_data": data, "members": members})
        for number, members in enumerate(sorted(self.distinct, key=sorted)):
            if not members & self.deleted_users:
                self.post_distinct(number % 2, "/channel", self.distinct_body(members))

    def assert_stream_equals_the_model(self):
        # The primary syncs a user through the channels they are in: those, and the deleted.
        in_channels = set().union(*(channel["members"] for channel in self.channels.values()))
        for user in self.mirrored_users & (in_channels | self.deleted_users):
            stored = self.chat.users[user]
            if user in self.deleted_users:
                assert stored.get("deleted_at"), user
            else:
                assert (stored["name"], stored.get("deleted_at")) == (self.names[user], None), user
        for channel, model in self.channels.items():
            stored = self.chat.channels[f"messaging:{channel}"]
            assert set(stored["members"]) == model["members"], channel
            assert {field: stored.get(field) for field in DATA_FIELDS} == {
                field: model["data"].get(field) for field in DATA_FIELDS
            }, channel
        for members, cid in self.distinct.items():
            if not members & self.deleted_users:
                assert set(self.chat.channels[cid]["members"]) == members, cid
        for message_id, model in self.messages.items():
            stored = self.chat.messages.get(message_id)
            if model["deleted"]:
                assert stored is None or stored["deleted_at"], message_id
            else:
                assert (stored["text"], stored["deleted_at"]) == (model["text"], None), message_id


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_stream_converges_to_the_primary(store, request):
    run_on_a_shared_store(Convergence, store, request, steps=30)
