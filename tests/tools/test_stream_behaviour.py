"""The stand-in answers as Stream does: one test per behaviour recorded in
docs/stream-behaviour.md, named by its id (`test_b07_...`), checking what Stream's own SDK test
suites show of it (status, code, message, shape), over HTTP as the SDK calls it; and a test that
every behaviour recorded there has its test, so that the two cannot drift apart."""

import json
import re
import time

import jwt
import pytest
import requests

from live import ROOT
from stream_stand_in import Faults
from support.examples import API_KEY, API_SECRET
from support.stream import stand_in_over_http

BEHAVIOURS = ROOT / "docs" / "stream-behaviour.md"
SERVER_TOKEN = jwt.encode({"server": True}, API_SECRET, algorithm="HS256")
ERROR_FIELDS = {"code", "message", "StatusCode", "duration", "more_info", "details"}


class Answer:
    def __init__(self, response: requests.Response) -> None:
        self.status, self.headers = response.status_code, response.headers
        self.body = response.json()


class Stream:
    """Raw calls to the stand-in, authenticated as the SDK's are: `call(method, path, body)`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = requests.Session()

    def call(self, method: str, path: str, body=None, **query) -> Answer:
        params = {
            "api_key": API_KEY,
            **{key: json.dumps(value) if isinstance(value, dict) else value for key, value in query.items()},
        }
        response = self.session.request(
            method, f"{self.url}{path}", params=params, json=body, headers={"Authorization": SERVER_TOKEN}, timeout=5
        )
        return Answer(response)

    # --- The steps most behaviours start from ---------------------------------------------

    def users(self, *user_ids: str) -> Answer:
        return self.call(
            "POST", "/users", {"users": {user_id: {"id": user_id, "name": user_id.title()} for user_id in user_ids}}
        )

    def channel(self, channel_id: str | None, members=(), creator: str = "ana", **data) -> Answer:
        body = {"data": {**data, "created_by": {"id": creator}, "members": [{"user_id": member} for member in members]}}
        path = "/channels/messaging/query" if channel_id is None else f"/channels/messaging/{channel_id}/query"
        return self.call("POST", path, body)

    def send(self, channel_id: str, message_id: str, text: str = "hi", user: str = "ana", **fields) -> Answer:
        body = {"message": {"id": message_id, "text": text, "user_id": user, **fields}}
        return self.call("POST", f"/channels/messaging/{channel_id}/message", body)

    def general(self, *messages: str) -> None:
        """Users ana and bo, the channel `general` of both, and `messages` sent by ana."""
        self.users("ana", "bo")
        self.channel("general", ["ana", "bo"])
        for message_id in messages:
            self.send("general", message_id)


@pytest.fixture
def stream():
    with stand_in_over_http() as (url, _):
        yield Stream(url)


def assert_error(answer: Answer, status: int, code: int | None, operation: str, detail: str) -> None:
    """Stream's error body: `status`, `code`, and a message `<operation> failed with error:
    "<detail>"` where `detail` is a regular expression."""
    assert answer.status == status, answer.body
    assert set(answer.body) >= ERROR_FIELDS
    assert answer.body["StatusCode"] == status
    if code is not None:
        assert answer.body["code"] == code
    assert re.fullmatch(f'{operation} failed with error: "{detail}"', answer.body["message"]), answer.body["message"]


# --- Users ---------------------------------------------------------------------------------


def test_b01_upserted_users_come_back_by_id(stream):
    answer = stream.users("ana", "bo")

    assert answer.status == 201
    assert set(answer.body["users"]) == {"ana", "bo"} and "duration" in answer.body
    assert answer.body["users"]["ana"]["name"] == "Ana"


def test_b02_deleting_users_answers_a_task(stream):
    stream.users("ana")

    answer = stream.call("POST", "/users/delete", {"user_ids": ["ana"], "user": "soft", "messages": "hard"})

    assert answer.status == 201
    assert answer.body["task_id"] and "duration" in answer.body


def test_b03_a_soft_deleted_user_is_not_in_query_results(stream):
    stream.users("ana", "bo")
    stream.call("POST", "/users/delete", {"user_ids": ["ana"], "user": "soft"})

    answer = stream.call("GET", "/users", payload={"filter_conditions": {"id": {"$in": ["ana", "bo"]}}})

    assert answer.status == 200
    assert [user["id"] for user in answer.body["users"]] == ["bo"]


def test_b04_querying_users_by_id_finds_exactly_that_user(stream):
    stream.users("ana", "bo")

    answer = stream.call("GET", "/users", payload={"filter_conditions": {"id": {"$eq": "bo"}}})

    assert [user["id"] for user in answer.body["users"]] == ["bo"]


@pytest.mark.parametrize("messages", ["soft", "hard"])
def test_b05_a_deleted_users_messages_are_deleted_soft_or_hard(stream, messages):
    stream.general("m-1")

    stream.call("POST", "/users/delete", {"user_ids": ["ana"], "user": "soft", "messages": messages})
    answer = stream.call("GET", "/messages/m-1", show_deleted_message="true")

    if messages == "soft":
        assert (answer.body["message"]["type"], answer.body["message"]["text"]) == ("deleted", "hi")
    else:
        assert answer.status == 404


# --- Channels: get or create -----------------------------------------------------------------


def test_b06_a_distinct_channel_is_named_by_its_members_in_any_order(stream):
    stream.users("ana", "bo")

    first = stream.channel(None, ["ana", "bo"])
    second = stream.channel(None, ["bo", "ana"], creator="bo")

    assert first.status == 201
    assert first.body["channel"]["id"].startswith("!members-")
    assert second.body["channel"]["id"] == first.body["channel"]["id"]


@pytest.mark.parametrize("members", [[], ["ana"]])
def test_b07_a_distinct_channel_needs_two_members(stream, members):
    stream.users("ana")

    answer = stream.channel(None, members)

    assert_error(answer, 400, 4, "GetOrCreateChannel", "When using member based IDs specify at least 2 members")


def test_b08_a_channel_with_an_id_answers_its_state(stream):
    stream.users("ana", "bo")

    answer = stream.channel("general", ["ana", "bo"], color="green")

    assert answer.status == 201
    assert set(answer.body) >= {"channel", "members", "messages", "duration"}
    assert answer.body["channel"]["cid"] == "messaging:general" and answer.body["channel"]["color"] == "green"
    assert [member["user_id"] for member in answer.body["members"]] == ["ana", "bo"]


def test_b09_members_that_do_not_exist_are_refused(stream):
    stream.users("ana")

    answer = stream.channel("general", ["ana", "ghost"])

    assert_error(
        answer,
        400,
        4,
        "GetOrCreateChannel",
        r"The following users are involved in channel create operation, but don't exist: \[ghost\]\. "
        r"Please create the user objects before setting up the channel\.",
    )


def test_b10_a_creator_given_as_a_user_object_need_not_exist(stream):
    stream.users("ana")

    answer = stream.channel("general", ["ana"], creator="never-upserted")

    assert answer.status == 201
    assert answer.body["channel"]["created_by"]["id"] == "never-upserted"


def test_b11_a_soft_deleted_channel_comes_back_without_its_messages(stream):
    stream.users("ana", "bo")
    stream.channel("general", ["ana", "bo"], color="green")
    stream.send("general", "m-1")
    stream.call("DELETE", "/channels/messaging/general")

    answer = stream.channel("general", ["ana"])

    assert answer.body["channel"]["deleted_at"] is None
    assert answer.body["messages"] == []
    assert answer.body["channel"]["color"] == "green"
    assert [member["user_id"] for member in answer.body["members"]] == ["ana", "bo"]


# --- Channels: members -----------------------------------------------------------------------


def test_b12_adding_members_answers_every_member(stream):
    stream.users("ana", "bo", "cy")
    stream.channel("general", ["ana"])

    answer = stream.call("POST", "/channels/messaging/general", {"add_members": [{"user_id": "bo"}, {"user_id": "cy"}]})

    assert answer.status == 201
    assert [member["user_id"] for member in answer.body["members"]] == ["ana", "bo", "cy"]


def test_b13_removing_users_that_are_not_members_succeeds(stream):
    stream.users("ana", "bo")
    stream.channel("general", ["ana"])

    answer = stream.call("POST", "/channels/messaging/general", {"remove_members": ["bo"]})

    assert answer.status == 201
    assert [member["user_id"] for member in answer.body["members"]] == ["ana"]


def test_b14_adding_a_user_that_does_not_exist_is_refused(stream):
    stream.general()

    answer = stream.call("POST", "/channels/messaging/general", {"add_members": [{"user_id": "ghost"}]})

    assert_error(
        answer,
        400,
        4,
        "UpdateChannel",
        r"The following users are involved in channel update operation, but don't exist: \[ghost\]\. "
        r"Please create the user objects before setting up the channel\.",
    )


def test_b15_a_distinct_channel_takes_no_member_outside_its_own(stream):
    stream.users("ana", "bo", "cy")
    channel_id = stream.channel(None, ["ana", "bo"]).body["channel"]["id"]
    stream.call("POST", f"/channels/messaging/{channel_id}", {"remove_members": ["bo"]})

    outsider = stream.call("POST", f"/channels/messaging/{channel_id}", {"add_members": [{"user_id": "cy"}]})
    own = stream.call("POST", f"/channels/messaging/{channel_id}", {"add_members": [{"user_id": "bo"}]})

    assert_error(
        outsider,
        403,
        17,
        "UpdateChannel",
        "cannot add members to the distinct channel they don't belong to, "
        "please create a new distinct channel with the desired members",
    )
    assert own.status == 201


def test_b16_adding_and_removing_one_user_in_one_request_is_refused(stream):
    stream.general()

    answer = stream.call(
        "POST", "/channels/messaging/general", {"add_members": [{"user_id": "bo"}], "remove_members": ["bo"]}
    )

    assert_error(answer, 400, None, "UpdateChannel", ".+")


def test_b17_adding_a_member_again_changes_nothing(stream):
    stream.general()

    answer = stream.call("POST", "/channels/messaging/general", {"add_members": [{"user_id": "bo"}]})

    assert answer.status == 201
    assert [member["user_id"] for member in answer.body["members"]] == ["ana", "bo"]


def test_b18_members_are_paged_with_offset_and_limit_in_order(stream):
    stream.users("ana", "bo", "cy", "di")
    stream.channel("general", ["ana", "bo", "cy", "di"])

    answer = stream.call(
        "GET",
        "/members",
        payload={"type": "messaging", "id": "general", "filter_conditions": {}, "offset": 1, "limit": 2},
    )

    assert answer.status == 200
    assert [member["user_id"] for member in answer.body["members"]] == ["bo", "cy"]


# --- Channels: update and delete -------------------------------------------------------------


def test_b19_a_partial_update_sets_and_unsets_custom_fields(stream):
    stream.general()
    stream.call("PATCH", "/channels/messaging/general", {"set": {"color": "blue", "age": 30}})

    answer = stream.call("PATCH", "/channels/messaging/general", {"set": {"color": "red"}, "unset": ["age"]})

    assert answer.status == 200
    assert answer.body["channel"]["color"] == "red" and "age" not in answer.body["channel"]
    assert set(answer.body) >= {"channel", "members", "duration"}


def test_b20_a_soft_delete_answers_the_channel_deleted_without_its_data(stream):
    stream.users("ana")
    stream.channel("general", ["ana"], color="green")

    answer = stream.call("DELETE", "/channels/messaging/general")

    assert answer.status == 200
    assert answer.body["channel"]["cid"] == "messaging:general"
    assert answer.body["channel"]["deleted_at"]
    assert "color" not in answer.body["channel"] and answer.body["channel"]["created_by"] is None


def test_b21_deleting_a_channel_that_does_not_exist_is_a_404(stream):
    answer = stream.call("DELETE", "/channels/messaging/nowhere", hard_delete="true")

    assert_error(answer, 404, 16, "DeleteChannel", "Can't find channel with id messaging:nowhere")


def test_b22_a_deleted_channel_is_not_in_query_results(stream):
    stream.general()
    stream.call("DELETE", "/channels/messaging/general")

    answer = stream.call("POST", "/channels", {"filter_conditions": {"cid": "messaging:general"}})

    assert answer.status == 201
    assert answer.body["channels"] == []


# --- Messages --------------------------------------------------------------------------------


def test_b23_a_message_sent_with_an_id_echoes_it(stream):
    stream.general()

    answer = stream.send("general", "m-1", "Test")

    assert answer.status == 201
    message = answer.body["message"]
    assert (message["id"], message["cid"], message["user"]["id"]) == ("m-1", "messaging:general", "ana")
    assert (message["type"], message["html"], message["silent"]) == ("regular", "<p>Test</p>\n", False)


def test_b24_a_message_id_sent_again_is_refused(stream):
    stream.general("m-1")

    answer = stream.send("general", "m-1")

    assert_error(answer, 400, 4, "SendMessage", "a message with ID m-1 already exists")


def test_b25_custom_fields_come_back_at_the_top_and_over_5_kb_are_a_413(stream):
    stream.general()

    sent = stream.send("general", "m-1", mood="happy")
    too_big = stream.send("general", "m-2", stuff="x" * 5 * 1024)

    assert sent.body["message"]["mood"] == "happy"
    assert_error(too_big, 413, 22, "SendMessage", ".+")


def test_b26_a_silent_message_stays_silent(stream):
    stream.general()

    answer = stream.send("general", "m-1", silent=True)

    assert answer.body["message"]["silent"] is True
    assert stream.call("GET", "/messages/m-1").body["message"]["silent"] is True


def test_b27_skip_push_is_taken_beside_the_message(stream):
    stream.general()

    answer = stream.call(
        "POST", "/channels/messaging/general/message", {"message": {"text": "hi", "user_id": "ana"}, "skip_push": True}
    )

    assert answer.status == 201 and answer.body["message"]["text"] == "hi"


def test_b28_a_message_to_a_channel_that_does_not_exist_is_refused(stream):
    stream.users("ana")

    answer = stream.send("nowhere", "m-1")

    assert_error(answer, 404, 16, "SendMessage", "Can't find channel with id messaging:nowhere")


def test_b29_a_message_is_read_by_id(stream):
    stream.general("m-1")

    answer = stream.call("GET", "/messages/m-1")

    assert answer.status == 200
    assert answer.body["message"]["id"] == "m-1" and "duration" in answer.body


@pytest.mark.parametrize(
    "not_found_code, status, detail",
    [(16, 404, "message with id never-sent doesn't exist"), (4, 400, "Message with id never-sent doesn't exist")],
)
def test_b30_a_message_that_does_not_exist_in_either_of_streams_forms(not_found_code, status, detail):
    with stand_in_over_http(message_not_found_code=not_found_code) as (url, _):
        answer = Stream(url).call("GET", "/messages/never-sent")

    assert_error(answer, status, not_found_code, "GetMessage", detail)


def test_b31_a_soft_deleted_message_is_read_with_show_deleted_message(stream):
    stream.general("m-1")
    stream.call("DELETE", "/messages/m-1")

    answer = stream.call("GET", "/messages/m-1", show_deleted_message="true")

    assert answer.body["message"]["text"] == "hi" and answer.body["message"]["deleted_at"]


def test_b32_a_partial_update_sets_text_and_custom_fields(stream):
    stream.general("m-1")

    answer = stream.call("PUT", "/messages/m-1", {"set": {"text": "helloworld", "awesome": True}, "user_id": "ana"})

    assert answer.status == 201
    assert (answer.body["message"]["text"], answer.body["message"]["awesome"]) == ("helloworld", True)


def test_b33_a_soft_delete_answers_the_message_deleted(stream):
    stream.general("m-1")

    answer = stream.call("DELETE", "/messages/m-1")

    assert answer.status == 200
    assert answer.body["message"]["type"] == "deleted" and answer.body["message"]["deleted_at"]


def test_b34_a_hard_delete_answers_the_message_then_it_is_gone(stream):
    stream.general("m-1")

    answer = stream.call("DELETE", "/messages/m-1", hard="true")
    after = stream.call("GET", "/messages/m-1")

    assert answer.status == 200 and answer.body["message"]["id"] == "m-1"
    assert_error(after, 404, 16, "GetMessage", "message with id m-1 doesn't exist")


@pytest.mark.parametrize(
    "not_found_code, status, detail",
    [(16, 404, "message with id m-1 doesn't exist"), (4, 400, "Message with id m-1 doesn't exist")],
)
def test_b35_deleting_a_message_that_is_gone_in_either_of_streams_forms(not_found_code, status, detail):
    with stand_in_over_http(message_not_found_code=not_found_code) as (url, _):
        stream = Stream(url)
        stream.general("m-1")
        stream.call("DELETE", "/messages/m-1", hard="true")

        answer = stream.call("DELETE", "/messages/m-1", hard="true")

    assert_error(answer, status, not_found_code, "DeleteMessage", detail)


def test_b36_messages_by_id_come_once_each_and_need_ids(stream):
    stream.general("m-1")

    twice = stream.call("GET", "/channels/messaging/general/messages", ids="m-1,m-1")
    none = stream.call("GET", "/channels/messaging/general/messages", ids="")

    assert twice.status == 200 and [message["id"] for message in twice.body["messages"]] == ["m-1"]
    assert_error(none, 400, 4, "GetManyMessages", "ids is a required field")


def test_b37_a_reaction_answers_the_message_and_the_reaction(stream):
    stream.general("m-1")

    answer = stream.call("POST", "/messages/m-1/reaction", {"reaction": {"type": "love", "user_id": "bo"}})

    assert answer.status == 201
    assert answer.body["message"]["latest_reactions"][0]["type"] == "love"
    assert (answer.body["reaction"]["message_id"], answer.body["reaction"]["type"]) == ("m-1", "love")


# --- Imports ---------------------------------------------------------------------------------


def test_b38_an_import_is_an_upload_url_a_put_and_a_task(stream):
    target = stream.call("POST", "/import_urls", {"filename": "history.jsonl"})
    upload = requests.put(target.body["upload_url"], data=b'{"type": "user", "item": {"id": "ana"}}\n', timeout=5)
    task = stream.call("POST", "/imports", {"path": target.body["path"], "mode": "upsert"})
    read = stream.call("GET", f"/imports/{task.body['import_task']['id']}")

    assert target.status == 201 and target.body["path"] and target.body["upload_url"]
    assert upload.status_code == 200
    assert task.status == 201 and task.body["import_task"]["state"] == "uploaded"
    assert task.body["import_task"]["history"] == []
    assert read.status == 200 and read.body["import_task"]["id"] == task.body["import_task"]["id"]


@pytest.mark.parametrize(
    "content, states",
    [
        (b'{"type": "user", "item": {"id": "ana"}}\n', ["analyzing", "importing", "completed"]),
        (b"not json lines\n", ["analyzing", "analyze_failed", "analyze_failed"]),
    ],
)
def test_b39_an_import_task_goes_through_streams_states(stream, content, states):
    target = stream.call("POST", "/import_urls", {"filename": "history.jsonl"})
    requests.put(target.body["upload_url"], data=content, timeout=5)
    task_id = stream.call("POST", "/imports", {"path": target.body["path"], "mode": "upsert"}).body["import_task"]["id"]

    seen = [stream.call("GET", f"/imports/{task_id}").body["import_task"]["state"] for _ in states]

    assert seen == states


# --- Rate limits and errors ------------------------------------------------------------------


@pytest.fixture
def limited():
    with stand_in_over_http(Faults(rate_limit=2, rate_window_seconds=60)) as (url, _):
        yield Stream(url)


def test_b40_answers_carry_the_rate_limit_in_whole_epoch_seconds(limited):
    first = limited.call("GET", "/users", payload={"filter_conditions": {}})
    second = limited.call("GET", "/users", payload={"filter_conditions": {}})

    reset = first.headers["X-RateLimit-Reset"]
    assert re.fullmatch(r"\d+", reset) and time.time() <= int(reset) < time.time() + 24 * 3600
    assert int(first.headers["X-RateLimit-Limit"]) == 2
    assert int(second.headers["X-RateLimit-Remaining"]) < int(first.headers["X-RateLimit-Remaining"])


def test_b41_a_429_over_the_limit_has_code_9_and_nothing_remaining(limited):
    for _ in range(2):
        limited.call("GET", "/users", payload={"filter_conditions": {}})

    over = limited.call("GET", "/users", payload={"filter_conditions": {}})
    error = limited.call("DELETE", "/channels/messaging/nowhere")

    assert_error(over, 429, 9, "QueryUsers", ".+")
    assert over.headers["X-RateLimit-Remaining"] == "0"
    assert int(over.headers["X-RateLimit-Limit"]) > 0 and int(over.headers["X-RateLimit-Reset"]) > 0
    assert "X-RateLimit-Limit" in error.headers  # error answers carry them too


def test_b42_a_retry_after_is_in_whole_seconds():
    with stand_in_over_http(Faults(fail_rate=1.0, fail_kinds=("429",), retry_after_seconds=20)) as (url, _):
        answer = Stream(url).call("POST", "/users", {"users": {"ana": {"id": "ana"}}})

    assert_error(answer, 429, 9, "UpdateUsers", ".+")
    assert answer.headers["Retry-After"] == "20"


def test_b43_posts_and_puts_answer_201_the_rest_200(stream):
    stream.general("m-1")

    statuses = [
        stream.call("PUT", "/messages/m-1", {"set": {"text": "x"}}).status,
        stream.call("GET", "/messages/m-1").status,
        stream.call("PATCH", "/channels/messaging/general", {"set": {"color": "red"}}).status,
        stream.call("DELETE", "/messages/m-1").status,
    ]

    assert stream.users("cy").status == 201
    assert statuses == [201, 200, 200, 200]


def test_b44_an_error_names_its_operation_in_streams_body(stream):
    answer = stream.call("PUT", "/messages/never-sent", {"set": {"text": "x"}})

    assert set(answer.body) >= ERROR_FIELDS
    assert re.fullmatch(r'[A-Z][A-Za-z]+ failed with error: ".*"', answer.body["message"])
    assert answer.body["message"].startswith("UpdateMessagePartial failed with error: ")


def test_b45_a_wrong_key_or_token_is_a_401_in_streams_body(stream):
    wrong_key = stream.session.get(
        f"{stream.url}/messages/m-1", params={"api_key": "another"}, headers={"Authorization": SERVER_TOKEN}, timeout=5
    )
    wrong_token = stream.session.get(
        f"{stream.url}/messages/m-1",
        params={"api_key": API_KEY},
        headers={"Authorization": jwt.encode({"server": True}, "another-secret-" + "x" * 32, algorithm="HS256")},
        timeout=5,
    )

    for response in (wrong_key, wrong_token):
        assert response.status_code == 401
        assert set(response.json()) >= ERROR_FIELDS


# --- The record and its tests ----------------------------------------------------------------


def test_every_recorded_behaviour_has_its_test_and_its_source():
    text = BEHAVIOURS.read_text()
    sections = re.split(r"^### ", text, flags=re.MULTILINE)[1:]
    recorded = {section[:3] for section in sections if re.match(r"B\d\d ", section)}
    tested = {name[5:8].upper() for name in globals() if re.match(r"test_b\d\d_", name)}

    assert len(recorded) >= 25
    assert recorded == tested
    for section in sections:
        if re.match(r"B\d\d ", section):
            assert "**Source" in section, section.splitlines()[0]
