"""A pre-forked KCP echo server: N worker processes share one UDP port with
SO_REUSEPORT, and the kernel keeps each peer on one worker.

    python examples/prefork_echo_server.py 127.0.0.1:29900 --workers 4

Each worker prints "worker <i> ready" when listening and, on SIGTERM/SIGINT
(sent to the parent, which passes it on), "worker <i> sessions <n>"."""
import argparse
import os
import signal
import sys

FAST = dict(nodelay=1, interval=10, resend=2, nc=1, sndwnd=1024, rcvwnd=1024)


def worker(index: int, address: str) -> None:
    import gevent
    from gkcp.server import KCPServer

    sessions = [0]

    def echo(session, _address):
        sessions[0] += 1
        while True:
            data = session.recv(65536)
            if not data:
                return
            session.sendall(data)

    server = KCPServer(address, echo, reuse_port=True, idle_timeout=10, **FAST)
    server.start()
    gevent.signal_handler(signal.SIGTERM, server.stop)
    gevent.signal_handler(signal.SIGINT, server.stop)
    say("worker %d ready" % index)
    server.serve_forever()
    say("worker %d sessions %d" % (index, sessions[0]))


def say(line: str) -> None:
    # one write per line: the workers share the parent's stdout
    os.write(sys.stdout.fileno(), (line + "\n").encode())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("address", help="host:port (port must be fixed: every worker binds it)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    from gkcp import prefork
    return prefork.run(lambda index: worker(index, args.address), args.workers)


if __name__ == "__main__":
    sys.exit(main())
