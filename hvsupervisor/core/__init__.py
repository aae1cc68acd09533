"""The pure core: every supervision decision, from data, with no I/O.

``lifecycle`` (one agent's state machine: events in, actions out),
``restart_policy`` (backoff and flapping), ``deps`` (start and stop order),
``stopbudget`` (how long stops may take), ``stop_drain`` (when a stopping
agent's own log says nothing is left in flight), ``dataplane`` (which leftovers are
the data plane), ``status_line`` (systemd's STATUS=) and ``agent_status`` (the
status objects every output renders). Nothing here imports the shell, the
config layer or a third-party package (tests/unit/test_architecture.py); no
clock, no process, no socket, so unit tests pin each rule down exactly.

``agent_status`` holds the data objects shared by the core and every output, in
the style of os-vif's ``objects/``.

One definition per thing the supervisor reports, so the control socket, the
CLI table, ``--format json``, systemd's ``STATUS=`` and metrics render the
same fields and cannot drift apart. Each object carries a ``VERSION`` and
converts to and from a JSON primitive.

Why not oslo.versionedobjects, as os-vif uses: it pulls oslo.messaging and
oslo.log into every import, and ``hvsupervisor status`` must answer in
under 100 ms (benchmarks/cli_latency.py). These are plain frozen
dataclasses with the same contract: fields declared once, a version bumped
on an incompatible change, unknown fields ignored when read, so an older
CLI can read a newer supervisor's reply.

Pure: no I/O, importable from anywhere (the core, cmd/, the control socket).
"""
