"""The sans-I/O smux machine (gkcp._smux_proto), without a network: frames
byte for byte (by hand from smux 1.5.16's frame.go/session.go/stream.go, and
as Go smux itself writes them), stream states, flow control, bad frames."""
import struct

import pytest

from gkcp import _smux_proto as sp
from gkcp._smux_proto import (
    CMD_FIN, CMD_NOP, CMD_PSH, CMD_SYN, CMD_UPD, DataReceived, KeepaliveReceived, Protocol, ProtocolError,
    StreamEnded, StreamIdsExhausted, StreamOpened, StreamRefused, WindowUpdated, encode_frame)
from smuxpeer import capture


def frame(version, cmd, sid, payload=b""):
    """A frame built field by field: |ver|cmd|len u16le|sid u32le|payload."""
    return (bytes([version, cmd]) + len(payload).to_bytes(2, "little") + sid.to_bytes(4, "little")
            + payload)


def upd(version, sid, consumed, window):
    return frame(version, CMD_UPD, sid, consumed.to_bytes(4, "little") + window.to_bytes(4, "little"))


def wire(parts):
    return b"".join(bytes(p) for p in parts)


def pair(version=1, **options):
    return Protocol(client=True, version=version, **options), Protocol(client=False, version=version, **options)


def opened(version=1, **options):
    """A server machine that accepted stream 3 from a client machine."""
    client, server = pair(version, **options)
    sid = client.open_stream()
    assert server.receive_data(client.data_to_send()) == [StreamOpened(sid)]
    assert server.accept() == sid
    return client, server, sid


# ------------------------------------------------------------------ frames

def test_frame_bytes_by_hand():
    assert encode_frame(1, CMD_SYN, 3) == bytes.fromhex("0100000003000000")
    assert encode_frame(2, CMD_PSH, 0x01020304, b"ab") == bytes.fromhex("0202020004030201") + b"ab"
    assert encode_frame(1, CMD_NOP, 0) == bytes.fromhex("0103000000000000")
    assert sp.HEADER_SIZE == 8


def test_stream_ids_as_smux_allocates_them():
    client, server = pair()
    assert [client.open_stream() for _ in range(3)] == [3, 5, 7]
    assert [server.open_stream() for _ in range(3)] == [2, 4, 6]
    assert client.data_to_send() == b"".join(frame(1, CMD_SYN, sid) for sid in (3, 5, 7))
    assert client.stats["streams_opened"] == 3


@pytest.mark.parametrize("client_side, last", [(True, 0xFFFFFFFF), (False, 0xFFFFFFFE)])
def test_stream_ids_exhausted(client_side, last):
    proto = Protocol(client=client_side)
    proto._last_own_sid = last - 2  # white-box: skip two billion streams
    assert proto.open_stream() == last
    for _ in range(2):  # and stays exhausted
        with pytest.raises(StreamIdsExhausted):
            proto.open_stream()
    assert isinstance(StreamIdsExhausted(), ConnectionError)


def test_frame_data_splits_at_max_frame_size():
    client, server = pair(max_frame_size=4)
    sid = client.open_stream()
    parts, n = client.frame_data(sid, b"abcdefghij")
    assert n == 10
    assert wire(parts) == (frame(1, CMD_SYN, sid) + frame(1, CMD_PSH, sid, b"abcd")
                           + frame(1, CMD_PSH, sid, b"efgh") + frame(1, CMD_PSH, sid, b"ij"))
    assert client.stats["bytes_out"] == 10


def test_frame_data_takes_any_buffer():
    client, _ = pair()
    sid = client.open_stream()
    client.data_to_send()
    parts, n = client.frame_data(sid, memoryview(bytearray(b"xyz")))
    assert (wire(parts), n) == (frame(1, CMD_PSH, sid, b"xyz"), 3)
    parts, n = client.frame_data(sid, b"")
    assert (parts, n) == ([], 0)


