"""Per-process objects kept on the Litestar app's state."""

from __future__ import annotations

from typing import Any

from litestar import Litestar

from refundwatch.auth.apikeys import ApiKeyAuthenticator
from refundwatch.runtime import Runtime


def runtime(app: Litestar) -> Runtime:
    rt: Runtime = app.state.rt
    return rt


def authenticator(app: Litestar) -> ApiKeyAuthenticator:
    auth: ApiKeyAuthenticator = app.state.apikeys
    return auth


def runtime_of(request: Any) -> Runtime:
    return runtime(request.app)
