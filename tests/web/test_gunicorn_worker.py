"""The gunicorn worker's body read ahead (web/gunicorn_worker.py): what the app reads of it is
the body, whole, in whatever pieces it asks for, across the end of what was read ahead."""

import io

import pytest

from stream_backend.web.gunicorn_worker import PrereadBody

BODY = b'{"a": 1}\n{"b": 2}\nthe rest, still on the connection\n'


@pytest.mark.parametrize("ahead", [0, 5, 9, 18, len(BODY)])
def test_reads_in_any_pieces_give_the_whole_body(ahead):
    for size in (1, 3, 7, 100):
        body, pieces = PrereadBody(BODY[:ahead], io.BytesIO(BODY[ahead:])), []
        while piece := body.read(size):
            pieces.append(piece)
        assert b"".join(pieces) == BODY


@pytest.mark.parametrize("ahead", [0, 5, 9, 18, len(BODY)])
def test_read_all_readline_and_iteration_give_the_whole_body(ahead):
    assert PrereadBody(BODY[:ahead], io.BytesIO(BODY[ahead:])).read() == BODY
    assert b"".join(PrereadBody(BODY[:ahead], io.BytesIO(BODY[ahead:]))) == BODY
    assert b"".join(PrereadBody(BODY[:ahead], io.BytesIO(BODY[ahead:])).readlines()) == BODY


def test_what_gunicorn_asks_of_the_body_beyond_reading_is_the_connection_s_body():
    rest = io.BytesIO(b"")
    rest.failed = True  # gunicorn's Body after a malformed chunk: the connection must close
    assert PrereadBody(b"", rest).failed is True


@pytest.mark.parametrize("ahead", [0, 5, 9, 18, len(BODY)])
def test_a_line_cut_by_the_end_of_what_was_read_ahead_is_read_whole(ahead):
    body = PrereadBody(BODY[:ahead], io.BytesIO(BODY[ahead:]))
    assert [body.readline(), body.readline(), body.readline(), body.readline()] == [*BODY.splitlines(True), b""]
