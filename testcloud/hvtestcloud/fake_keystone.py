"""A paste filter that stands in for keystone in the hvtestcloud/test cloud.

Why: nova 34's ``api-paste.ini`` has no ``noauth2`` pipeline any more, only
keystone's (``authtoken`` then ``keystonecontext``), and glance with an
empty paste flavor builds a context with no roles, which its policies refuse
(doc/upstream-behaviour.md, "Booting a VM"). There is no keystone here, so
this filter, put where ``authtoken`` was, sets the headers keystonemiddleware
would have set for a validated token. The services' own context middleware
(nova's ``NovaKeystoneContext``, glance's ``ContextMiddleware``) then build a
normal request context from them.

Token ``admin`` (what every client of the demo cloud sends) gets the roles
admin, member, reader and service in project ``admin``; any other token gets
member and reader in the project named by ``X-Project-Id`` (default: the
token). This is for a throwaway cloud on loopback only: it authenticates
nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

ADMIN_TOKEN = "admin"
ADMIN_ROLES = "admin,member,reader,service"
USER_ROLES = "member,reader"

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]


def identity_headers(environ: Mapping[str, Any]) -> dict[str, str]:
    """The WSGI environ keys keystonemiddleware sets for a confirmed token."""
    token = environ.get("HTTP_X_AUTH_TOKEN") or ADMIN_TOKEN
    admin = token == ADMIN_TOKEN
    project = environ.get("HTTP_X_PROJECT_ID") or ("admin" if admin else token)
    user = "admin" if admin else f"user-{project}"
    return {
        "HTTP_X_AUTH_TOKEN": token,
        "HTTP_X_IDENTITY_STATUS": "Confirmed",
        "HTTP_X_USER_ID": user,
        "HTTP_X_USER_NAME": user,
        "HTTP_X_USER_DOMAIN_ID": "default",
        "HTTP_X_PROJECT_ID": project,
        "HTTP_X_TENANT_ID": project,
        "HTTP_X_PROJECT_NAME": project,
        "HTTP_X_PROJECT_DOMAIN_ID": "default",
        "HTTP_X_ROLES": ADMIN_ROLES if admin else USER_ROLES,
        "HTTP_X_SERVICE_CATALOG": "[]",
    }


class IdentityFilter:
    """WSGI middleware: identity headers in, the wrapped app unchanged."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        environ.update(identity_headers(environ))
        return self.app(environ, start_response)


def filter_factory(_global_conf: Mapping[str, str], **_local_conf: str
                   ) -> Callable[[WSGIApp], IdentityFilter]:
    """``paste.filter_factory = hvtestcloud.fake_keystone:filter_factory``."""
    return IdentityFilter
