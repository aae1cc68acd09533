"""Boot the demo guest through the cloud's APIs: image, flavor, network, server.

Shared by the e2e boot test and ``hvsupervisor demo --boot``. Everything goes
through the public APIs of hvtestcloud/cloud.py's control plane (glance, neutron,
nova), as a user's ``openstack server create`` would; the node's own agents
do the rest. The guest is hvtestcloud/guest.py's kernel + busybox initramfs,
uploaded as aki/ari plus a tiny "ami" whose ``kernel_id``/``ramdisk_id``
point at them (nova's libvirt driver then boots the kernel directly).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hvtestcloud import guest
from hvtestcloud.cloud import (
    EXT_CIDR,
    EXT_GATEWAY,
    EXT_PHYSNET,
    PHYSNET,
    ControlPlane,
    wait_until,
)

NETWORK = "demo-flat"
CIDR = "10.77.0.0/24"
GATEWAY = "10.77.0.1"  # a router's interface (ensure_router); DHCP hands it out as the route
EXT_NETWORK = "demo-ext"
ROUTER = "demo-router"
# neutron with auth_strategy=noauth wants project_id in the body ("Running
# without keystone AuthN requires that project_id is specified").
PROJECT = "admin"
FLAVOR = {"name": "demo.tiny", "ram": 256, "vcpus": 1, "disk": 0, "id": "77"}


class BootError(RuntimeError):
    """A step of the boot failed; the message names it and what the API said."""


@dataclass
class Booted:
    """What a boot made, and when (monotonic seconds)."""

    server_id: str
    network_id: str
    fixed_ip: str
    port_id: str
    host: str
    timings: dict[str, float] = field(default_factory=dict)
    attempts: int = 1  # POST /servers made (boot() asks again after a neutron API fault)
    faults: list[str] = field(default_factory=list)  # the faults of the attempts before


def _ok(what: str, status: int, body: object, *expected: int) -> dict:
    if status not in (expected or (200, 201, 202, 204)):
        raise BootError(f"{what}: HTTP {status}: {str(body)[:500]}")
    return body if isinstance(body, dict) else {}


def upload_image(cp: ControlPlane, name: str, path: Path, fmt: str,
                 properties: dict[str, str] | None = None) -> str:
    """A glance image from ``path`` (disk and container format ``fmt``); its id."""
    status, body = cp.api("POST", cp.url(cp.glance_port, "/v2/images"),
                          {"name": name, "disk_format": fmt, "container_format": fmt,
                           "visibility": "public", **(properties or {})})
    image_id = _ok(f"create image {name}", status, body)["id"]
    r = cp.ns.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "60",
                   "-X", "PUT", "-H", "X-Auth-Token: admin",
                   "-H", "Content-Type: application/octet-stream",
                   "-T", str(path), cp.url(cp.glance_port, f"/v2/images/{image_id}/file")],
                  timeout=90)
    if r.stdout.strip() != "204":
        raise BootError(f"upload {name}: HTTP {r.stdout.strip()} {r.stderr.strip()}")
    return image_id


def upload_guest(cp: ControlPlane, workdir: Path) -> tuple[str, guest.GuestImage]:
    """Build the guest, upload kernel, ramdisk and the ami; the ami's id."""
    image = guest.build(workdir)
    cp.wait_boot_apis()
    # glance's file store reads the upload; curl in the netns reads the file.
    kernel = workdir / "vmlinuz"
    shutil.copyfile(image.kernel, kernel)
    disk = workdir / "disk.img"
    disk.write_bytes(b"\0" * (1 << 20))
    aki = upload_image(cp, "demo-kernel", kernel, "aki")
    ari = upload_image(cp, "demo-ramdisk", image.ramdisk, "ari")
    ami = upload_image(cp, "demo-guest", disk, "ami", {
        "kernel_id": aki, "ramdisk_id": ari, "os_command_line": guest.KERNEL_CMDLINE})
    return ami, image


def ensure_flavor(cp: ControlPlane) -> str:
    status, body = cp.api("GET", cp.url(cp.nova_api_port, f"/v2.1/flavors/{FLAVOR['id']}"))
    if status == 200:
        return FLAVOR["id"]
    status, body = cp.api("POST", cp.url(cp.nova_api_port, "/v2.1/flavors"), {"flavor": FLAVOR})
    return _ok("create flavor", status, body)["flavor"]["id"]


