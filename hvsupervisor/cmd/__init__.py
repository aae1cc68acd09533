"""The ``hvsupervisor`` command line, one module per verb (as ``nova/cmd``).

``cli`` parses and dispatches; each verb module has ``main(args) -> int`` and
is imported only when its verb runs, so ``hvsupervisor status`` never pays
for oslo.config, oslo.log or the supervisor. Modules here import the core;
nothing outside ``cmd/`` imports them (see doc/architecture.md).
"""
