"""``hvsupervisor demo``: a self-contained hypervisor node under one directory.

Private Open vSwitch and RabbitMQ (``services``), the override snippets that
point the shipped defaults at them (``profile``), and the foreground run with
its teardown (``node``). The e2e harness reuses ``services`` and ``profile``.
"""
