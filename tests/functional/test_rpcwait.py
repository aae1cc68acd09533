"""hvtestcloud/rpcwait.py: the demo cloud counts as up only once its RPC servers consume.

Real RabbitMQ (tests/fixtures/rabbit.py) and a real oslo.messaging RPC server
(tests/rpc_standin.py), as in test_health.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.functional

ROOT = Path(__file__).resolve().parents[2]


def _rpcwait(url: str, *targets: str, timeout: float) -> tuple[int, dict]:
    r = subprocess.run([sys.executable, "-m", "hvtestcloud.rpcwait", url, *targets,
                        "--timeout", str(timeout)], capture_output=True, text=True,
                       timeout=timeout + 60, cwd=ROOT, check=False)
    return r.returncode, json.loads(r.stdout.strip().splitlines()[-1])


def test_waits_for_a_consumer_and_says_which_is_missing(rabbit, tmp_path):
    rc, out = _rpcwait(rabbit.url, "neutron/q-plugin@1.0", timeout=2)
    assert rc == 1
    assert "no consumer" in out["missing"]["neutron/q-plugin@1.0"], out
    conf = tmp_path / "standin.conf"
    conf.write_text(f"[DEFAULT]\ntransport_url = {rabbit.url}\nhost = hvtest\n"
                    "control_exchange = neutron\n")
    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "rpc_standin.py"),
                               "--config-file", str(conf), "--topic", "q-plugin",
                               "--endpoint-version", "1.9"])
    try:
        rc, out = _rpcwait(rabbit.url, "neutron/q-plugin@1.0", timeout=60)
        assert rc == 0, out
        assert "neutron/q-plugin@1.0" in out["answered"]
    finally:
        server.terminate()
        server.wait(10)
