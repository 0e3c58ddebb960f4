"""Echo client over KCP: sends messages to an echo server and checks the replies.

    python examples/echo_client.py 127.0.0.1:29900
    python examples/echo_client.py --selftest   # start an echo server in-process first
"""
import os
import sys

import gkcp

OPTIONS = dict(nodelay=1, interval=10, resend=2, nc=1, sndwnd=1024, rcvwnd=1024)


def recv_exactly(session, n):
    data = bytearray()
    while len(data) < n:
        piece = session.recv(n - len(data))
        if not piece:
            raise EOFError("session ended after %d of %d bytes" % (len(data), n))
        data += piece
    return bytes(data)


def check(address):
    with gkcp.create_connection(address, timeout=10, **OPTIONS) as session:
        for size in (5, 1400, 100_000):
            message = os.urandom(size)
            session.sendall(message)
            reply = recv_exactly(session, size)
            assert reply == message, "echo of %d bytes differs" % size
            print("%d bytes echoed" % size)


def main(argv):
    if argv[1:] == ["--selftest"]:
        import echo_server
        with echo_server.make_server() as server:
            server.start()
            check(("127.0.0.1", server.server_port))
        print("echo client selftest ok")
        return 0
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    check(argv[1])
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