def _create_once(cp: ControlPlane, what: str, port: int, collection: str, name: str,
                 body: dict) -> str:
    """POST ``body`` unless an object called ``name`` exists; its id.

    neutron on sqlite answers 500 ("database is locked", the transaction rolled
    back) under load: the create is asked again, after looking up the name, so
    a retry never makes a second object.
    """
    def attempt() -> str | None:
        found = cp.get(port, f"/v2.0/{collection}?name={name}")
        if isinstance(found, dict) and found.get(collection):
            return found[collection][0]["id"]
        status, reply = cp.api("POST", cp.url(port, f"/v2.0/{collection}"), body)
        if status == 0 or status >= 500:
            return None  # ask again
        return _ok(what, status, reply)[collection[:-1]]["id"]

    return wait_until(attempt, 60, what, 1.0)


def _subnet_of(cp: ControlPlane, network_id: str) -> dict | None:
    """The IPv4 subnet of ``network_id``, None while neutron has none (or answers 5xx)."""
    body = cp.get(cp.neutron_port, f"/v2.0/subnets?network_id={network_id}&ip_version=4")
    subnets = body.get("subnets") if isinstance(body, dict) else None
    return subnets[0] if subnets else None


def ensure_network(cp: ControlPlane) -> str:
    """A flat network on physnet1 with a DHCP subnet; its id.

    Metadata comes from the DHCP namespace (``force_metadata``) whether or not
    a router is attached; the gateway is where ``ensure_router`` plugs its
    interface, and DHCP gives it to the guest as its default route (option 3
    and, next to the metadata route, ``0.0.0.0/0`` in option 121). A subnet
    made without one by an older demo run (``keep_databases``) gets it here.
    """
    net = _create_once(cp, "create network", cp.neutron_port, "networks", NETWORK, {"network": {
        "name": NETWORK, "shared": True, "project_id": PROJECT, "provider:network_type": "flat",
        "provider:physical_network": PHYSNET}})
    sub = _create_once(cp, "create subnet", cp.neutron_port, "subnets", f"{NETWORK}-v4", {
        "subnet": {"name": f"{NETWORK}-v4", "network_id": net, "project_id": PROJECT,
                   "ip_version": 4, "cidr": CIDR, "gateway_ip": GATEWAY, "enable_dhcp": True}})
    found = cp.get(cp.neutron_port, f"/v2.0/subnets/{sub}")
    if isinstance(found, dict) and not found.get("subnet", {}).get("gateway_ip"):
        status, body = cp.api("PUT", cp.url(cp.neutron_port, f"/v2.0/subnets/{sub}"),
                              {"subnet": {"gateway_ip": GATEWAY}})
        _ok("set the subnet's gateway", status, body)
    return net


def ensure_external_network(cp: ControlPlane) -> str:
    """The external network (``router:external``, flat on ``extnet``) and its subnet
    without DHCP (nothing boots on it: it carries router gateways and floating IPs);
    its id."""
    net = _create_once(cp, "create external network", cp.neutron_port, "networks",
                       EXT_NETWORK, {"network": {
                           "name": EXT_NETWORK, "project_id": PROJECT, "router:external": True,
                           "provider:network_type": "flat",
                           "provider:physical_network": EXT_PHYSNET}})
    _create_once(cp, "create external subnet", cp.neutron_port, "subnets", f"{EXT_NETWORK}-v4", {
        "subnet": {"name": f"{EXT_NETWORK}-v4", "network_id": net, "project_id": PROJECT,
                   "ip_version": 4, "cidr": EXT_CIDR, "gateway_ip": EXT_GATEWAY,
                   "enable_dhcp": False}})
    return net


