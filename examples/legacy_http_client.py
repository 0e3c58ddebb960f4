"""Unmodified blocking client code (xmlrpc.client, http.client) reaching a
server through KCP, with gkcp.monkey routing socket.create_connection.

    client code --(KCP, UDP port K)--> KCP<->TCP bridge --(TCP)--> stdlib XML-RPC server

The XML-RPC server is the stdlib's SimpleXMLRPCServer on TCP, in a thread
(a greenlet after patch_all); the bridge is a KCPServer whose handler relays
bytes both ways.  After gkcp.monkey.unpatch() the same URL is tried over
plain TCP again, where nothing listens on port K.

    python examples/legacy_http_client.py      # runs the whole demo, exits 0 on success
"""
from gevent import monkey

monkey.patch_all()  # first: it replaces socket.create_connection, which gkcp.monkey then wraps

import http.client  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import xmlrpc.client  # noqa: E402
import xmlrpc.server  # noqa: E402

import gevent  # noqa: E402

import gkcp.monkey  # noqa: E402
from gkcp.server import KCPServer  # noqa: E402

OPTIONS = dict(nodelay=1, interval=10, resend=2, nc=1)


def start_backend():
    server = xmlrpc.server.SimpleXMLRPCServer(("127.0.0.1", 0), logRequests=False)
    server.register_function(lambda a, b: a + b, "add")
    server.register_function(lambda text: text.upper(), "shout")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def relay(source, sink):
    while True:
        data = source.recv(65536)
        if not data:
            return
        sink.sendall(data)


def bridge_to(backend):
    def handle(session, address):
        # Not a routed address, so this is plain TCP even while patched.
        with socket.create_connection(backend, timeout=10) as upstream:
            pumps = [gevent.spawn(relay, session, upstream), gevent.spawn(relay, upstream, session)]
            # The backend closes after each response (HTTP/1.0); KCP carries
            # no FIN, so the client's end is seen through idle_timeout only.
            gevent.joinall(pumps, count=1)
            gevent.killall(pumps)
    return handle


def main():
    backend = start_backend()
    bridge = KCPServer(("127.0.0.1", 0), bridge_to(backend.server_address), idle_timeout=10, **OPTIONS)
    bridge.start()
    port = bridge.server_port
    url = "http://127.0.0.1:%d/" % port
    try:
        gkcp.monkey.patch_create_connection({("127.0.0.1", port): OPTIONS})

        proxy = xmlrpc.client.ServerProxy(url)
        assert proxy.add(2, 3) == 5
        assert proxy.shout("over kcp") == "OVER KCP"
        print("xmlrpc.client over KCP: add(2, 3) = 5, shout ok")

        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        body = xmlrpc.client.dumps((40, 2), "add").encode()
        conn.request("POST", "/RPC2", body, {"Content-Type": "text/xml"})
        assert isinstance(conn.sock, gkcp.Session)
        response = conn.getresponse()
        (result,), _ = xmlrpc.client.loads(response.read())
        assert response.status == 200 and result == 42
        conn.close()
        print("http.client over KCP: POST /RPC2 -> 42 (socket: gkcp.Session)")

        gkcp.monkey.unpatch()
        try:
            xmlrpc.client.ServerProxy(url).add(2, 3)
        except ConnectionRefusedError:
            print("after unpatch: plain TCP to port %d, connection refused" % port)
        else:
            raise AssertionError("still reached the KCP server after unpatch")
    finally:
        gkcp.monkey.unpatch()
        bridge.stop()
        backend.shutdown()
        backend.server_close()
    print("legacy client selftest ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