@pytest.mark.parametrize("version", [1, 2])
def test_matches_go_smux_capture(go_smux_peer_bin, version):
    """The exchange of `smuxpeer capture`, run between two machines, gives
    exactly the bytes Go smux wrote each way."""
    go_c2s, go_s2c = capture(go_smux_peer_bin, version)
    client, server = pair(version)
    c2s, s2c = [], []
    sid = client.open_stream()
    c2s += client.frame_data(sid, b"hello")[0]
    server.receive_data(wire(c2s))
    assert server.accept() == sid and server.read(sid, 16) == b"hello"
    parts, _ = server.frame_data(sid, b"hi")
    s2c += parts
    server.close_stream(sid)
    s2c.append(server.data_to_send())
    client.receive_data(wire(s2c))
    assert client.read(sid, 16) == b"hi" and client.at_eof(sid)
    client.close_stream(sid)
    c2s.append(client.data_to_send())
    assert wire(c2s) == go_c2s
    assert wire(s2c) == go_s2c
    expected_c2s = frame(version, CMD_SYN, 3) + frame(version, CMD_PSH, 3, b"hello")
    expected_s2c = b""
    if version == 2:  # each side's first read reports its consumption and window
        expected_c2s += upd(2, 3, 2, 65536)
        expected_s2c += upd(2, 3, 5, 65536)
    expected_c2s += frame(version, CMD_FIN, 3)
    expected_s2c += frame(version, CMD_PSH, 3, b"hi") + frame(version, CMD_FIN, 3)
    assert (go_c2s, go_s2c) == (expected_c2s, expected_s2c)


# --------------------------------------------------------------- receiving

def test_events_whatever_the_split():
    client, server = pair(version=2)
    sid = client.open_stream()
    data = wire(client.frame_data(sid, bytes(range(256)) * 300)[0])
    data += frame(2, CMD_NOP, 0) + upd(2, sid, 0, 1000) + frame(2, CMD_FIN, sid)
    client._streams[sid].num_written = 0  # the UPD above acknowledges nothing: fine

    def run(pieces):
        proto = Protocol(client=False, version=2)
        events = []
        for piece in pieces:
            events += proto.receive_data(piece)
        return events, proto.read(sid, 1 << 20)

    whole = run([data])
    assert whole[0][0] == StreamOpened(sid)
    assert whole[0][-3:] == [KeepaliveReceived(), WindowUpdated(sid, 0, 1000), StreamEnded(sid)]
    assert sum(e.size for e in whole[0] if isinstance(e, DataReceived)) == 76800
    assert whole[1] == bytes(range(256)) * 300
    assert run([data[i:i + 1] for i in range(len(data))]) == whole
    assert run([data[:5], data[5:8], data[8:40000], data[40000:]]) == whole


def test_data_and_eof():
    client, server, sid = opened()
    server.receive_data(wire(client.frame_data(sid, b"abc")[0]))
    assert server.buffered(sid) == 3 and not server.at_eof(sid)
    client.close_write(sid)
    assert server.receive_data(client.data_to_send()) == [StreamEnded(sid)]
    assert server.remote_fin(sid) and not server.at_eof(sid)  # data first
    assert server.read(sid, 2) == b"ab"
    assert server.read(sid, 2) == b"c"
    assert server.at_eof(sid) and server.read(sid, 10) == b""


def test_read_and_read_into_across_frames():
    client, server, sid = opened(max_frame_size=3)
    server.receive_data(wire(client.frame_data(sid, b"0123456789")[0]))
    assert server.read(sid, 4) == b"0123"
    buf = bytearray(5)
    assert server.read_into(sid, memoryview(buf)) == 5 and buf == b"45678"
    assert server.read(sid, 0) == b""
    assert server.read(sid, 100) == b"9"
    assert server.receive_budget == server.max_receive_buffer


def test_receive_budget_is_smux_token_bucket():
    client, server, sid = opened(max_receive_buffer=100, max_stream_buffer=100)
    server.receive_data(wire(client.frame_data(sid, b"x" * 150)[0]))
    assert server.receive_budget == -50  # one receive_data may overshoot; the driver stops reading
    server.read(sid, 60)
    assert server.receive_budget == 10
    server.close_stream(sid)  # unread data gives its room back
    assert server.receive_budget == 100


