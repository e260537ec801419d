"""The mirror as a Python backend calls it: no Flask, no HTTP. Its collaborators are fakes: a
Stream client that keeps Stream's state in memory (the stand-in's own logic) and records each
call, and a state store in a dict."""

import json

import pytest

from stream_backend.errors import MembersAreFixed, MessageIdTaken, StoreUnavailable, StreamError
from stream_backend.mirror.inputs import ChannelSync, ChannelUpdate, MessageSync
from stream_backend.mirror.mirror import Mirror
from stream_backend.mirror.origin import derive_origin_key, is_primary_message, origin_mark
from stream_backend.mirror.state import SyncState

from stream_stand_in import ChatState, query_members, query_users
from stream_stand_in import StreamError as StandInError

ORIGIN_KEY = derive_origin_key("a-secret-" + "s" * 32)


class FakeStream:
    """The few StreamChat methods the mirror calls, answered by an in-memory Stream."""

    def __init__(self) -> None:
        self.chat = ChatState()
        self.calls: list[tuple] = []

    def answer(self, name, action, *args):
        self.calls.append((name, *args))
        try:
            return action(*args)
        except StandInError as error:  # as the service's client raises Stream's answer
            raise StreamError(error.status, error.code, error.message) from None

    def channel(self, channel_type, channel_id=None, data=None):
        return FakeChannel(self, channel_type, channel_id, data or {})

    def upsert_users(self, users):
        return self.answer("upsert_users", lambda b: self.chat.upsert_users(b), {"users": {u["id"]: u for u in users}})

    def post(self, url, data):
        cid = ":".join(url.split("/")[1:3])
        return self.answer("update_channel", self.chat.update_channel, cid, data)

    def get_message(self, message_id, show_deleted_message=False):
        return self.answer("get_message", self.chat.get_message, message_id)

    def update_message_partial(self, message_id, body, user_id):
        return self.answer("update_message", self.chat.update_message_partial, message_id, body)

    def delete_message(self, message_id, hard=False):
        return self.answer("delete_message", self.chat.delete_message, message_id, hard)

    def query_users(self, filter_conditions):
        payload = json.dumps({"filter_conditions": filter_conditions})
        return self.answer("query_users", query_users, self.chat, {"payload": payload})

    def delete_users(self, user_ids, delete_type, **options):
        return self.answer(
            "delete_users", self.chat.delete_users, {"user_ids": user_ids, "user": delete_type, **options}
        )


class FakeChannel:
    def __init__(self, client, channel_type, channel_id, data):
        self.client, self.channel_type, self.id, self.data = client, channel_type, channel_id, data

    @property
    def cid(self):
        return f"{self.channel_type}:{self.id}"

    @property
    def url(self):
        return f"channels/{self.channel_type}/{self.id}"

    def create(self, user_id):
        body = {"data": {**self.data, "created_by": {"id": user_id}}}
        state = self.client.answer(
            "get_or_create", self.client.chat.get_or_create_channel, self.channel_type, self.id, body
        )
        self.id = state["channel"]["id"]
        return state

    def send_message(self, message, user_id):
        return self.client.answer(
            "send_message", self.client.chat.send_message, self.cid, {"message": {**message, "user_id": user_id}}
        )

    def update_partial(self, to_set, to_unset):
        return self.client.answer(
            "update_partial", self.client.chat.update_channel_partial, self.cid, {"set": to_set, "unset": to_unset}
        )

    def delete(self, hard=False):
        return self.client.answer("delete_channel", self.client.chat.delete_channel, self.cid, hard)

    def query_members(self, filter_conditions, limit, offset):
        payload = json.dumps({"type": self.channel_type, "id": self.id, "limit": limit, "offset": offset})
        return self.client.answer("query_members", query_members, self.client.chat, {"payload": payload})["members"]


class DictKeyValues:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get_many(self, keys):
        return {key: self.values[key] for key in keys if key in self.values}

    def set_many(self, values, ttl_seconds):
        self.values.update(values)

    def delete_many(self, keys):
        for key in keys:
            self.values.pop(key, None)


