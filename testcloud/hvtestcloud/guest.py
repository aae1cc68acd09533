"""A tiny guest for the boot test and ``hvsupervisor demo --boot``: no download.

The kernel is the host's Debian ``linux-image-amd64`` (``/boot/vmlinuz-*``);
the initramfs is built here from ``busybox-static`` and that kernel's virtio
modules. Its ``/init`` brings up the NIC, then loops for ever: a DHCP lease
(``udhcpc``), then a fetch of ``meta_data.json`` from 169.254.169.254, each
printed on the serial console with a counter, so that a test can see the
first lease and metadata line, and later fresh ones (after agent restarts).

Guest-side facts it relies on (doc/upstream-behaviour.md, "Booting a VM"):

- ``virtio_net csum=0 gso=0``: with the offloads on, the DHCP exchange works
  but every TCP segment from the guest reaches the metadata proxy in the
  qdhcp namespace with a bad checksum on the userspace datapath;
- busybox 1.35's ``wget -T`` segfaults, so the fetch is bounded by
  ``timeout 10 wget`` instead;
- the route to 169.254.169.254 comes as DHCP option 121 (``staticroutes``
  in udhcpc's script) from the DHCP agent with ``force_metadata``; dnsmasq
  sends it only when asked, and busybox's udhcpc asks only with
  ``-O staticroutes`` (without it: "Network is unreachable").

The console lines (``MARK``): ``hvsup-guest n=N ip=A.B.C.D`` and
``hvsup-guest n=N uuid=UUID``; ``parse_console`` reads them back.
"""

from __future__ import annotations

import gzip
import io
import lzma
import re
from dataclasses import dataclass
from pathlib import Path

MARK = "hvsup-guest"
BUSYBOX = Path("/bin/busybox")
# Loaded in this order, each after what modules.dep says it needs.
WANTED_MODULES = ("virtio_pci", "virtio_net")
KERNEL_CMDLINE = "console=ttyS0 quiet"

_INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
for m in $(cat /modules.order); do
  case "$m" in
    */virtio_net.ko) insmod "$m" csum=0 gso=0 ;;
    *) insmod "$m" ;;
  esac