def test_repeated_fin_late_data_and_closed_streams_are_dropped():
    client, server, sid = opened()
    client.close_write(sid)
    server.receive_data(client.data_to_send())
    # kcptun's Go side can send a PSH that lost the race against its own FIN
    late = frame(1, CMD_PSH, sid, b"late") + frame(1, CMD_FIN, sid) + frame(1, CMD_SYN, sid)
    assert server.receive_data(late) == []
    assert server.at_eof(sid) and server.receive_budget == server.max_receive_buffer
    server.close_stream(sid)
    # the peer does not know yet: its frames for the stream are dropped
    assert server.receive_data(frame(1, CMD_PSH, sid, b"more") + frame(1, CMD_FIN, sid)) == []
    own = server.open_stream()
    server.close_stream(own)
    assert server.receive_data(frame(1, CMD_PSH, own, b"x")) == []
    assert server.stats["dropped_frames"] == 6
    assert server.stats["dropped_bytes"] == 9
    assert server.receive_budget == server.max_receive_buffer


def test_empty_psh_and_nop_are_ignored_like_smux():
    _, server = pair()
    events = server.receive_data(frame(1, CMD_PSH, 99) + frame(1, CMD_NOP, 0) + frame(1, CMD_NOP, 12345))
    assert events == [KeepaliveReceived(), KeepaliveReceived()]
    assert server.stats["keepalives_in"] == 2


def test_syn_backlog_refuses_with_fin():
    client, server = pair(backlog=2)
    sids = [client.open_stream() for _ in range(3)]
    events = server.receive_data(client.data_to_send())
    assert events == [StreamOpened(sids[0]), StreamOpened(sids[1]), StreamRefused(sids[2])]
    assert server.data_to_send() == frame(1, CMD_FIN, sids[2])
    assert server.stats["streams_refused"] == 1
    assert server.receive_data(frame(1, CMD_PSH, sids[2], b"lost")) == []  # dropped, not an error
    assert server.accept() == sids[0]
    events = server.receive_data(frame(1, CMD_SYN, 9))  # room again
    assert events == [StreamOpened(9)]
    assert server.num_streams == 3
    server.close_stream(sids[1])  # closed before accept: accept skips it
    assert server.accept() == 9 and server.accept() is None


# ------------------------------------------------------------- flow control

def test_v2_window_initial_guess_and_updates():
    client, server, sid = opened(version=2)
    assert client.send_window(sid) == 262144
    assert client.frame_data(sid, b"r" * 17)[1] == 17
    parts, n = client.frame_data(sid, b"y" * 300000)
    assert n == 262127  # no byte past the window (regression: the last frame overran it)
    assert len(wire(parts)) == 262127 + 8 * 8
    assert client.send_window(sid) == 0
    assert client.frame_data(sid, b"y") == ([], 0)
    assert client.receive_data(upd(2, sid, 100000, 65536)) == [WindowUpdated(sid, 100000, 65536)]
    assert client.send_window(sid) == 0  # 162144 in flight > 65536
    client.receive_data(upd(2, sid, 262144, 65536))
    assert client.send_window(sid) == 65536
    client.receive_data(upd(2, sid, 262144, 0x90000000))  # absurd windows are capped, not negative
    assert client.send_window(sid) == 0x7FFFFFFF
    assert client.stats["window_updates_in"] == 3


def test_v2_window_counters_wrap():
    client, server, sid = opened(version=2)
    stream = client._streams[sid]
    stream.num_written = stream.peer_consumed = 0xFFFFFFF0  # white-box: 4 GiB already sent
    assert client.frame_data(sid, b"z" * 32)[1] == 32
    assert stream.num_written == 0x10
    client.receive_data(upd(2, sid, 0x8, 64))
    assert client.send_window(sid) == 64 - 8


