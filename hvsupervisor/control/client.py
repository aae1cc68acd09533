"""Client side of the control socket, for the CLI verbs."""

from __future__ import annotations

import json
import socket
from pathlib import Path


class ControlError(Exception):
    """The supervisor is not reachable (not running, or wrong run dir)."""


def call(path: Path, request: dict, timeout: float = 600.0) -> dict:
    """Send one request, wait for its reply (a reload may take a while)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise ControlError(
                f"no supervisor is listening on {path} ({exc.strerror}); is it running "
                f"with this --run-dir?") from None
        except PermissionError:
            raise ControlError(f"permission denied on {path}: run as root") from None
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        raise ControlError(f"no reply from {path} within {timeout:g}s") from None
    finally:
        sock.close()
    if not data:
        raise ControlError(f"the supervisor closed {path} without a reply")
    return json.loads(data)
