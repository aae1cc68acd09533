"""Fleet metrics with prometheus_client: a node_exporter textfile and an optional listener.

Why both: node_exporter's textfile collector is what every fleet already
scrapes (no new port, no firewall change), and a listener serves a
Prometheus that scrapes nodes directly. The textfile is written atomically
(prometheus_client writes a temp file and renames it) whenever something a
metric shows has changed, never on a timer: an idle node does not wake up
for it. A missing textfile directory (node_exporter not installed) is
logged once and skipped, never fatal.

They render the same ``NodeStatus`` as ``hvsupervisor status`` and the
control socket (core/agent_status.py), so a scrape and the CLI never disagree.

Series (labels ``agent``):

* ``hvsupervisor_agent_up``: a process is running;
* ``hvsupervisor_agent_ready``: the agent is ready (its ready rule holds);
* ``hvsupervisor_agent_healthy``: 1 ok, 0 failing, -1 unknown (no probe yet
  or no probe kind);
* ``hvsupervisor_agent_restarts_total``;
* ``hvsupervisor_agent_last_exit_code``: last exit status (a signal as
  128+N, as shells do), -1 if it never exited;
* ``hvsupervisor_agent_probe_duration_seconds``, ``..._probe_timestamp_seconds``;
* ``hvsupervisor_agent_probe_failures``: consecutive unanswered probes;
* ``hvsupervisor_control_plane_reachable``: 1, 0, or -1 when not known yet;
* ``hvsupervisor_compute_instances``: guests running here (libvirt), -1 not known;
* ``hvsupervisor_compute_service_disabled``: 1, 0, or -1 when not known (always,
  for now: supervisor/instances.py says why);
* ``hvsupervisor_ready``: READY=1 was sent and every agent is ready;
* ``hvsupervisor_info{version}``: 1.
"""

from __future__ import annotations

import logging
import os
import re

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import generate_latest

from hvsupervisor import __version__
from hvsupervisor.core.agent_status import AgentStatus, NodeStatus

LOG = logging.getLogger("hvsupervisor.metrics")


_SIGNAL = re.compile(r"^signal (\d+)")
_EXIT = re.compile(r"^exit (-?\d+)")


def exit_code(last_exit: str | None) -> int:
    """"exit 1 (...)" -> 1, "signal 9 (SIGKILL)" -> 137, None -> -1."""
    if not last_exit:
        return -1
    m = _EXIT.match(last_exit)
    if m:
        return int(m.group(1))
    m = _SIGNAL.match(last_exit)
    if m:
        return 128 + int(m.group(1))
    return -1


class _Restarts:
    """``hvsupervisor_agent_restarts_total`` as a real counter (promtool insists on the
    type for a ``_total`` name); prometheus_client's Counter cannot be set to the
    lifecycle's own count, so it is emitted as a metric family."""

    def __init__(self, agents: tuple[AgentStatus, ...]):
        self.agents = agents

    def collect(self):
        fam = CounterMetricFamily("hvsupervisor_agent_restarts",
                                  "Restarts since the supervisor started (automatic or "
                                  "requested).", labels=["agent"])
        for a in self.agents:
            fam.add_metric([a.name], a.restarts)
        yield fam


def healthy(agent: AgentStatus) -> int:
    """Liveness as a number: 1 ok, 0 failing, -1 unknown or no probe kind."""
    state = (agent.health or {}).get("state")
    return {"ok": 1, "failing": 0}.get(str(state), -1)