class DownKeyValues:
    def _down(self, *args):
        raise StoreUnavailable("Connection refused")

    get_many = set_many = delete_many = _down


@pytest.fixture
def stream():
    return FakeStream()


@pytest.fixture
def mirror(stream):
    return Mirror(stream, SyncState(DictKeyValues(), ttl_seconds=60), ORIGIN_KEY)


def users(*ids):
    return {user_id: {"id": user_id, "name": user_id.title()} for user_id in ids}


def channel_sync(*members, channel_id="team", custom_data=None):
    return ChannelSync(
        type="messaging", id=channel_id, creator_id=members[0], custom_data=custom_data or {}, members=users(*members)
    )


def message_sync(message_id, *members, sender=None, channel_id="team", custom_data=None, text=None):
    sender = sender or members[0]
    return MessageSync(
        channel=channel_sync(*members, channel_id=channel_id, custom_data=custom_data),
        message_id=message_id,
        text=text or f"text of {message_id}",
        sender=users(sender)[sender],
    )


def names(calls):
    return [call[0] for call in calls]


# --- Syncs -----------------------------------------------------------------------------------


def test_a_first_message_upserts_creates_and_sends(mirror, stream):
    channel, sent = mirror.sync_message(message_sync("m-1", "a", "b"))

    assert names(stream.calls) == ["upsert_users", "get_or_create", "send_message"]
    assert channel.cid == "messaging:team"
    assert sent["message"]["text"] == "text of m-1"


def test_a_message_to_a_known_channel_is_one_call(mirror, stream):
    mirror.sync_message(message_sync("m-1", "a", "b"))
    stream.calls.clear()

    mirror.sync_message(message_sync("m-2", "a", "b", sender="b"))

    assert names(stream.calls) == ["send_message"]


def test_a_member_the_channel_lacks_is_added_before_the_message(mirror, stream):
    mirror.sync_message(message_sync("m-1", "a", "b"))
    stream.calls.clear()

    mirror.sync_message(message_sync("m-2", "a", "b", "c"))

    assert names(stream.calls) == ["upsert_users", "get_or_create", "update_channel", "send_message"]
    assert stream.calls[2][2] == {"add_members": [{"user_id": "c"}]}
    assert stream.chat.channels["messaging:team"]["members"] == ["a", "b", "c"]


def test_a_store_that_is_down_takes_the_full_path_every_time(stream):
    mirror = Mirror(stream, SyncState(DownKeyValues(), ttl_seconds=60), ORIGIN_KEY)
    mirror.sync_message(message_sync("m-1", "a", "b"))
    stream.calls.clear()

    mirror.sync_message(message_sync("m-2", "a", "b"))

    assert names(stream.calls) == ["upsert_users", "get_or_create", "send_message"]


def test_a_user_deleted_elsewhere_is_recreated_by_a_second_pass_that_distrusts_the_state(mirror, stream):
    mirror.sync_message(message_sync("m-1", "a", "b"))
    del stream.chat.users["a"]
    stream.calls.clear()

    mirror.sync_message(message_sync("m-2", "a", "b"))

    assert names(stream.calls) == ["send_message", "upsert_users", "get_or_create", "send_message"]
    assert set(stream.calls[1][1]["users"]) == {"a", "b"}


# --- Channel data converges --------------------------------------------------------------------


def test_channel_data_that_differs_in_stream_is_rewritten_by_the_full_path(mirror, stream):
    mirror.sync_channel(channel_sync("a", "b", custom_data={"title": "Old", "topic": "kept"}))
    stream.calls.clear()

    mirror.sync_channel(channel_sync("a", "b", custom_data={"title": "New"}))

    assert stream.calls[-1] == ("update_partial", "messaging:team", {"set": {"title": "New"}, "unset": []})
    assert (stream.chat.channels["messaging:team"]["title"], stream.chat.channels["messaging:team"]["topic"]) == (
        "New",
        "kept",
    )


