"""``[supervisor] upgrade_gate_command`` of the e2e upgrade test: does the control plane see
this node on the new release? Run in the cloud's netns (its APIs are on its loopback).

    python upgrade_gate.py HOST NOVA_DB NEUTRON_URL MIN_SERVICE_VERSION SINCE

Exit 0 when nova's services table has HOST's nova-compute at service version >=
MIN_SERVICE_VERSION, reported after SINCE (UTC, nova's own format), and neutron's
API lists the four agents of HOST alive; else exit 1 with what is missing.
Stdlib only: it runs under any python.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import urllib.request

AGENTS = {"neutron-openvswitch-agent", "neutron-dhcp-agent", "neutron-l3-agent",
          "neutron-metadata-agent"}


def main(host: str, nova_db: str, neutron: str, min_version: str, since: str) -> int:
    with sqlite3.connect(f"file:{nova_db}?mode=ro", uri=True) as db:
        row = db.execute("SELECT version, updated_at FROM services WHERE host=? AND "
                         "binary='nova-compute' AND deleted=0", (host,)).fetchone()
    if row is None:
        print(f"no nova-compute service for {host}")
        return 1
    version, updated = row
    if int(version) < int(min_version) or not updated or updated < since:
        print(f"nova-compute on {host}: service version {version} (want >= {min_version}), "
              f"last report {updated} (want after {since})")
        return 1
    req = urllib.request.Request(f"{neutron}/v2.0/agents?host={host}",
                                 headers={"X-Auth-Token": "admin"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        agents = json.load(resp)["agents"]
    alive = {a["binary"] for a in agents if a.get("alive")}
    if not AGENTS <= alive:
        print(f"neutron agents of {host} not alive: {sorted(AGENTS - alive)}")
        return 1
    print(f"nova-compute {host} at service version {version}; neutron agents alive")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))
