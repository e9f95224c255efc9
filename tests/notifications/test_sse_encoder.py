"""The SSE encoder and parser, byte by byte, with no server: framing, multi-line data, limits, round trips."""

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifications.sse import Event, SSEEncodeError, SSEParser, encode_comment, encode_event, encode_retry


def test_event_with_id_name_and_data_is_framed_exactly():
    assert encode_event(Event(data='{"a":1}', event="mention", id="42")) == b'id: 42\nevent: mention\ndata: {"a":1}\n\n'


def test_event_without_name_or_id_is_only_data():
    assert encode_event(Event(data="hello")) == b"data: hello\n\n"


@pytest.mark.parametrize("text", ["a\nb\nc", "a\r\nb\r\nc", "a\rb\rc", "a\nb\r\nc"])
def test_multi_line_data_becomes_one_data_line_per_line_whatever_the_line_break(text):
    assert encode_event(Event(data=text)) == b"data: a\ndata: b\ndata: c\n\n"


def test_empty_lines_inside_data_are_kept_as_empty_data_lines():
    assert encode_event(Event(data="a\n\nb\n")) == b"data: a\ndata: \ndata: b\ndata: \n\n"
    assert encode_event(Event(data="")) == b"data: \n\n"


def test_leading_space_in_data_survives_because_the_separator_space_is_always_written():
    encoded = encode_event(Event(data=" indented"))
    assert encoded == b"data:  indented\n\n"
    assert SSEParser().feed(encoded) == [Event(data=" indented")]


def test_non_ascii_data_is_utf8():
    assert encode_event(Event(data="안녕 ☃")) == "data: 안녕 ☃\n\n".encode()


def test_retry_hint_inside_an_event_and_alone():
    assert encode_event(Event(data="x", retry=3000)) == b"retry: 3000\ndata: x\n\n"
    assert encode_retry(2500) == b"retry: 2500\n\n"


@pytest.mark.parametrize("bad", [-1, 1.5, "10", True])
def test_retry_must_be_a_non_negative_whole_number(bad):
    with pytest.raises(SSEEncodeError):
        encode_retry(bad)


def test_comments_are_colon_lines_and_the_empty_comment_is_the_heartbeat():
    assert encode_comment() == b":\n\n"
    assert encode_comment("keep-alive") == b": keep-alive\n\n"
    assert encode_comment("a\nb") == b": a\n: b\n\n"


@pytest.mark.parametrize("field", ["id", "event"])
@pytest.mark.parametrize("value", ["a\nb", "a\rb", "a\r\nb"])
def test_line_breaks_in_id_or_event_name_are_refused(field, value):
    with pytest.raises(SSEEncodeError):
        encode_event(Event(data="x", **{field: value}))


def test_nul_in_id_and_empty_event_name_are_refused():
    with pytest.raises(SSEEncodeError):
        encode_event(Event(data="x", id="1\x002"))
    with pytest.raises(SSEEncodeError):
        encode_event(Event(data="x", event=""))


def test_parser_follows_browser_rules():
    parser = SSEParser()
    stream = (
        b"\xef\xbb\xbfretry: 1000\n\n"  # BOM, then a retry hint with no data: no event
        b": heart-beat\n\n"
        b"id: 7\nevent: mention\ndata:no-space\ndata: two\n\n"
        b"data: plain\r\n\r\n"
        b"unknown: field\nid: 8\n\n"  # an id with no data: no event, but lastEventId moves
        b"data: tail"  # not finished: no event yet
    )
    assert parser.feed(stream) == [Event(data="no-space\ntwo", event="mention", id="7"), Event(data="plain")]
    assert parser.retry == 1000
    assert parser.comments == ["heart-beat"]
    assert parser.last_event_id == "8"
    assert parser.feed(b"\n\n") == [Event(data="tail")]


def _feed_in_chunks(data: bytes, sizes: list[int]) -> tuple[SSEParser, list[Event]]:
    parser = SSEParser()
    events: list[Event] = []
    i = 0
    for size in sizes:
        events += parser.feed(data[i : i + size])
        i += size
    events += parser.feed(data[i:])
    return parser, events


def test_parser_gives_the_same_events_fed_one_byte_at_a_time_including_split_crlf_and_bom():
    data = b"\xef\xbb\xbfid: 1\r\nevent: a\r\ndata: x\r\ndata: y\r\n\r\n:c\r\rdata: z\r\r"
    _, whole = _feed_in_chunks(data, [])
    _, bytewise = _feed_in_chunks(data, [1] * len(data))
    assert whole == bytewise == [Event(data="x\ny", event="a", id="1"), Event(data="z")]


_text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=200)
_name = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n\x00"), min_size=1, max_size=30)


@given(
    data=_text,
    event=st.one_of(st.none(), _name),
    event_id=st.one_of(st.none(), _name),
    seed=st.integers(0, 2**32),
)
def test_round_trip_through_the_parser_in_random_chunks(data, event, event_id, seed):
    encoded = encode_event(Event(data=data, event=event, id=event_id))
    rng = random.Random(seed)
    sizes = [rng.randint(1, 7) for _ in range(len(encoded))]
    parser, events = _feed_in_chunks(encoded, sizes)
    expected_data = "\n".join(data.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    # Exact, leading spaces included: the encoder always writes the one space the parser strips.
    assert events == [Event(data=expected_data, event=event, id=event_id)]
    assert parser.last_event_id == (event_id or "")


@given(st.binary(max_size=300))
def test_parser_never_crashes_on_garbage(garbage):
    parser = SSEParser()
    for event in parser.feed(garbage) + parser.feed(b"\n\n"):
        assert isinstance(event.data, str)