def test_a_message_with_other_channel_data_takes_the_full_path_once(mirror, stream):
    mirror.sync_message(message_sync("m-1", "a", "b", custom_data={"title": "Old"}))
    stream.calls.clear()

    mirror.sync_message(message_sync("m-2", "a", "b", custom_data={"title": "New2"}))
    mirror.sync_message(message_sync("m-3", "a", "b", custom_data={"title": "New2"}))

    assert names(stream.calls) == ["get_or_create", "update_partial", "send_message", "send_message"]
    assert stream.chat.channels["messaging:team"]["title"] == "New2"


def test_a_dashboard_edit_is_rewritten_after_its_webhook(mirror, stream):
    mirror.sync_message(message_sync("m-1", "a", "b", custom_data={"title": "Ours"}))
    mirror.forget(stream.chat.edit_channel_directly("messaging:team", title="Dashboard"))

    mirror.sync_message(message_sync("m-2", "a", "b", custom_data={"title": "Ours"}))

    assert stream.chat.channels["messaging:team"]["title"] == "Ours"


def test_same_data_on_an_existing_channel_sends_no_update(mirror, stream):
    mirror.sync_channel(channel_sync("a", "b", custom_data={"title": "Same"}))
    stream.calls.clear()

    mirror.sync_channel(channel_sync("a", "b", custom_data={"title": "Same"}))

    assert names(stream.calls) == ["get_or_create"]


# --- Distinct channels ------------------------------------------------------------------------


def distinct_message(message_id, *members):
    sync = message_sync(message_id, *members)
    return MessageSync(
        channel=ChannelSync(
            type="messaging", id=None, creator_id=members[0], custom_data={}, members=sync.channel.members
        ),
        message_id=message_id,
        text=sync.text,
        sender=sync.sender,
    )


def test_a_member_removed_from_a_distinct_channel_is_added_back_after_its_webhook(mirror, stream):
    channel, _ = mirror.sync_message(distinct_message("m-1", "a", "b"))
    mirror.forget(stream.chat.remove_member_directly(channel.cid, "b"))
    stream.calls.clear()

    mirror.sync_message(distinct_message("m-2", "a", "b"))

    assert names(stream.calls) == ["get_or_create", "update_channel", "send_message"]
    assert stream.chat.channels[channel.cid]["members"] == ["a", "b"]


def test_a_known_distinct_channel_is_one_call(mirror, stream):
    mirror.sync_message(distinct_message("m-1", "a", "b"))
    stream.calls.clear()

    mirror.sync_message(distinct_message("m-2", "a", "b"))

    assert names(stream.calls) == ["send_message"]


def test_the_state_remembers_the_members_stream_holds(mirror, stream):
    mirror.sync_channel(channel_sync("a", "b"))
    stream.chat.upsert_users({"users": users("x")})
    stream.chat.add_member_directly("messaging:team", "x")
    mirror.state.forget_channel("messaging", "team")

    mirror.sync_channel(channel_sync("a", "c"))

    assert mirror.state.channel("messaging", "team").members == {"a", "b", "c", "x"}


# --- Channel updates -------------------------------------------------------------------------


def test_update_channel_sets_unsets_and_makes_members_exact(mirror, stream):
    mirror.sync_channel(channel_sync("a", "b", "c"))

    answer = mirror.update_channel(
        "messaging", "team", ChannelUpdate(custom_data={"title": "New", "topic": None}, members=users("a", "d"))
    )

    assert stream.calls[-4:][0] == ("update_partial", "messaging:team", {"set": {"title": "New"}, "unset": ["topic"]})
    assert (answer["added"], answer["removed"]) == (["d"], ["b", "c"])
    assert stream.chat.channels["messaging:team"]["members"] == ["a", "d"]


def test_after_an_update_the_next_message_needs_no_get_or_create(mirror, stream):
    mirror.sync_channel(channel_sync("a", "b"))
    mirror.update_channel("messaging", "team", ChannelUpdate(custom_data={}, members=users("a", "c")))
    stream.calls.clear()

    mirror.sync_message(message_sync("m-1", "a", "c"))

    assert names(stream.calls) == ["send_message"]


