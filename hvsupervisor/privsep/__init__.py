"""Agents as their own users: the privilege drop and the root-side privsep broker.

* ``identity``: who an agent runs as (user, group, supplementary groups),
  resolved from the catalog, and the ``setpriv`` argv that drops to it.
* ``policy``: the pure rules the broker applies to a request.
* ``broker``: the root-side server inside the supervisor.
* ``client``: the tiny console script agents run as ``helper_command`` and
  ``root_helper``.

What this gains and what it does not: README.md, "Agents as their own users".
"""
