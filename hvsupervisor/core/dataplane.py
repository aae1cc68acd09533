"""Which leftovers of a stop are the data plane. Pure.

The DHCP, L3 and metadata agents start dnsmasq, haproxy, keepalived (and
neutron-keepalived-state-change, radvd, conntrackd) on purpose and leave
them running when they exit, so that VMs keep DHCP, metadata and their
routers while an agent restarts; a new agent finds them through their pid
files and adopts them. A stop of the supervisor keeps them the same way
(``[supervisor] stop_dataplane = false``). Everything else an agent leaves
(its privsep daemons, a worker that missed its master's exit) is not
meant to outlive it and is stopped.

A process is a helper when the base name of its program (argv[0], or
argv[1] after an interpreter, for neutron-keepalived-state-change) is in
the configured list; whatever runs below a helper (keepalived's VRRP
child, haproxy's workers) belongs to it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

INTERPRETERS = ("python", "python3", "perl", "sh", "bash")


def program_names(cmdline: str) -> list[str]:
    """Base names that may name the program: argv[0], and argv[1] after an interpreter."""
    argv = cmdline.split()
    if not argv:
        return []
    names = [os.path.basename(argv[0])]
    if len(argv) > 1 and names[0].rstrip("0123456789.") in INTERPRETERS:
        names.append(os.path.basename(argv[1]))
    return names


def split(left: Mapping[int, str], ppids: Mapping[int, int],
          helpers: Iterable[str]) -> tuple[dict[int, str], dict[int, str]]:
    """(data plane, others) among ``left`` (pid -> cmdline)."""
    wanted = set(helpers)
    keep = {pid for pid, cmd in left.items() if wanted.intersection(program_names(cmd))}
    for pid in left:  # below a helper: part of it
        seen, p = set(), ppids.get(pid)
        while p is not None and p not in seen and p not in keep:
            seen.add(p)
            p = ppids.get(p)
        if p in keep:
            keep.add(pid)
    return ({p: c for p, c in left.items() if p in keep},
            {p: c for p, c in left.items() if p not in keep})
