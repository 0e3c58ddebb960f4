"""TLS over a KCP session with ssl.SSLContext.wrap_bio: the ssl module works on
memory buffers and this file moves the bytes between them and the session.

    python examples/tls_over_kcp.py     # handshake, verified round trip, close_notify; exits 0

The certificate is made for the run with the openssl command line when it
is installed; otherwise the test-only self-signed pair next to this file
(CN=localhost, never use it for anything else) is used.
"""
import os
import shutil
import ssl
import subprocess
import sys
import tempfile

import gkcp
from gkcp.server import KCPServer

OPTIONS = dict(nodelay=1, interval=10, resend=2, nc=1)
HERE = os.path.dirname(os.path.abspath(__file__))


class TLSSession:
    """A TLS connection carried by a gkcp.Session (or any object with
    sendall/recv): SSLObject over two MemoryBIOs, pumped by hand."""

    def __init__(self, context, session, server_side=False, server_hostname=None):
        self.session = session
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self._incoming, self._outgoing, server_side, server_hostname)

    def _run(self, operation, *args):
        # Retry the TLS operation, feeding it session bytes each time it wants
        # more; whatever it produced is sent before waiting for the peer.
        while True:
            try:
                result = operation(*args)
            except ssl.SSLWantReadError:
                self._flush()
                data = self.session.recv(65536)
                if data:
                    self._incoming.write(data)
                else:
                    self._incoming.write_eof()
                continue
            self._flush()
            return result

    def _flush(self):
        data = self._outgoing.read()
        if data:
            self.session.sendall(data)

    def do_handshake(self):
        self._run(self.tls.do_handshake)

    def sendall(self, data):
        view = memoryview(data)
        while view:
            view = view[self._run(self.tls.write, view):]

    def recv(self, bufsize):
        """Plain text, b'' after the peer's close_notify."""
        try:
            return self._run(self.tls.read, bufsize)
        except ssl.SSLZeroReturnError:
            return b""

    def unwrap(self):
        """Send close_notify and wait for the peer's: TLS gives KCP the
        end-of-stream signal it lacks on the wire."""
        self._run(self.tls.unwrap)


def certificate(directory):
    """(certfile, keyfile): fresh from openssl if present, else the shipped test pair."""
    if shutil.which("openssl"):
        cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "1", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-keyout", key, "-out", cert], check=True, capture_output=True, timeout=30)
        return cert, key
    return os.path.join(HERE, "tls_test_cert.pem"), os.path.join(HERE, "tls_test_key.pem")


def tls_echo_handler(context):
    def handle(session, address):
        tls = TLSSession(context, session, server_side=True)
        tls.do_handshake()
        while True:
            data = tls.recv(65536)
            if not data:  # close_notify from the client
                break
            tls.sendall(data.upper())
        tls.unwrap()
    return handle


def round_trip(address, cafile, message):
    """Verified TLS to address over KCP; returns (reply, TLS version, cipher)."""
    context = ssl.create_default_context(cafile=cafile)
    with gkcp.create_connection(address, timeout=10, **OPTIONS) as session:
        tls = TLSSession(context, session, server_hostname="localhost")
        tls.do_handshake()
        tls.sendall(message)
        reply = bytearray()
        while len(reply) < len(message):
            reply += tls.recv(65536)
        tls.unwrap()
        return bytes(reply), tls.tls.version(), tls.tls.cipher()[0]


def main():
    with tempfile.TemporaryDirectory() as directory:
        cert, key = certificate(directory)
        server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_context.load_cert_chain(cert, key)
        with KCPServer(("127.0.0.1", 0), tls_echo_handler(server_context), idle_timeout=10, **OPTIONS) as server:
            server.start()
            message = b"secret over kcp " * 5000
            reply, version, cipher = round_trip(server.address, cert, message)
            assert reply == message.upper()
    print("TLS over KCP ok: %s %s, %d bytes each way, closed with close_notify" % (version, cipher, len(message)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
