"""One RPC call to a nova-compute, as nova's API would make it; run inside the cloud's netns.

``python -m tests.e2e.compute_call TRANSPORT_URL HOST METHOD [JSON_KWARGS]``
calls METHOD on Target(exchange nova, topic compute, server HOST, 6.0) and
prints the result as one JSON line. tests/e2e/test_libvirt_compute.py uses it
to put a task in flight in nova-compute (every compute RPC method not marked
``skip_automatic_rpc_tracking`` is an in-progress task of nova 34's graceful
shutdown: nova/service.py ``_TrackingEndpointWrapper``).
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    import oslo_messaging as om

    from hvsupervisor.health.prober import Bus  # its conf has the options a client reads

    url, host, method = argv[:3]
    kwargs = json.loads(argv[3]) if len(argv) > 3 else {}
    transport = Bus(url).transport
    target = om.Target(exchange="nova", topic="compute", server=host, version="6.0")
    client = om.get_rpc_client(transport, target, timeout=300)
    try:
        result = client.call({}, method, **kwargs)
    except Exception as exc:  # the test reads nova's log, this only reports
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 1
    finally:
        transport.cleanup()
    print(json.dumps({"result": result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
