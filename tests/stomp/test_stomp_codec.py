"""The sans-IO STOMP codec: parsing in any chunking, escaping, content-length, heart-beats, limits."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stompengine.stomp import errors
from stompengine.stomp.codec import (
    FrameParser,
    encode,
    encode_message_tail,
    escape,
    message_prefix,
    splice_message,
    unescape,
)
from stompengine.stomp.frames import ALL_COMMANDS, Escaping, Frame, frame


def parse_all(data: bytes, **kwargs) -> list[Frame]:
    return FrameParser(**kwargs).feed(data)


def parse_bytewise(data: bytes, **kwargs) -> list[Frame]:
    parser = FrameParser(**kwargs)
    frames: list[Frame] = []
    for i in range(len(data)):
        frames += parser.feed(data[i : i + 1])
    return frames


def outcome(parse, data: bytes, **kwargs):
    """Frames, or the error class a parse ends in (to compare chunkings)."""
    try:
        return parse(data, **kwargs)
    except errors.FrameError as exc:
        return type(exc)


# -- basic frames -------------------------------------------------------------------------------------


def test_parses_a_frame_with_headers_and_body():
    data = b"SEND\ndestination:/topic/a\ncontent-type:text/plain\n\nhello\0"
    assert parse_all(data) == [Frame("SEND", (("destination", "/topic/a"), ("content-type", "text/plain")), b"hello")]


def test_accepts_crlf_line_endings():
    data = b"SEND\r\ndestination:/topic/a\r\n\r\nhi\0"
    assert parse_all(data) == [Frame("SEND", (("destination", "/topic/a"),), b"hi")]


def test_heartbeat_eols_between_frames_are_skipped():
    data = b"\n\r\n\nSEND\ndestination:/a\n\n\0\n\n\r\nSEND\ndestination:/b\n\n\0\n"
    frames = parse_all(data)
    assert [f.get("destination") for f in frames] == ["/a", "/b"]


def test_only_heartbeats_yield_no_frames():
    assert parse_all(b"\n\n\r\n") == []


def test_content_length_allows_nul_in_body():
    body = b"a\0b\0c"
    data = b"SEND\ndestination:/a\ncontent-length:5\n\n" + body + b"\0"
    assert parse_all(data)[0].body == body


def test_content_length_without_trailing_nul_is_an_error():
    with pytest.raises(errors.FrameNotTerminated):
        parse_all(b"SEND\ndestination:/a\ncontent-length:2\n\nabc\0")


@pytest.mark.parametrize("value", ["-1", "abc", "1_0", "", " ", "1e3", "١٢"])
def test_invalid_content_length_is_an_error(value):
    with pytest.raises(errors.InvalidContentLength):
        parse_all(f"SEND\ndestination:/a\ncontent-length:{value}\n\n\0".encode())


def test_repeated_headers_first_one_wins():
    parsed = parse_all(b"SEND\ndestination:/first\ndestination:/second\n\n\0")[0]
    assert parsed.get("destination") == "/first"
    assert parsed.headers == (("destination", "/first"), ("destination", "/second"))


def test_header_value_may_contain_colons_after_the_first():
    parsed = parse_all(b"CONNECT\nhost:a:b:c\n\n\0")[0]
    assert parsed.get("host") == "a:b:c"


def test_unknown_command_is_an_error():
    with pytest.raises(errors.UnknownCommand):
        parse_all(b"HELLO\n\n\0")


def test_server_commands_are_refused_by_a_client_command_parser():
    from stompengine.stomp.frames import CLIENT_COMMANDS

    with pytest.raises(errors.UnknownCommand):
        parse_all(b"MESSAGE\n\n\0", commands=CLIENT_COMMANDS)


def test_header_without_colon_is_an_error():
    with pytest.raises(errors.InvalidHeader):
        parse_all(b"SEND\nnocolon\n\n\0")


@pytest.mark.parametrize("parse", [parse_all, parse_bytewise], ids=["whole", "bytewise"])
@pytest.mark.parametrize(
    "data",
    [
        b"SEND\ndestination:/topic/a\nx-forged:a\0b\n\nhello\0",
        b"SEND\ndestination:/topic/a\0MESSAGE\n\nhello\0",
        b"SEND\ndestination:/topic/a\nx\0y:v\n\nhello\0",
        b"SEND\r\ndestination:/topic/a\r\nx:\0\r\n\r\nhello\0",
    ],
    ids=["value", "forged-frame", "name", "crlf"],
)
def test_nul_inside_a_header_is_an_error(parse, data):
    with pytest.raises(errors.InvalidHeader, match="NUL"):
        parse(data)


@given(
    prefix=st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0\n\r:\\"), max_size=20),
    suffix=st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0\n\r\\"), max_size=20),
    chunk=st.integers(min_value=1, max_value=16),
)
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
def test_nul_anywhere_in_a_header_value_is_refused_in_any_chunking(prefix, suffix, chunk):
    data = f"SEND\ndestination:/topic/a\nx:{prefix}\0{suffix}\n\nbody\0".encode()
    parser = FrameParser()
    with pytest.raises(errors.InvalidHeader):
        for i in range(0, len(data), chunk):
            parser.feed(data[i : i + chunk])


def test_header_with_invalid_utf8_is_an_error():
    with pytest.raises(errors.InvalidEncoding):
        parse_all(b"SEND\ndestination:\xff\xfe\n\n\0")


def test_lone_carriage_return_between_frames_is_an_error():
    with pytest.raises(errors.MalformedFrame):
        parse_all(b"\rSEND\n\n\0")


@pytest.mark.parametrize(
    "data",
    [b"\x01\x02 not a frame\x00", b"\x00", b"CONNECT\x00", b"\n\nSUB\x00SCRIBE"],
)
def test_nul_before_the_command_line_ends_is_a_malformed_frame_at_once(data):
    # The frame ends (NUL) before its command line does: no LF will ever come, so waiting for one would
    # hold the connection open with no answer. Refused as soon as the NUL arrives, in any chunking.
    with pytest.raises(errors.MalformedFrame):
        parse_all(data)
    parser = FrameParser()
    nul = data.index(0)
    for i in range(nul):
        assert parser.feed(data[i : i + 1]) == []
    with pytest.raises(errors.MalformedFrame):
        parser.feed(data[nul : nul + 1])


def test_parser_stays_failed_after_an_error():
    parser = FrameParser()
    with pytest.raises(errors.UnknownCommand):
        parser.feed(b"NOPE\n\n\0")
    with pytest.raises(errors.UnknownCommand):
        parser.feed(b"SEND\ndestination:/a\n\n\0")


def test_parser_compacts_its_buffer():
    parser = FrameParser()
    for _ in range(100):
        assert len(parser.feed(b"SEND\ndestination:/a\n\nxyz\0")) == 1
    assert parser.buffered == 0


# -- escaping ---------------------------------------------------------------------------------------------


def test_v12_header_escapes_are_decoded():
    parsed = parse_all(b"SEND\ndestination:/a\nk\\cey:a\\nb\\rc\\\\d\\ce\n\n\0")[0]
    assert parsed.get("k:ey") == "a\nb\rc\\d:e"


def test_undefined_escape_is_an_error():
    with pytest.raises(errors.InvalidEscape):
        parse_all(b"SEND\ndestination:/a\nx:\\t\n\n\0")


def test_trailing_backslash_is_an_error():
    with pytest.raises(errors.InvalidEscape):
        parse_all(b"SEND\ndestination:/a\nx:abc\\\n\n\0")


def test_v11_has_no_carriage_return_escape():
    with pytest.raises(errors.InvalidEscape):
        parse_all(b"SEND\nx:\\r\n\n\0", escaping=Escaping.V11)


def test_v10_does_not_unescape():
    parsed = parse_all(b"SEND\nx:a\\nb\n\n\0", escaping=Escaping.NONE)[0]
    assert parsed.get("x") == "a\\nb"


def test_connect_and_connected_headers_are_never_unescaped():
    assert parse_all(b"CONNECT\npasscode:a\\nb\\t\n\n\0")[0].get("passcode") == "a\\nb\\t"
    assert parse_all(b"CONNECTED\nserver:x\\c\n\n\0")[0].get("server") == "x\\c"


def test_encoder_escapes_except_in_connect_and_connected():
    assert b"k\\cey:a\\nb\\rc\\\\d\\ce\n" in encode(Frame("MESSAGE", (("k:ey", "a\nb\rc\\d:e"),)))
    assert b"server:a:b\n" in encode(Frame("CONNECTED", (("server", "a:b"),)))


def test_v10_encoding_replaces_newlines_so_framing_survives():
    data = encode(Frame("MESSAGE", (("x", "a\nb"),)), Escaping.NONE)
    assert parse_all(data, escaping=Escaping.NONE)[0].get("x") == "a b"


@given(st.text())
def test_escape_round_trips(text):
    assert unescape(escape(text, Escaping.V12), Escaping.V12) == text


# -- limits --------------------------------------------------------------------------------------------


def test_frame_too_large_by_body():
    with pytest.raises(errors.FrameTooLarge):
        parse_all(b"SEND\n\n" + b"x" * 2000 + b"\0", max_frame_size=1024)


def test_frame_too_large_by_content_length_is_detected_before_the_body_arrives():
    parser = FrameParser(max_frame_size=1024)
    with pytest.raises(errors.FrameTooLarge):
        parser.feed(b"SEND\ncontent-length:100000\n\n")


def test_too_many_headers():
    headers = b"".join(b"h%d:v\n" % i for i in range(9))
    with pytest.raises(errors.TooManyHeaders):
        parse_all(b"SEND\n" + headers + b"\n\0", max_headers=8)


def test_header_too_long():
    with pytest.raises(errors.HeaderTooLong):
        parse_all(b"SEND\nx:" + b"v" * 300 + b"\n\n\0", max_header_length=256)


def test_header_too_long_is_detected_before_its_line_ends():
    parser = FrameParser(max_header_length=256)
    with pytest.raises(errors.HeaderTooLong):
        parser.feed(b"SEND\nx:" + b"v" * 300)


def test_frame_at_exactly_the_limit_is_accepted():
    # "SEND\n" (5) + "\n" (1) + body + NUL (1)
    body = b"x" * (1024 - 7)
    assert parse_all(b"SEND\n\n" + body + b"\0", max_frame_size=1024)[0].body == body


def test_limits_give_the_same_error_in_any_chunking():
    data = b"SEND\n" + b"a:" + b"b" * 600 + b"\n" * 2 + b"\0"
    assert outcome(parse_all, data, max_frame_size=500, max_header_length=300) is errors.HeaderTooLong
    assert outcome(parse_bytewise, data, max_frame_size=500, max_header_length=300) is errors.HeaderTooLong
    assert outcome(parse_all, data, max_frame_size=200, max_header_length=300) is errors.FrameTooLarge
    assert outcome(parse_bytewise, data, max_frame_size=200, max_header_length=300) is errors.FrameTooLarge


# -- MESSAGE splicing ---------------------------------------------------------------------------------------


def test_spliced_message_equals_a_directly_encoded_one():
    headers = (("destination", "/topic/a"), ("message-id", "m-1"), ("content-type", "text/plain"))
    tail = encode_message_tail(headers, b"body\0x")
    data = splice_message(message_prefix("sub:1"), tail, b"ack:7\n")
    parsed = parse_all(data)[0]
    assert parsed == Frame(
        "MESSAGE",
        (("subscription", "sub:1"), ("ack", "7"), *headers, ("content-length", "6")),
        b"body\0x",
    )


# -- property tests ------------------------------------------------------------------------------------------

# No NUL: it ends a frame, so a header holding one is refused (test_nul_inside_a_header_is_an_error).
header_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=20)
commands = st.sampled_from(sorted(ALL_COMMANDS - {"CONNECT", "CONNECTED"}))


@st.composite
def frames(draw):
    command = draw(commands)
    headers = draw(st.lists(st.tuples(header_text.filter(bool), header_text), max_size=6))
    headers = [(k, v) for k, v in headers if k != "content-length"]
    body = draw(st.binary(max_size=200))
    if b"\0" in body or draw(st.booleans()):
        headers.append(("content-length", str(len(body))))
    return Frame(command, tuple(headers), body)


@st.composite
def chunkings(draw, data: bytes):
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    pieces, last = [], 0
    for cut in [*cuts, len(data)]:
        pieces.append(data[last:cut])
        last = cut
    return pieces


@given(st.lists(frames(), min_size=1, max_size=5), st.data())
@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=200)
def test_encode_then_parse_round_trips_in_any_chunking(frame_list, data):
    eols = data.draw(st.lists(st.sampled_from([b"", b"\n", b"\r\n", b"\n\n"]), min_size=len(frame_list)))
    stream = b"".join(eol + encode(f) for f, eol in zip(frame_list, eols, strict=False))
    parser = FrameParser(max_frame_size=1 << 20)
    parsed: list[Frame] = []
    for piece in data.draw(chunkings(stream)):
        parsed += parser.feed(piece)
    assert parsed == frame_list
    assert parse_bytewise(stream, max_frame_size=1 << 20) == frame_list


@given(st.binary(max_size=400))
@settings(max_examples=300)
def test_garbage_raises_only_codec_errors(data):
    with contextlib.suppress(errors.FrameError):
        parse_all(data, max_frame_size=1024, max_headers=8, max_header_length=256)


@given(st.lists(frames(), max_size=3), st.binary(max_size=300), st.data())
@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
def test_any_chunking_gives_the_same_frames_or_error(frame_list, garbage, data):
    stream = b"".join(encode(f) for f in frame_list) + garbage
    limits = {"max_frame_size": 1024, "max_headers": 4, "max_header_length": 64}
    whole = outcome(parse_all, stream, **limits)
    assert outcome(parse_bytewise, stream, **limits) == whole
    parser = FrameParser(**limits)
    chunked: list[Frame] = []
    try:
        for piece in data.draw(chunkings(stream)):
            chunked += parser.feed(piece)
        result = chunked
    except errors.FrameError as exc:
        result = type(exc)
    assert result == whole


def test_frame_helper_adds_content_length():
    built = frame("SEND", {"destination": "/a"}, "héllo")
    assert built.get("content-length") == str(len("héllo".encode()))