def build_registry(node: NodeStatus) -> CollectorRegistry:
    """The node's status as a fresh registry (one per change: cheap, and no stale
    label survives an agent that left the catalog on a reload)."""
    reg = CollectorRegistry()
    labels = ["agent"]
    g = {
        "up": Gauge("hvsupervisor_agent_up", "1 if the agent's process is running.",
                    labels, registry=reg),
        "ready": Gauge("hvsupervisor_agent_ready", "1 if the agent is ready (serving).",
                       labels, registry=reg),
        "healthy": Gauge("hvsupervisor_agent_healthy",
                         "Liveness: 1 ok, 0 failing, -1 unknown.", labels, registry=reg),
        "exit": Gauge("hvsupervisor_agent_last_exit_code",
                      "Last exit status (128+N for signal N), -1 if it never exited.",
                      labels, registry=reg),
        "dur": Gauge("hvsupervisor_agent_probe_duration_seconds",
                     "Duration of the agent's last readiness/liveness probe.",
                     labels, registry=reg),
        "ts": Gauge("hvsupervisor_agent_probe_timestamp_seconds",
                    "Unix time of the agent's last probe.", labels, registry=reg),
        "fail": Gauge("hvsupervisor_agent_probe_failures",
                      "Consecutive unanswered liveness probes.", labels, registry=reg),
        "pending": Gauge("hvsupervisor_agent_restart_pending",
                         "1 if the agent's code changed after it started (a package "
                         "upgrade): it runs old code until restarted.", labels, registry=reg),
    }
    agents = node.agents
    reg.register(_Restarts(agents))
    for a in agents:
        h = a.health or {}
        g["up"].labels(a.name).set(1 if a.pid is not None else 0)
        g["ready"].labels(a.name).set(1 if a.ready else 0)
        g["healthy"].labels(a.name).set(healthy(a))
        g["exit"].labels(a.name).set(exit_code(a.last_exit))
        g["fail"].labels(a.name).set(int(h.get("failures") or 0))
        g["pending"].labels(a.name).set(1 if a.restart_pending else 0)
        if h.get("last_duration") is not None:
            g["dur"].labels(a.name).set(h["last_duration"])
        if h.get("last_probe") is not None:
            g["ts"].labels(a.name).set(h["last_probe"])
    cp = Gauge("hvsupervisor_control_plane_reachable",
               "1 if the agents' message bus is reachable, 0 if not, -1 not known yet.",
               registry=reg)
    cp.set({"reachable": 1, "unreachable": 0}.get(node.control_plane, -1))
    if node.instances is not None or node.compute_disabled_reason:  # nova-compute runs here
        Gauge("hvsupervisor_compute_instances",
              "Guests running on this node (libvirt's active domains), -1 if not known.",
              registry=reg).set(-1 if node.instances is None else node.instances)
        Gauge("hvsupervisor_compute_service_disabled",
              "1 if nova has this node's compute service disabled, 0 if not, -1 not known.",
              registry=reg).set({"yes": 1, "no": 0}.get(node.compute_disabled, -1))
    Gauge("hvsupervisor_ready", "1 if READY=1 was sent and every agent is ready.",
          registry=reg).set(1 if node.ready else 0)
    Gauge("hvsupervisor_info", "The supervisor's version.", ["version"],
          registry=reg).labels(__version__).set(1)
    return reg


class MetricsSink:
    """Where the metrics go: the textfile (atomically) and the optional listener."""

    def __init__(self, textfile: str, listen: str = ""):
        self.textfile = textfile
        self.listen = listen
        self._warned = False
        self._latest = b""
        self._server = None
        self._registry: CollectorRegistry | None = None

    def start(self) -> None:
        """Start the optional listener (a daemon thread of prometheus_client's)."""
        if not self.listen:
            return
        from prometheus_client import start_http_server

        host, _, port = self.listen.rpartition(":")
        sink = self

        class _Live:  # a collector that replays the latest registry
            def collect(self):
                return sink._registry.collect() if sink._registry is not None else []

        reg = CollectorRegistry()
        reg.register(_Live())
        self._server, _thread = start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1",
                                                  registry=reg)
        LOG.info("event=metrics-listen address=%s", self.listen)

    def update(self, reg: CollectorRegistry) -> None:
        self._registry = reg
        data = generate_latest(reg)
        if data == self._latest:
            return
        self._latest = data
        if not self.textfile:
            return
        directory = os.path.dirname(self.textfile) or "."
        if not os.path.isdir(directory):
            if not self._warned:
                LOG.warning("metrics_textfile: directory %s does not exist (node_exporter's "
                            "textfile collector not installed?); not writing metrics there",
                            directory)
                self._warned = True
            return
        try:
            write_to_textfile(self.textfile, reg)
        except OSError as exc:
            if not self._warned:
                LOG.warning("metrics_textfile %s: %s", self.textfile, exc)
                self._warned = True

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
