"""gkcp as a user gets it: the sdist builds, installs into a new virtualenv and
works from outside the source tree; the command line behaves like one.

The sdist is built from the work tree; pip turns it into a wheel in its own
isolated build environment, compiling the C core from the sdist alone (a file
missing from it -- build_ffi.py, a header -- fails the build), and installs it.  The virtualenv sees
the machine's site-packages for the runtime dependencies only: the test checks
that the gkcp it imports is the one just installed.
"""
import os
import socket
import subprocess
import sys
import tarfile
import textwrap
import time
import zipfile
from pathlib import Path

import pytest

import gkcp
from gkcp.__main__ import COMMANDS

REPO = Path(__file__).resolve().parents[1]


def run(argv, cwd, timeout=300, check=True, env=None):
    proc = subprocess.run([str(a) for a in argv], cwd=str(cwd), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=timeout, env=env)
    out = proc.stdout.decode(errors="replace")
    if check:
        assert proc.returncode == 0, "%s failed (%d):\n%s" % (argv, proc.returncode, out[-4000:])
    return proc.returncode, out


@pytest.fixture(scope="module")
def sdist(tmp_path_factory):
    outdir = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--sdist", "--outdir", outdir, REPO], cwd=outdir)
    (path,) = outdir.glob("gkcp-*.tar.gz")
    return path


@pytest.fixture(scope="module")
def venv(sdist, tmp_path_factory):
    """A new virtualenv; its bin/ folder."""
    root = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", "--system-site-packages", root], cwd=root)
    return root / "bin"


@pytest.fixture(scope="module")
def wheel(venv, sdist, tmp_path_factory):
    """The wheel pip builds from the sdist alone, installed into venv."""
    outdir = tmp_path_factory.mktemp("wheel")
    # -O0 (build_ffi.py appends GKCP_CFLAGS): this build proves the sdist is
    # complete, not fast, and compiles in half the time.
    run([venv / "python", "-m", "pip", "wheel", "--no-deps", "-q", "-w", outdir, sdist],
        cwd=outdir, timeout=600, env=dict(os.environ, GKCP_CFLAGS="-O0"))
    (path,) = outdir.glob("gkcp-*.whl")
    run([venv / "python", "-m", "pip", "install", "--no-deps", "-q", path], cwd=outdir)
    return path


def test_sdist_holds_what_the_build_needs(sdist):
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    csrc = {"csrc/" + f for f in os.listdir(REPO / "csrc") if f.endswith((".c", ".h"))}
    needed = {"build_ffi.py", "LICENSE", "README.md", "pyproject.toml", "setup.py", "gkcp/py.typed",
              "gkcp/bench/goref/peer/main.go", "gkcp/bench/goref/fecvec/main.go"} | csrc
    assert needed <= names, sorted(needed - names)


def test_wheel_is_tagged_for_the_limited_api_it_is_built_for(wheel):
    """cffi compiles gkcp._core for CPython's limited API (_core.abi3.so), so
    the wheel says abi3 and carries the package data."""
    assert wheel.name.endswith("-cp39-abi3-linux_%s.whl" % os.uname().machine), wheel.name
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
    assert {"gkcp/_core.abi3.so", "gkcp/py.typed", "gkcp/bench/goref/peer/main.go",
            "gkcp-%s.dist-info/licenses/LICENSE" % gkcp.__version__} <= names, sorted(names)


def test_installed_package_works_outside_the_tree(venv, wheel, tmp_path):
    script = tmp_path / "loopback.py"
    script.write_text(textwrap.dedent("""
        import hashlib, os, sys
        import gevent, gkcp
        from gkcp.bench.gobuild import source_dir
        assert gkcp.__file__.startswith(sys.prefix), gkcp.__file__
        assert os.path.exists(os.path.join(os.path.dirname(gkcp.__file__), "py.typed"))
        assert (source_dir("peer") / "main.go").is_file()
        payload = os.urandom(300_000)
        with gkcp.listen(("127.0.0.1", 0), nodelay=1, interval=10, crypt="aes", key=b"k" * 32) as listener:
            def serve():
                session, _ = listener.accept()
                with session:
                    got = bytearray()
                    while len(got) < len(payload):
                        got += session.recv(65536)
                    session.sendall(hashlib.sha256(got).digest())
            server = gevent.spawn(serve)
            with gkcp.create_connection(listener.getsockname(), timeout=20, nodelay=1,
                                        interval=10, crypt="aes", key=b"k" * 32) as client:
                client.sendall(payload)
                digest = b""
                while len(digest) < 32:
                    digest += client.recv(32 - len(digest))
            server.get(timeout=20)
        assert digest == hashlib.sha256(payload).digest()
        print("ok", gkcp.__version__)
    """))
    _, out = run([venv / "python", script], cwd=tmp_path, timeout=60)
    assert out.strip() == "ok " + gkcp.__version__