def test_v2_upd_sent_at_first_read_then_every_half_window():
    client, server, sid = opened(version=2, max_stream_buffer=1000)
    server.receive_data(wire(client.frame_data(sid, b"q" * 5000)[0]))
    server.read(sid, 10)
    assert server.data_to_send() == upd(2, sid, 10, 1000)
    server.read(sid, 489)
    assert server.data_to_send() == b""  # 489 < 500
    server.read(sid, 11)
    assert server.data_to_send() == upd(2, sid, 510, 1000)
    server.read_into(sid, memoryview(bytearray(600)))
    assert server.data_to_send() == upd(2, sid, 1110, 1000)
    assert server.stats["window_updates_out"] == 3


def test_v1_has_no_window_and_no_upd():
    client, server, sid = opened(version=1)
    parts, n = client.frame_data(sid, b"w" * 1_000_000)
    assert n == 1_000_000
    server.receive_data(wire(parts))
    assert server.read(sid, 1 << 20) == b"w" * 1_000_000
    assert not server.has_data_to_send


def test_shutdown_read_drops_and_counts_as_read():
    client, server, sid = opened(version=2, max_stream_buffer=1000)
    server.receive_data(wire(client.frame_data(sid, b"a" * 300)[0]))
    server.shutdown_read(sid)
    assert server.at_eof(sid) and server.read(sid, 10) == b""
    assert server.receive_budget == server.max_receive_buffer
    assert server.data_to_send() == upd(2, sid, 300, 1000)  # the writer is not stalled
    server.receive_data(wire(client.frame_data(sid, b"b" * 300)[0]))
    assert server.data_to_send() == b""  # less than half a window since the last UPD
    server.receive_data(wire(client.frame_data(sid, b"c" * 300)[0]))
    assert server.receive_budget == server.max_receive_buffer
    assert server.data_to_send() == upd(2, sid, 900, 1000)


def test_close_write_once_then_broken_pipe():
    client, server, sid = opened()
    assert client.close_write(sid) is True
    assert client.close_write(sid) is False
    assert client.data_to_send() == frame(1, CMD_FIN, sid)
    with pytest.raises(BrokenPipeError):
        client.frame_data(sid, b"x")
    client.close_stream(sid)
    assert client.data_to_send() == b""  # FIN not repeated
    with pytest.raises(KeyError):
        client.read(sid, 1)


def test_control_frames_go_before_data():
    client, server, sid = opened(version=2)
    server.receive_data(wire(client.frame_data(sid, b"abc")[0]))
    server.read(sid, 3)  # queues a UPD
    server.queue_nop()
    parts, _ = server.frame_data(sid, b"ok")
    assert wire(parts) == upd(2, sid, 3, 65536) + frame(2, CMD_NOP, 0) + frame(2, CMD_PSH, sid, b"ok")
    assert server.stats["keepalives_out"] == 1


def test_activity_flag():
    _, server = pair()
    assert not server.take_activity()
    server.receive_data(frame(1, CMD_NOP, 0)[:3])
    assert server.take_activity() and not server.take_activity()


# --------------------------------------------------------------- bad frames

BAD = {
    "version 0": frame(0, CMD_NOP, 0),
    "version 3": frame(3, CMD_NOP, 0),
    "other version": frame(2, CMD_NOP, 0),
    "cmd 5": frame(1, 5, 3),
    "cmd 255": frame(1, 255, 3),
    "SYN with payload": frame(1, CMD_SYN, 5, b"x"),
    "FIN with payload": frame(1, CMD_FIN, 3, b"x"),
    "NOP with payload": frame(1, CMD_NOP, 0, b"x"),
    "UPD on version 1": upd(1, 3, 0, 0),
    "SYN for stream 0": frame(1, CMD_SYN, 0),
    "SYN with the server's parity": frame(1, CMD_SYN, 4),
    "PSH for stream 0": frame(1, CMD_PSH, 0, b"x"),
    "PSH for an unopened peer stream": frame(1, CMD_PSH, 5, b"x"),
    "FIN for an unopened peer stream": frame(1, CMD_FIN, 7),
    "PSH for an id never allocated": frame(1, CMD_PSH, 2, b"x"),
    "huge PSH for an id never allocated": frame(1, CMD_PSH, 4, b"x" * 65535),
}
BAD_V2 = {
    "UPD of 7 bytes": frame(2, CMD_UPD, 3, b"1234567"),
    "UPD of 9 bytes": frame(2, CMD_UPD, 3, b"123456789"),
    "UPD for an unopened stream": upd(2, 5, 0, 0),
    "UPD consuming more than sent": upd(2, 3, 4, 65536),
}


