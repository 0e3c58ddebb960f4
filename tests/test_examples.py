"""Every example runs to completion on its own (exit 0), and the echo
server/client pair also works as two processes."""
import os
import subprocess
import sys

import pytest

from helpers import free_udp_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))


def run(*args, timeout=30):
    return subprocess.run([sys.executable, *args], cwd=EXAMPLES, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("script, args", [
    ("echo_server.py", ["--selftest"]),
    ("echo_client.py", ["--selftest"]),
    ("chat_server.py", []),
    ("wsgi_over_kcp.py", []),
    ("legacy_http_client.py", []),
    ("tls_over_kcp.py", []),
])
def test_example_exits_0(script, args):
    done = run(script, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok" in done.stdout


def test_echo_server_and_client_as_two_processes():
    port = free_udp_port()
    server = subprocess.Popen([sys.executable, "echo_server.py", str(port)], cwd=EXAMPLES, env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "echo server on udp" in server.stdout.readline()
        done = run("echo_client.py", "127.0.0.1:%d" % port)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "100000 bytes echoed" in done.stdout
    finally:
        server.kill()
        server.wait(5)


def test_every_example_is_tested():
    scripts = {name for name in os.listdir(EXAMPLES) if name.endswith(".py")}
    assert scripts == {"echo_server.py", "echo_client.py", "chat_server.py", "wsgi_over_kcp.py",
                       "legacy_http_client.py", "tls_over_kcp.py",
                       "prefork_echo_server.py"}  # run by tests/test_engine.py