def test_a_distinct_channels_members_cannot_change(mirror, stream):
    with pytest.raises(MembersAreFixed):
        mirror.update_channel("messaging", "!members-abc", ChannelUpdate(custom_data={}, members=users("a")))
    assert stream.calls == []


# --- Deletes ---------------------------------------------------------------------------------


def test_delete_user_then_again(mirror, stream):
    mirror.sync_channel(channel_sync("a", "b"))

    first = mirror.delete_user("a", hard=False)
    again = mirror.delete_user("a", hard=False)

    assert first["task_id"] and stream.chat.users["a"]["deleted_at"]
    assert again == {"user": {"id": "a"}, "already_deleted": True}


def test_a_hard_delete_after_a_soft_one_deletes_the_messages(mirror, stream):
    mirror.sync_message(message_sync("m-1", "a", "b"))
    mirror.delete_user("a", hard=False)
    stream.calls.clear()

    answer = mirror.delete_user("a", hard=True)

    assert stream.calls == [("delete_users", {"user_ids": ["a"], "user": "soft", "messages": "hard"})]
    assert answer["task_id"] and "m-1" not in stream.chat.messages


def test_delete_user_forgets_again_after_stream_deleted(mirror, stream):
    """A worker that remembered the user between the first forget and Stream's delete."""
    mirror.sync_channel(channel_sync("a", "b"))
    delete_users = stream.delete_users

    def remembered_meanwhile(*args, **options):
        mirror.state.remember_users(users("a"))
        return delete_users(*args, **options)

    stream.delete_users = remembered_meanwhile
    mirror.delete_user("a", hard=False)

    assert mirror.state.users_to_upsert(users("a")) == users("a")


def test_delete_channel_forgets_again_after_stream_deleted(mirror, stream):
    mirror.sync_channel(channel_sync("a", "b"))
    delete = FakeChannel.delete

    def remembered_meanwhile(self, hard=False):
        mirror.state.remember_channel("messaging", "team", ["a", "b"], custom_data={})
        return delete(self, hard)

    FakeChannel.delete = remembered_meanwhile
    try:
        mirror.delete_channel("messaging", "team", hard=False)
    finally:
        FakeChannel.delete = delete

    assert mirror.state.channel("messaging", "team") is None


def test_delete_message_twice(mirror, stream):
    mirror.sync_message(message_sync("m-1", "a"))

    mirror.delete_message("m-1", hard=True)

    assert mirror.delete_message("m-1", hard=True) == {"message": {"id": "m-1"}, "already_deleted": True}


# --- Webhook events make it forget ------------------------------------------------------------


def test_a_user_event_makes_the_next_sync_upsert_the_user(mirror, stream):
    mirror.sync_message(message_sync("m-1", "a", "b"))
    mirror.forget({"type": "user.updated", "user": {"id": "b", "name": "Edited in a client"}})
    stream.calls.clear()

    mirror.sync_message(message_sync("m-2", "a", "b"))

    assert names(stream.calls) == ["upsert_users", "send_message"]
    assert list(stream.calls[0][1]["users"]) == ["b"]


def test_a_member_event_makes_the_next_sync_check_the_channel(mirror, stream):
    mirror.sync_message(message_sync("m-1", "a", "b"))
    mirror.forget(
        {"type": "member.removed", "cid": "messaging:team", "channel_type": "messaging", "channel_id": "team"}
    )
    stream.calls.clear()

    mirror.sync_message(message_sync("m-2", "a", "b"))

    assert names(stream.calls) == ["get_or_create", "send_message"]


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"type": "user.updated"},
        {"type": "user.updated", "user": "b"},
        {"type": "channel.updated", "channel_type": 3},
        {"type": "message.new"},
    ],
)
def test_events_without_what_they_touch_change_nothing(mirror, stream, event):
    mirror.sync_message(message_sync("m-1", "a", "b"))
    mirror.forget(event)
    stream.calls.clear()

    mirror.sync_message(message_sync("m-2", "a", "b"))

    assert names(stream.calls) == ["send_message"]


# --- The origin mark and squatted ids ---------------------------------------------------------