done
ip link set lo up
ip link set eth0 up
n=0
while true; do
  n=$((n+1))
  if udhcpc -i eth0 -s /udhcpc.sh -q -n -t 5 -T 2 -O staticroutes >/dev/null 2>&1; then
    echo "@MARK@ n=$n ip=$(cat /tmp/ip)"
  else
    echo "@MARK@ n=$n dhcp=failed"
  fi
  body=$(timeout 10 wget -q -O - http://169.254.169.254/openstack/latest/meta_data.json)
  uuid=$(echo "$body" | sed -n 's/.*"uuid": *"\\([0-9a-f-]*\\)".*/\\1/p')
  echo "@MARK@ n=$n uuid=${uuid:-none}"
  sleep 3
done
""".replace("@MARK@", MARK)

# udhcpc's hook: address, option 121 routes (staticroutes: "net/len gw ..."), router.
# ``deconfig`` (udhcpc calls it as every round starts) keeps the address, so the
# guest stays reachable (its floating IP answers) while the round's DHCP exchange
# runs; a round still counts only if it got a lease (``ip=`` is printed on success).
_UDHCPC = """#!/bin/busybox sh
case "$1" in
  deconfig) ;;
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    echo "$ip" > /tmp/ip
    set -- $staticroutes
    while [ $# -ge 2 ]; do ip route replace "$1" via "$2" dev "$interface"; shift 2; done
    for r in $router; do ip route replace default via "$r" dev "$interface"; break; done
    ;;
esac
exit 0
"""


@dataclass(frozen=True)
class GuestImage:
    kernel: Path
    ramdisk: Path
    kernel_release: str


def host_kernel(boot: Path = Path("/boot"), modules: Path = Path("/lib/modules")
                ) -> tuple[Path, Path]:
    """The newest ``vmlinuz-R`` that has ``/lib/modules/R``; FileNotFoundError if none."""
    found = sorted((p for p in boot.glob("vmlinuz-*")
                    if (modules / p.name.removeprefix("vmlinuz-")).is_dir()),
                   key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"no {boot}/vmlinuz-* with its {modules}/<release>: "
                                "install linux-image-amd64")
    kernel = found[-1]
    return kernel, modules / kernel.name.removeprefix("vmlinuz-")


def module_order(moddir: Path, wanted: tuple[str, ...] = WANTED_MODULES) -> list[str]:
    """Relative .ko paths of ``wanted`` and their dependencies, dependencies first."""
    deps: dict[str, list[str]] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        mod, _, rest = line.partition(":")
        deps[mod] = rest.split()
    by_name = {re.sub(r"\.ko(\.\w+)?$", "", Path(m).name).replace("-", "_"): m for m in deps}
    order: list[str] = []

    def visit(mod: str) -> None:
        for dep in reversed(deps.get(mod, [])):  # modules.dep lists them last-loaded first
            visit(dep)
        if mod not in order:
            order.append(mod)

    for name in wanted:
        if name not in by_name:
            raise FileNotFoundError(f"module {name} not in {moddir}/modules.dep")
        visit(by_name[name])
    return order


def _read_module(path: Path) -> bytes:
    """busybox insmod reads plain .ko only: decompress .ko.xz / .ko.gz."""
    data = path.read_bytes()
    if path.suffix == ".xz":
        return lzma.decompress(data)
    if path.suffix == ".gz":
        return gzip.decompress(data)
    return data


class _Cpio:
    """A ``newc`` cpio archive, the format the kernel unpacks as initramfs."""

    def __init__(self) -> None:
        self.out = io.BytesIO()
        self.ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)
               ) -> None:
        fields = [self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1],
                  len(name) + 1, 0]
        self.ino += 1
        head = b"070701" + b"".join(b"%08X" % f for f in fields) + name.encode() + b"\0"
        self.out.write(head + b"\0" * (-len(head) % 4))
        self.out.write(data + b"\0" * (-len(data) % 4))

    def dir(self, name: str) -> None:
        self._entry(name, 0o040755)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._entry(name, 0o100000 | perm, data)

    def chardev(self, name: str, major: int, minor: int) -> None:
        self._entry(name, 0o020600, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self.out.getvalue()


def build(workdir: Path) -> GuestImage:
    """Kernel path and a fresh ``initramfs.gz`` under ``workdir``."""
    if not BUSYBOX.exists():
        raise FileNotFoundError(f"{BUSYBOX} missing: install busybox-static")
    kernel, moddir = host_kernel()
    mods = module_order(moddir)
    cpio = _Cpio()
    for d in ("bin", "dev", "proc", "sys", "tmp", "lib", "lib/modules"):
        cpio.dir(d)
    cpio.chardev("dev/console", 5, 1)
    cpio.file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
    cpio.file("init", _INIT.encode(), 0o755)
    cpio.file("udhcpc.sh", _UDHCPC.encode(), 0o755)
    names = []
    for rel in mods:
        name = "lib/modules/" + re.sub(r"\.(xz|gz)$", "", Path(rel).name)
        cpio.file(name, _read_module(moddir / rel))
        names.append("/" + name)
    cpio.file("modules.order", ("\n".join(names) + "\n").encode())
    workdir.mkdir(parents=True, exist_ok=True)
    ramdisk = workdir / "initramfs.gz"
    ramdisk.write_bytes(gzip.compress(cpio.finish(), compresslevel=6))
    return GuestImage(kernel, ramdisk, moddir.name)


_LINE = re.compile(MARK + r" n=(\d+) (ip|uuid|dhcp)=(\S+)")


def parse_console(text: str) -> list[tuple[int, str, str]]:
    """``(n, kind, value)`` for every guest line in console output, in order."""
    return [(int(m.group(1)), m.group(2), m.group(3)) for m in _LINE.finditer(text)]