def ensure_router(cp: ControlPlane, network_id: str, host: str | None = None) -> str:
    """A router with its gateway on the external network and an interface on the
    subnet of ``network_id`` (``ensure_network``'s); its id.

    ``host``: the router must be on that node's L3 agent. neutron schedules a
    router by itself when it changes (``router_auto_schedule``), to any alive L3
    agent; asking for one agent explicitly makes the choice certain (409: it is
    already hosted). Every step looks before it writes, so a 5xx (sqlite's
    "database is locked") is asked again without making anything twice.
    """
    ext = ensure_external_network(cp)
    router = _create_once(cp, "create router", cp.neutron_port, "routers", ROUTER, {"router": {
        "name": ROUTER, "project_id": PROJECT, "external_gateway_info": {"network_id": ext}}})
    port = cp.neutron_port
    if host is not None:
        agent = wait_until(lambda: cp.neutron_agent(host, "L3 agent"), 120,
                           f"the L3 agent of {host} alive")

        def scheduled() -> bool:
            body = cp.get(port, f"/v2.0/routers/{router}/l3-agents")
            hosts = {a["host"] for a in body.get("agents", [])} if isinstance(body, dict) \
                else None
            if hosts:
                if host not in hosts:
                    raise BootError(f"router {router} is on {sorted(hosts)}, not {host}")
                return True
            status, reply = cp.api("POST", cp.url(port, f"/v2.0/agents/{agent['id']}/l3-routers"),
                                   {"router_id": router})
            if status not in (0, 409) and status < 500:
                _ok(f"schedule router {router} on {host}", status, reply, 201)
            return False  # look again

        wait_until(scheduled, 60, f"router {router} on the L3 agent of {host}", 1.0)
    subnet = wait_until(lambda: _subnet_of(cp, network_id), 60, f"the subnet of {network_id}")

    def attached() -> bool:
        body = cp.get(port, f"/v2.0/ports?device_id={router}&network_id={network_id}")
        if not isinstance(body, dict):
            return False
        if body.get("ports"):
            return True
        status, reply = cp.api("PUT", cp.url(port, f"/v2.0/routers/{router}/add_router_interface"),
                               {"subnet_id": subnet["id"]})
        if status != 0 and status < 500:
            _ok(f"add router {router}'s interface on {subnet['id']}", status, reply, 200)
        return False  # look again

    wait_until(attached, 60, f"router {router}'s interface on {network_id}", 1.0)
    return router


def floating_ip(cp: ControlPlane, port_id: str) -> tuple[str, str]:
    """A floating IP of the external network on ``port_id``: (id, address).

    The port's subnet must already be on a router with its gateway on that
    network (``ensure_router``), or neutron answers 404 (no external gateway).
    """
    ext = ensure_external_network(cp)

    def attempt() -> tuple[str, str] | None:
        found = cp.get(cp.neutron_port, f"/v2.0/floatingips?port_id={port_id}")
        if isinstance(found, dict) and found.get("floatingips"):
            fip = found["floatingips"][0]
            return fip["id"], fip["floating_ip_address"]
        status, reply = cp.api("POST", cp.url(cp.neutron_port, "/v2.0/floatingips"), {
            "floatingip": {"floating_network_id": ext, "port_id": port_id,
                           "project_id": PROJECT}})
        if status == 0 or status >= 500:
            return None  # ask again
        fip = _ok(f"floating IP on {port_id}", status, reply, 201)["floatingip"]
        return fip["id"], fip["floating_ip_address"]

    return wait_until(attempt, 60, f"a floating IP on port {port_id}", 1.0)


def server(cp: ControlPlane, server_id: str) -> dict | None:
    """The server; {} once nova says 404; None for an answer to ask again
    (a 5xx: sqlite's "database is locked" surfaces as a 500 under load)."""
    status, body = cp.api("GET", cp.url(cp.nova_api_port, f"/v2.1/servers/{server_id}"))
    if status == 404:
        return {}
    if status == 0 or status >= 500:
        return None
    return _ok("get server", status, body).get("server", {})


def console(cp: ControlPlane, server_id: str) -> str:
    """The guest's serial console so far, as nova-compute reads it."""
    status, body = cp.api("POST", cp.url(cp.nova_api_port,
                                         f"/v2.1/servers/{server_id}/action"),
                          {"os-getConsoleOutput": {"length": -1}})
    if status != 200 or not isinstance(body, dict):
        return ""
    return body.get("output") or ""


# nova's fault message when neutron's API answered an error inside the build
# (the port create); with neutron on sqlite that was "database is locked".
NEUTRON_FAULT = "Neutron server returns request_ids"


def _post_and_wait(cp: ControlPlane, host: str, image_id: str, flavor: str, network_id: str,
                   timeout: float) -> tuple[str, dict, float, float]:
    """One POST /servers and its wait: (id, server, t_post, t_active); ERROR raises
    BootError with the fault (``.server_id`` set)."""
    t0 = time.monotonic()
    status, body = cp.api("POST", cp.url(cp.nova_api_port, "/v2.1/servers"), {"server": {
        "name": "demo-vm", "imageRef": image_id, "flavorRef": flavor,
        "networks": [{"uuid": network_id}], "availability_zone": f"nova:{host}"}})
    server_id = _ok("POST /servers", status, body)["server"]["id"]

    def settled() -> dict | None:
        s = server(cp, server_id) or {}
        if s.get("status") == "ERROR":
            exc = BootError(f"server {server_id} ERROR: {s.get('fault')}")
            exc.server_id = server_id
            exc.fault = str((s.get("fault") or {}).get("message", ""))
            raise exc
        return s if s.get("status") == "ACTIVE" else None

    s = wait_until(settled, timeout, f"server {server_id} ACTIVE")
    return server_id, s, t0, time.monotonic()


