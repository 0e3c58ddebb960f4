"""A closed session that is still retransmitting (lingering) and then ends
for another reason (dead link, or its peer answering from a forgotten
conversation) must still be freed: Python has let go of it and waits only
for GK_EV_FREED to release the socket.  Before the fix it left the timer heap
and was never freed (one C session and one UDP socket per such close)."""
from gkcp._core import lib

from corerig import CoreRig


def test_dead_link_while_lingering_frees_the_session():
    with CoreRig(start=0xFFFFF000) as rig:
        silent = rig.sink()
        dialer = rig.udp(listening=False, dead_link=3)
        sess = rig.dial(dialer, silent.getsockname(), announce=False)
        sess_id = lib.gk_sess_id(sess)
        assert lib.gk_sess_send(sess, b"never acknowledged", 18, rig.now) == 18
        assert lib.gk_sess_close(sess, rig.now, 3_600_000) == 0     # lingers for an hour
        for _ in range(200):
            rig.step(50)
            if rig.freed:
                break
        assert rig.freed == [sess_id]
        assert lib.gk_engine_sessions(rig.eng) == 0
