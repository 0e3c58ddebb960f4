"""A line-based chat room: the handler is written for gevent.server.StreamServer
and runs unchanged over KCP with gkcp.server.KCPServer.

The client speaks first (its name), as the chat protocol has it.  A server
greeting on connect would work as well: KCP has no handshake, but a dialed
session announces itself at once (gkcp's ``announce`` option, on by
default), so the listener accepts it before the client writes.

    python examples/chat_server.py             # self-test: three clients chat, exit 0
    python examples/chat_server.py --serve 29901
"""
import sys

import gevent
from gevent.queue import Queue

import gkcp
from gkcp.server import KCPServer

OPTIONS = dict(nodelay=1, interval=10, resend=2, nc=1)


class ChatRoom:
    def __init__(self):
        self.members = {}  # name -> outgoing Queue

    def broadcast(self, line, sender=None):
        for name, queue in self.members.items():
            if name != sender:
                queue.put(line)

    def handle(self, sock, address):
        # StreamServer-style: one greenlet per client, socket file objects, returns when done.
        rfile = sock.makefile("r", encoding="utf-8", newline="\n")
        wfile = sock.makefile("w", encoding="utf-8", newline="\n")
        outgoing = Queue()
        writer = gevent.spawn(self._write, wfile, outgoing)
        name = None
        try:
            name = rfile.readline().strip() or "%s:%d" % address[:2]
            self.members[name] = outgoing
            self.broadcast("* %s joined\n" % name, sender=name)
            for line in rfile:
                if line.strip() == "/quit":
                    break
                self.broadcast("<%s> %s" % (name, line), sender=name)
        finally:
            if name in self.members:
                del self.members[name]
                self.broadcast("* %s left\n" % name)
            outgoing.put(None)
            writer.join(5)
            rfile.close()
            wfile.close()

    @staticmethod
    def _write(wfile, outgoing):
        for line in iter(outgoing.get, None):
            wfile.write(line)
            wfile.flush()


def selftest():
    room = ChatRoom()
    with KCPServer(("127.0.0.1", 0), room.handle, idle_timeout=10, **OPTIONS) as server:
        server.start()
        names = ["ann", "bob", "cyd"]
        clients = {}
        for name in names:
            session = gkcp.create_connection(server.address, timeout=10, **OPTIONS)
            rfile = session.makefile("r", encoding="utf-8", newline="\n")
            session.sendall(("%s\n" % name).encode())
            clients[name] = (session, rfile)
            while len(room.members) < len(clients):
                gevent.sleep(0.01)  # joined once the server read the name
        for name in names:  # each one saw the later ones join
            session, rfile = clients[name]
            for later in names[names.index(name) + 1:]:
                assert rfile.readline() == "* %s joined\n" % later
        clients["ann"][0].sendall(b"hello room\n")
        for name in ("bob", "cyd"):
            assert clients[name][1].readline() == "<ann> hello room\n"
        clients["bob"][0].sendall(b"/quit\n")
        for name in ("ann", "cyd"):
            assert clients[name][1].readline() == "* bob left\n"
        for session, rfile in clients.values():
            rfile.close()
            session.close()
    print("chat selftest ok")


def main(argv):
    if len(argv) == 3 and argv[1] == "--serve":
        room = ChatRoom()
        KCPServer(("0.0.0.0", int(argv[2])), room.handle, idle_timeout=300, **OPTIONS).serve_forever()
        return 0
    if len(argv) > 1 and argv[1:] != ["--selftest"]:
        print(__doc__, file=sys.stderr)
        return 2
    selftest()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