def check_bad(version, bad):
    """Stream 3 has data, then a good frame and the bad one arrive together:
    the error is raised, sticks, and stream 3 holds exactly its own data."""
    client, server, sid = opened(version)
    server.receive_data(wire(client.frame_data(sid, b"abc")[0]))
    good = wire(client.frame_data(sid, b"def")[0])
    with pytest.raises(ProtocolError) as info:
        server.receive_data(good + bad + frame(version, CMD_PSH, sid, b"after"))
    assert info.value.errno == 71 and "smux protocol error" in str(info.value)
    with pytest.raises(ProtocolError):
        server.receive_data(frame(version, CMD_NOP, 0))
    assert server.error is info.value
    assert server.read(sid, 100) == b"abcdef"
    return info.value


@pytest.mark.parametrize("name", BAD)
def test_bad_frame(name):
    check_bad(1, BAD[name])


@pytest.mark.parametrize("name", BAD_V2)
def test_bad_frame_v2(name):
    check_bad(2, BAD_V2[name])


@pytest.mark.parametrize("name", ["version 3", "cmd 5", "SYN with payload", "UPD on version 1"])
def test_bad_header_refused_before_its_payload(name):
    """A bad header is an error as soon as its 8 bytes are in, whatever
    length it claims."""
    header = BAD[name][:8]
    header = header[:2] + struct.pack("<H", 65535) + header[4:]
    _, server = pair()
    with pytest.raises(ProtocolError):
        server.receive_data(header)


def test_frames_split_at_the_bad_header():
    _, server = pair()
    bad = frame(1, 9, 3)
    server.receive_data(bad[:5])
    with pytest.raises(ProtocolError, match="unknown cmd 9"):
        server.receive_data(bad[5:])


def test_constructor_checks():
    with pytest.raises(ValueError, match="version"):
        Protocol(client=True, version=3)
    with pytest.raises(ValueError, match="max_frame_size"):
        Protocol(client=True, max_frame_size=65536)


def test_random_mutations_raise_only_protocol_errors():
    """Fuzz: a valid byte stream with random bytes changed, cut or inserted,
    fed in random pieces, either parses or raises ProtocolError; the receive
    budget always equals the room left by what the streams buffer."""
    import random
    rng = random.Random(11)
    client, _ = pair(version=2, max_frame_size=700)
    valid = bytearray()
    sids = [client.open_stream() for _ in range(4)]
    for i in range(40):
        valid += wire(client.frame_data(sids[i % 4], bytes([i]) * rng.randrange(1, 2000))[0])
        if i % 7 == 0:
            valid += upd(2, sids[i % 4], 0, 65536) + frame(2, CMD_NOP, 0)
    valid += client.data_to_send() + frame(2, CMD_FIN, sids[0])
    outcomes = {"parsed": 0, "protocol error": 0}
    for _ in range(400):
        data = bytearray(valid)
        for _ in range(rng.randrange(1, 4)):
            at = rng.randrange(len(data))
            action = rng.randrange(3)
            if action == 0:
                data[at] = rng.randrange(256)
            elif action == 1:
                del data[at:at + rng.randrange(1, 20)]
            else:
                data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
        server = Protocol(client=False, version=2, backlog=3, max_receive_buffer=50000, max_stream_buffer=50000)
        try:
            offset = 0
            while offset < len(data):
                step = rng.randrange(1, 3000)
                server.receive_data(bytes(data[offset:offset + step]))
                offset += step
                while server.accept() is not None:
                    pass
            outcomes["parsed"] += 1
        except ProtocolError:
            outcomes["protocol error"] += 1
        buffered = sum(s.buffered for s in server._streams.values())
        assert server.receive_budget == server.max_receive_buffer - buffered
        assert all(s.buffered == sum(len(c) for c in s.chunks) - s.head for s in server._streams.values())
    assert outcomes["parsed"] and outcomes["protocol error"]
