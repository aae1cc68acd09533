"""A WSGI app for the launcher test: answers with the sys.argv it was built with.

Like nova's and neutron's apps it reads ``sys.argv`` at import time, which is
exactly what the launcher must arrange.
"""

import json
import os
import sys

ARGV = list(sys.argv)


def application(environ, start_response):
    body = json.dumps({"argv": ARGV, "pid": os.getpid()}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