def boot(cp: ControlPlane, host: str, image_id: str, network_id: str,
         timeout: float = 180, attempts: int = 3,
         log: Callable[[str], None] = lambda _msg: None) -> Booted:
    """POST /servers on ``host``, wait for ACTIVE; ERROR raises BootError with the fault.

    A build that failed on a neutron API error (``NEUTRON_FAULT``: the port
    create inside nova's build) is deleted and asked again, up to ``attempts``
    POSTs, each said through ``log``; ``Booted.attempts`` and ``.faults`` tell.
    Any other fault raises at once.
    """
    cp.wait_boot_apis()
    flavor = ensure_flavor(cp)
    wait_until(lambda: cp.host_mapped(host), 60, f"{host} mapped to a cell by the scheduler")
    faults: list[str] = []
    for attempt in range(1, attempts + 1):
        try:
            server_id, s, t0, t_active = _post_and_wait(cp, host, image_id, flavor,
                                                        network_id, timeout)
            break
        except BootError as exc:
            fault = getattr(exc, "fault", "")
            if NEUTRON_FAULT not in fault or attempt == attempts:
                raise
            faults.append(fault)
            log(f"attempt {attempt}: server {exc.server_id} ERROR on a neutron API error "
                f"({fault[:200]!r}); deleting it and asking again")
            delete(cp, exc.server_id)

    def ports() -> list | None:
        body = cp.get(cp.neutron_port, f"/v2.0/ports?device_id={server_id}")
        return body.get("ports") if isinstance(body, dict) else None

    port = wait_until(ports, 60, f"the port of server {server_id}")[0]
    ip = port.get("fixed_ips", [{}])[0].get("ip_address", "")
    return Booted(server_id, network_id, ip, port.get("id", ""),
                  s.get("OS-EXT-SRV-ATTR:host", ""),
                  {"post": t0, "active": t_active}, attempt, faults)


def delete(cp: ControlPlane, server_id: str, timeout: float = 120) -> None:
    """DELETE, once more if it went to ERROR (sqlite's "database is locked" on the
    port delete, doc/upstream-behaviour.md), until nova says 404."""
    def gone_or_error() -> dict | None:
        s = server(cp, server_id)
        if s is None:
            return None
        return {"gone": not s, "error": s.get("status") == "ERROR"} if (
            not s or s.get("status") == "ERROR") else None

    for _attempt in range(3):
        cp.api("DELETE", cp.url(cp.nova_api_port, f"/v2.1/servers/{server_id}"))
        try:
            state = wait_until(gone_or_error, timeout, f"server {server_id} deleted")
        except TimeoutError:
            raise BootError(f"server {server_id} still there {timeout:g} s after DELETE") from None
        if state["gone"]:
            return
    raise BootError(f"server {server_id}: DELETE left it in ERROR three times")


def kvm_boots(image: guest.GuestImage, timeout: float = 20.0) -> bool:
    """Does this guest's kernel reach /init under KVM here? (A probe, not the VM.)

    On this machine kind /dev/kvm opens but a Linux guest hangs right after the
    decompressor (qemu's default CPU model, as nova's ``cpu_mode = none``
    gives; ``-cpu host`` aborts at once: "failed to set MSR 0x10a"), so nova
    must be told ``virt_type = qemu`` (TCG) instead; the only reliable test
    is to try. qemu is killed after ``timeout``.
    """
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None or not Path("/dev/kvm").exists():
        return False
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            [qemu, "-enable-kvm", "-m", "256", "-nographic", "-no-reboot",
             "-nodefaults", "-serial", "stdio", "-kernel", str(image.kernel),
             "-initrd", str(image.ramdisk), "-append", "console=ttyS0 panic=-1"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        try:
            def reached() -> bool:
                out.seek(0)
                return b"Run /init" in out.read() or proc.poll() is not None
            try:
                wait_until(reached, timeout, "the probe guest to reach /init", 0.5)
            except TimeoutError:
                return False
            out.seek(0)
            return b"Run /init" in out.read()
        finally:
            proc.kill()
            proc.wait(10)
