"""Host gates: the host services agents depend on, and ``check``'s host rows.

``gate`` holds the interface (``Gate``, ``GateStatus``), ``watch`` the shared
retry/backoff loop, ``libvirt`` and ``ovsdb`` the two gates (with the
config-to-settings rules ``libvirt_uri`` and ``ovsdb_settings``), and
``preflight`` the one-shot check rows and their table/JSON rendering.
"""