def test_the_mark_binds_the_id_the_channel_and_the_sender():
    mark = origin_mark(ORIGIN_KEY, "m-1", "messaging:team", "a")
    message = {"id": "m-1", "cid": "messaging:team", "user": {"id": "a"}, "primary_origin": mark}

    assert is_primary_message(ORIGIN_KEY, message)
    assert not is_primary_message(ORIGIN_KEY, {**message, "id": "m-2"})
    assert not is_primary_message(ORIGIN_KEY, {**message, "cid": "messaging:other"})
    assert not is_primary_message(ORIGIN_KEY, {**message, "user": {"id": "b"}})
    assert not is_primary_message(derive_origin_key("another-secret"), message)


def test_the_origin_key_is_derived_not_the_secret():
    assert derive_origin_key("secret") != b"secret"
    assert len(derive_origin_key("secret")) == 32


def test_an_earlier_attempt_of_ours_is_answered_with_the_stored_message(mirror, stream):
    first = mirror.sync_message(message_sync("m-1", "a", "b"))[1]

    again = mirror.sync_message(message_sync("m-1", "a", "b"))[1]

    assert again["message"]["id"] == "m-1"
    assert again["message"]["primary_origin"] == first["message"]["primary_origin"]


def test_a_retry_with_other_text_updates_the_stored_message(mirror, stream):
    mirror.sync_message(message_sync("m-1", "a", "b", text="first"))
    stream.calls.clear()

    _, answer = mirror.sync_message(message_sync("m-1", "a", "b", text="second"))

    assert names(stream.calls) == ["send_message", "get_message", "update_message"]
    assert stream.calls[-1] == ("update_message", "m-1", {"set": {"text": "second"}})
    assert answer["message"]["text"] == stream.chat.messages["m-1"]["text"] == "second"


def test_an_id_squatted_by_a_chat_client_raises_message_id_taken(mirror, stream):
    stream.chat.upsert_users({"users": users("squatter")})
    stream.chat.get_or_create_channel("messaging", "own", {"data": {"members": [{"user_id": "squatter"}]}})
    stream.chat.send_message_directly("messaging:own", "squatter", {"id": "sq-1", "text": "mine"})

    with pytest.raises(MessageIdTaken) as taken:
        mirror.sync_message(message_sync("sq-1", "a", "b"))

    assert (taken.value.message_id, taken.value.cid) == ("sq-1", "messaging:team")
    assert stream.chat.messages["sq-1"]["text"] == "mine"


def test_a_copied_mark_does_not_make_a_squatted_id_ours(mirror, stream):
    """A squatter who copies our mark for this id, channel and sender still writes their own
    message, in their channel: the stored message is not ours."""
    mark = origin_mark(ORIGIN_KEY, "sq-2", "messaging:team", "a")
    stream.chat.upsert_users({"users": users("squatter")})
    stream.chat.get_or_create_channel("messaging", "own", {"data": {"members": [{"user_id": "squatter"}]}})
    stream.chat.send_message_directly("messaging:own", "squatter", {"id": "sq-2", "text": "x", "primary_origin": mark})

    with pytest.raises(MessageIdTaken):
        mirror.sync_message(message_sync("sq-2", "a", "b"))


def test_members_past_what_the_update_answer_lists_are_read_page_by_page(mirror, stream, monkeypatch):
    """Stream's answer to a channel update may list only some members (its `member_count`
    says how many there are): the rest are read with query_members, 100 a page."""
    mirror.sync_channel(channel_sync(*[f"m{n:03d}" for n in range(230)]))
    update_partial = FakeChannel.update_partial

    def listing_100(self, to_set, to_unset):
        answer = update_partial(self, to_set, to_unset)
        return {**answer, "members": answer["members"][:100]}

    monkeypatch.setattr(FakeChannel, "update_partial", listing_100)

    answer = mirror.update_channel("messaging", "team", ChannelUpdate(custom_data={}, members=users("m000", "new")))

    assert [call[0] for call in stream.calls].count("query_members") == 3
    assert (answer["added"], len(answer["removed"])) == (["new"], 229)
    assert stream.chat.channels["messaging:team"]["members"] == ["m000", "new"]
