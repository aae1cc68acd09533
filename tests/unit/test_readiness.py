"""The unix readiness check looks the socket up in /proc/net/unix: no connection is made."""

import socket

from hvsupervisor.health.readiness import unix_listening


def test_listening_bound_and_absent(tmp_path):
    path = str(tmp_path / "s.sock")
    assert not unix_listening(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        assert not unix_listening(path)  # bound, not listening: would refuse
        sock.listen(1)
        assert unix_listening(path)
    finally:
        sock.close()
    assert not unix_listening(path)