def test_installed_console_script_and_bench(venv, wheel, tmp_path):
    """The gkcp command, and the bench's Go reference programs built from the
    installed package (no checkout) into a fresh cache."""
    _, out = run([venv / "gkcp", "--version"], cwd=tmp_path)
    assert out.strip() == "gkcp " + gkcp.__version__
    _, out = run([venv / "python", "-m", "gkcp.bench", "--help"], cwd=tmp_path)
    assert "--plot" in out and "issue" not in out
    build = ("from gkcp.bench.gobuild import build_go_program\n"
             "print(build_go_program('peer'))\nprint(build_go_program('fecvec'))")
    env_cache = tmp_path / "cache"
    # Go keeps its compile cache under XDG_CACHE_HOME too: keep using the warm one.
    go_cache = subprocess.run(["go", "env", "GOCACHE"], capture_output=True, text=True,
                              timeout=60).stdout.strip()
    proc = subprocess.run([str(venv / "python"), "-c", build], cwd=str(tmp_path), capture_output=True,
                          text=True, timeout=600,
                          env=dict(os.environ, XDG_CACHE_HOME=str(env_cache), GOCACHE=go_cache))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for binary in proc.stdout.split():
        assert binary.startswith(str(env_cache / "gkcp" / "go")) and os.access(binary, os.X_OK)


ROUTED_REDIS = """
import hashlib, os, sys
import redis
value = os.urandom(1_000_000)
r = redis.Redis("10.255.0.10", 6379, socket_timeout=30, socket_connect_timeout=10)
assert r.set("installed", value)
assert hashlib.sha256(r.get("installed")).digest() == hashlib.sha256(value).digest()
import gkcp
print("routed ok", os.path.dirname(gkcp.__file__))
"""


