"""Echo server over KCP: a StreamServer-style handler served by gkcp.server.KCPServer.

    python examples/echo_server.py 29900        # serve until Ctrl-C
    python examples/echo_client.py 127.0.0.1:29900
    python examples/echo_server.py --selftest   # serve on a free port, run the client against it, exit
"""
import sys

from gkcp.server import KCPServer

# Low-latency KCP settings (kcp-go's "fast3"); both ends should agree.
OPTIONS = dict(nodelay=1, interval=10, resend=2, nc=1, sndwnd=1024, rcvwnd=1024)


def echo(sock, address):
    # Unchanged from a gevent.server.StreamServer handler: sock is a gkcp.Session.
    while True:
        data = sock.recv(65536)
        if not data:
            break
        sock.sendall(data)


def make_server(port=0):
    # idle_timeout: KCP carries no FIN, so a client that is gone is noticed by its silence.
    return KCPServer(("127.0.0.1", port), echo, idle_timeout=30, **OPTIONS)


def main(argv):
    if argv[1:] == ["--selftest"]:
        import echo_client
        with make_server() as server:
            server.start()
            echo_client.check("127.0.0.1:%d" % server.server_port)
        print("echo selftest ok")
        return 0
    if len(argv) != 2 or not argv[1].isdigit():
        print(__doc__, file=sys.stderr)
        return 2
    server = make_server(int(argv[1]))
    print("echo server on udp %s:%d" % (server.server_host, server.server_port), flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
