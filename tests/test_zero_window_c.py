"""A session whose peer advertised a zero window keeps probing it.

Before the fix, a session with nothing queued and nothing in flight was
taken off the timer heap, and a full window is not queued (gk_sess_send
takes nothing): if the peer's window update was lost, no window probe was
ever sent and the writer waited forever (without keepalive) or for the
keepalive interval.  The end-to-end sanitizer run found it: 2 MB over a
lossy relay stalled at 1.2 MB with the client at rmt_wnd 0 and empty queues."""
from corerig import ACK, WASK, WINS, CoreRig, recv_all, segment
from gkcp._core import lib

CONV = 5


def test_a_zero_window_is_probed_until_it_opens():
    with CoreRig(start=0xFFFFF000) as rig:  # across the 32-bit wrap
        peer = rig.sink()
        dialer = rig.udp(listening=False)
        sess = rig.dial(dialer, peer.getsockname(), conv=CONV, announce=False)
        assert lib.gk_sess_send(sess, b"x" * 100, 100, rig.now) == 100
        rig.step(1)
        assert recv_all(peer)  # the segment went out
        # acknowledged, and the peer's receive queue is full: window 0
        peer.sendto(segment(CONV, ACK, sn=0, una=1, wnd=0), rig.address(dialer))
        rig.step(1)
        assert lib.gk_sess_send(sess, b"y" * 100, 100, rig.now) == 0  # nothing fits
        asks = []
        for _ in range(800):  # 8 s: kcp-go's first probe comes after 7 s
            rig.step(10)
            asks += [d for d in recv_all(peer) if d[4] == WASK]
        assert asks, "no window probe within 8 s"
        # the peer answers with an open window: the writer can go on
        peer.sendto(segment(CONV, WINS, una=1, wnd=32), rig.address(dialer))
        rig.step(1)
        assert lib.gk_sess_send(sess, b"y" * 100, 100, rig.now) == 100