def test_installed_tunnel_and_run_commands_carry_a_redis_session(venv, wheel, tmp_path):
    """The installed ``gkcp tunnel server`` in front of redis-server and the
    installed ``gkcp run --route`` running a redis-py program against a
    10.255.0.x address: 1 MB set and read back, hash-checked, through the
    console script's two subcommands (no checkout on the path)."""
    from legacy_servers import TUNNEL_FLAGS, kcptun_url, redis_server
    from tunnel_harness import free_port
    kcp_port = free_port(socket.SOCK_DGRAM)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    (tmp_path / "program.py").write_text(ROUTED_REDIS)
    with redis_server() as redis_port, (tmp_path / "server.log").open("w+b") as log:
        server = subprocess.Popen([str(venv / "gkcp"), "tunnel", "server", "-l", "127.0.0.1:%d" % kcp_port,
                                   "-t", "127.0.0.1:%d" % redis_port, "--quiet"] + TUNNEL_FLAGS,
                                  cwd=str(tmp_path), env=env, stdin=subprocess.DEVNULL, stdout=log,
                                  stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while b"listening on" not in (log.seek(0) or log.read()):
                assert server.poll() is None and time.monotonic() < deadline, log.read().decode()
                time.sleep(0.05)
            _, out = run([venv / "gkcp", "run", "--route", "10.255.0.10:6379=" + kcptun_url(kcp_port), "--",
                          "program.py"], cwd=tmp_path, timeout=120, env=env)
        finally:
            server.terminate()
            status = server.wait(10)
    assert "routed ok %s" % venv.parent in out, out
    assert status == 0, status  # SIGTERM closes the tunnel server cleanly


USER_CODE = """
import gkcp
from gkcp.crypt import BlockCrypt, kcptun_crypt, kcptun_key
from gkcp.monkey import patch_create_connection, unpatch
from gkcp.server import KCPServer


def echo_once(port: int, cipher: BlockCrypt) -> bytes:
    with gkcp.create_connection(("127.0.0.1", port), timeout=1.0, crypt=cipher) as session:
        sent: int = session.send(b"x")
        session.settimeout(2.5)
        return session.recv(sent) + kcptun_key("x")


def counters() -> "dict[str, int]":
    listener: gkcp.Listener = gkcp.listen(("127.0.0.1", 0), sndwnd=64)
    assert gkcp.Options(sndwnd=64).sndwnd == 64
    listener.close()
    return gkcp.snmp()


def handle(session: gkcp.Session, address: "tuple[str, int]") -> None:
    session.close()


def route_and_serve() -> KCPServer:
    patch_create_connection({("10.0.0.5", 8080): dict(nodelay=1)})
    unpatch()
    return KCPServer(("127.0.0.1", 0), handle)


cipher = kcptun_crypt("aes", "passphrase")
"""


def test_user_code_type_checks_strictly_against_the_installed_package(venv, wheel, tmp_path):
    """py.typed and annotated public API: mypy --strict on code using gkcp
    reports neither missing library stubs nor untyped calls."""
    (tmp_path / "user.py").write_text(USER_CODE)
    code, out = run([venv / "python", "-m", "mypy", "--strict", "--no-incremental", "user.py"],
                    cwd=tmp_path, check=False)
    assert code == 0 and "Success" in out, out


# ---------------------------------------------------------------- command line

def cli(*args, timeout=60):
    return run([sys.executable, "-m", "gkcp", *args], cwd=REPO, timeout=timeout, check=False)


def test_version_and_help_exit_zero():
    assert cli("--version") == (0, "gkcp %s\n" % gkcp.__version__)
    code, out = cli("--help")
    assert code == 0 and all(name in out for name in COMMANDS)


@pytest.mark.parametrize("args", [[], ["nope"], ["demo", "--bytes", "zz"], ["demo", "--fec", "10"],
                                  ["demo", "--window", "70000"], ["demo", "--crypt", "bogus"],
                                  ["demo", "--unknown"]])
def test_bad_arguments_are_usage_errors(args):
    code, out = cli(*args)
    assert code == 2 and "error:" in out and "Traceback" not in out, out


def test_demo_off_a_terminal_has_no_progress_line_and_one_byte_count():
    code, out = cli("demo", "--bytes", "2M", "--rtt-count", "10", "--fec", "10/3")
    assert code == 0, out
    assert "\r" not in out
    assert out.splitlines()[0].startswith("gkcp demo: 2.0 MB over KCP")
    assert "transfer: 2.0 MB in " in out and "sha256 match" in out


def test_build_stops_naming_a_missing_c_file(tmp_path, monkeypatch):
    sys.path.insert(0, str(REPO))
    try:
        import build_ffi
    finally:
        sys.path.remove(str(REPO))
    partial = tmp_path / "csrc"
    partial.mkdir()
    for name in os.listdir(REPO / "csrc"):
        if name != "fec.c":
            (partial / name).write_bytes((REPO / "csrc" / name).read_bytes())
    monkeypatch.setattr(build_ffi, "CSRC", str(partial))
    with pytest.raises(FileNotFoundError, match=r"fec\.c missing"):
        build_ffi.make_ffi()


def test_a_source_tree_without_the_c_core_says_so(tmp_path):
    """`python -m gkcp...` in a checkout whose gkcp/ shadows the installed
    package (or was never built) names the cause instead of a bare
    ModuleNotFoundError."""
    (tmp_path / "gkcp").mkdir()
    (tmp_path / "gkcp" / "__init__.py").write_bytes((REPO / "gkcp" / "__init__.py").read_bytes())
    # -S: no site-packages, hence no editable install that would supply the core
    code, out = run([sys.executable, "-S", "-c", "import gkcp"], cwd=tmp_path, check=False)
    assert code == 1 and "gkcp._core" in out and "python build_ffi.py" in out, out


def test_demo_piped_into_a_reader_that_leaves_exits_without_traceback():
    proc = subprocess.Popen([sys.executable, "-m", "gkcp", "demo", "--bytes", "1M", "--rtt-count", "5"],
                            cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline().startswith(b"gkcp demo: ")
        proc.stdout.close()  # like `| head -1`
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 1 and b"Traceback" not in err, err
