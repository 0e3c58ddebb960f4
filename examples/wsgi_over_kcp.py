"""A WSGI application served by gevent's pywsgi over KCP (gkcp.server.KCPWSGIServer),
called with http.client through a small HTTPConnection subclass.

    python examples/wsgi_over_kcp.py             # self-test: serve, make requests, exit 0
    python examples/wsgi_over_kcp.py --serve 29902
"""
import http.client
import json
import sys


import gkcp
from gkcp.server import KCPWSGIServer

OPTIONS = dict(nodelay=1, interval=10, resend=2, nc=1, sndwnd=256, rcvwnd=256)


def application(environ, start_response):
    if environ["PATH_INFO"] == "/echo" and environ["REQUEST_METHOD"] == "POST":
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [body]
    if environ["PATH_INFO"] == "/info":
        info = {"remote": environ["REMOTE_ADDR"], "server_port": environ["SERVER_PORT"]}
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(info).encode()]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]


class KCPHTTPConnection(http.client.HTTPConnection):
    """http.client over a KCP session -- everything but connect() is http.client's."""

    def connect(self):
        self.sock = gkcp.create_connection((self.host, self.port), self.timeout, **OPTIONS)


def selftest():
    # pywsgi's keyword arguments (log=...) and gkcp's options side by side.
    server = KCPWSGIServer(("127.0.0.1", 0), application, log=None, idle_timeout=10, **OPTIONS)
    server.start()
    try:
        conn = KCPHTTPConnection("127.0.0.1", server.server_port, timeout=10)
        conn.request("GET", "/info")  # HTTP/1.1 keep-alive: the next requests reuse the session
        response = conn.getresponse()
        info = json.loads(response.read())
        assert response.status == 200 and info["server_port"] == str(server.server_port), info
        payload = bytes(range(256)) * 1000
        conn.request("POST", "/echo", body=payload)
        response = conn.getresponse()
        assert response.status == 200 and response.read() == payload
        conn.request("GET", "/missing")
        response = conn.getresponse()
        assert response.status == 404 and response.read() == b"not found\n"
        conn.close()
    finally:
        server.stop()
    print("wsgi over kcp selftest ok: %r" % (info,))


def main(argv):
    if len(argv) == 3 and argv[1] == "--serve":
        KCPWSGIServer(("0.0.0.0", int(argv[2])), application, idle_timeout=60, **OPTIONS).serve_forever()
        return 0
    if len(argv) > 1 and argv[1:] != ["--selftest"]:
        print(__doc__, file=sys.stderr)
        return 2
    selftest()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
