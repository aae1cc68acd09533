"""The host commands the upstream agents exec, and ``check``'s row for them.

The agents are Python, but serving needs programs from the host's packages,
run through privsep or directly. A minimal Debian 12 has none of them, and
several fail quietly: without ``arping`` the L3 agent's gratuitous ARPs are a
DEBUG line; without ``netstat`` ``hvsupervisor-netns-cleanup --force`` leaves
every namespace it meant to delete, with one ERROR in its own log (both seen
on a pristine Debian 12; doc/upstream-behaviour.md section 1). ``check``
names each missing program with the Debian package that ships it, so one
``apt-get install`` line fixes the host.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable, Iterable, Mapping

from hvsupervisor.host.preflight import CheckRow, Status


@dataclasses.dataclass(frozen=True)
class Tool:
    command: str
    package: str  # the Debian 12 package that ships it
    agents: tuple[str, ...]  # who execs it
    status: Status  # the row's status when it is missing: fail = the agent cannot serve
    why: str


TOOLS: tuple[Tool, ...] = (
    Tool("ip", "iproute2", ("neutron-openvswitch-agent", "neutron-dhcp-agent",
                            "neutron-l3-agent"), "fail", "namespaces, devices, addresses"),
    Tool("dnsmasq", "dnsmasq-base", ("neutron-dhcp-agent",), "fail", "the DHCP server"),
    Tool("haproxy", "haproxy", ("neutron-dhcp-agent", "neutron-l3-agent"), "fail",
         "the metadata proxy in qdhcp-/qrouter- namespaces"),
    Tool("iptables-restore", "iptables", ("neutron-l3-agent",), "fail", "router NAT"),
    Tool("arping", "iputils-arping", ("neutron-l3-agent",), "warn",
         "gratuitous ARP for router and floating IPs (fails quietly)"),
    Tool("netstat", "net-tools", ("neutron-dhcp-agent", "neutron-l3-agent"), "warn",
         "hvsupervisor-netns-cleanup --force finds a namespace's listeners with it"),
    Tool("qemu-img", "qemu-utils", ("nova-compute",), "fail", "the libvirt driver's disks"),
)


def missing_tools(agents: Iterable[str], path_of: Mapping[str, str],
                  which: Callable[..., str | None] = shutil.which) -> list[tuple[Tool, str]]:
    """(tool, first agent that needs it) for each tool no enabled agent's PATH finds.

    ``path_of`` is each agent's PATH as the agent will see it (its plan's
    environment); ``qemu-img`` only counts for a libvirt nova-compute, which
    the caller says by listing it.
    """
    enabled = set(agents)
    out = []
    for tool in TOOLS:
        users = [a for a in tool.agents if a in enabled]
        if not users:
            continue
        if any(which(tool.command, path=path_of.get(a) or os.defpath) for a in users):
            continue
        out.append((tool, users[0]))
    return out


def tools_row(agents: Iterable[str], path_of: Mapping[str, str],
              which: Callable[..., str | None] = shutil.which) -> CheckRow:
    """One row: ok, or every missing program with its package and what breaks."""
    enabled = sorted(set(agents))
    missing = missing_tools(enabled, path_of, which)
    if not missing:
        wanted = [t.command for t in TOOLS if set(t.agents) & set(enabled)]
        return CheckRow("host tools", "ok", f"found: {', '.join(wanted) or 'none needed'}")
    status: Status = "fail" if any(t.status == "fail" for t, _ in missing) else "warn"
    parts = [f"{t.command} ({t.package}; {agent}: {t.why})" for t, agent in missing]
    packages = " ".join(sorted({t.package for t, _ in missing}))
    return CheckRow("host tools", status,
                    f"missing {'; '.join(parts)}; apt-get install {packages}")
