"""The guest count in `status` and the metrics, and what a stop says, with a real guest.

A real `hvsupervisor run` with a stand-in "compute" agent gated on the
session libvirtd (tests/fixtures/libvirt.py); the guest is a real transient
qemu domain (TCG, 32 MiB, no disk: it sits in its firmware, which is all a
count needs). Whether nova has the service disabled is not known on a node
(supervisor/instances.py): status says ``unknown`` and why.
"""

from __future__ import annotations

import subprocess
import uuid

import pytest

from tests.fixtures.supervisor import standin
from tests.util import wait_until

pytestmark = pytest.mark.functional

_GUEST = """<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>32</memory>
  <os><type arch='x86_64'>hvm</type></os>
  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices>
</domain>
"""


def _virsh(libvirtd, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["virsh", "-c", libvirtd.uri, *args], capture_output=True, text=True,
                          timeout=60, check=False)


def test_status_and_metrics_count_guests_and_a_stop_says_they_keep_running(
        node, libvirtd, tmp_path):
    node.agent("compute", standin(), ready="alive:0.1", host_gates="libvirt")
    node.snippet("svc/compute.ini", f"[libvirt]\nconnection_uri = {libvirtd.uri}\n",
                 layer="defaults")
    node.start()
    st = node.status()
    assert st["instances"] == 0
    assert st["compute_disabled"] == "unknown"
    assert "cell database and placement" in st["compute_disabled_reason"]
    table = node.hv("status").stdout
    assert "instances: 0 (running guests, from libvirt)" in table
    assert "compute service disabled in nova: unknown (nova keeps it" in table

    xml = tmp_path / "guest.xml"
    name = f"hvtest-{uuid.uuid4().hex[:8]}"
    xml.write_text(_GUEST.format(name=name))
    made = _virsh(libvirtd, "create", str(xml))
    if made.returncode != 0:
        pytest.skip(f"no transient qemu guest here: {made.stderr.strip()}")
    try:
        assert node.status()["instances"] == 1
        prom = node.base / "hvsupervisor.prom"
        wait_until(lambda: prom.exists() and "hvsupervisor_compute_instances 1.0" in
                   prom.read_text(), 10,
                   "the textfile's instance count")
        assert "hvsupervisor_compute_service_disabled -1.0" in prom.read_text()

        assert node.stop() == 0
        out = node.output()
        assert "event=instances-left-running count=1 stopping=hvsupervisor" in out, out[-2000:]
        assert name in _virsh(libvirtd, "list", "--name").stdout.split()  # still running
    finally:
        _virsh(libvirtd, "destroy", name)


def test_a_node_without_nova_compute_shows_no_count(node):
    node.agent("other", standin(), ready="alive:0.1")
    node.start()
    st = node.status()
    assert st["instances"] is None and st["compute_disabled_reason"] == ""
    assert "instances:" not in node.hv("status").stdout
