"""The Litestar application: API, webhooks, pages, the live dashboard, health and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

from granian.utils.proxies import wrap_asgi_with_proxy_headers
from litestar import Litestar
from litestar.channels import ChannelsPlugin
from litestar.channels.backends.redis import RedisChannelsPubSubBackend
from litestar.config.csrf import CSRFConfig
from litestar.config.response_cache import ResponseCacheConfig
from litestar.contrib.jinja import JinjaTemplateEngine
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.static_files import create_static_files_router
from litestar.template import TemplateConfig
from litestar.types import ASGIApp
from redis.asyncio import Redis

from refundwatch.auth.apikeys import ApiKeyAuthenticator
from refundwatch.auth.controllers import AuthController
from refundwatch.auth.guards import PAGE_EXCEPTION_HANDLERS
from refundwatch.auth.oidc import OidcProvider
from refundwatch.auth.sessions import SessionStore
from refundwatch.config import get_settings
from refundwatch.dashboard.broadcast import Broadcaster
from refundwatch.dashboard.controllers import LiveSubscriber
from refundwatch.health.controllers import healthz, metrics, readyz, warn_if_metrics_open
from refundwatch.logs import configure_logging
from refundwatch.outgoing.controllers import WebhookEndpointController
from refundwatch.reconciliation.controllers import ReconciliationController
from refundwatch.refunds.controllers import PaymentController, RefundController
from refundwatch.runtime import Runtime
from refundwatch.web.allow import allow_before_send
from refundwatch.web.assets import asset_dirs
from refundwatch.web.error_pages import load_viewer
from refundwatch.web.errors import EXCEPTION_HANDLERS
from refundwatch.web.openapi import COMPONENTS, complete_document
from refundwatch.web.pages import pages_router
from refundwatch.web.requestlog import request_id_middleware
from refundwatch.web.security import security_before_send, security_middleware
from refundwatch.web.templating import register_filters
from refundwatch.webhooks.controllers import webhook


def create_asgi() -> ASGIApp:
    """What the server runs: the app, behind the proxy-headers wrapper when proxies are trusted."""
    app = create_app()
    proxies = [p.strip() for p in get_settings().trusted_proxies.split(",") if p.strip()]
    if not proxies:
        return app
    return cast(ASGIApp, wrap_asgi_with_proxy_headers(app, trusted_hosts=proxies))


def create_app() -> Litestar:
    settings = get_settings()
    configure_logging(settings)
    warn_if_metrics_open(settings)
    rt = Runtime.build(settings)
    assets = asset_dirs()
    # Live updates travel on their own Redis connection (a subscribed connection can do nothing else).
    channels_redis = Redis.from_url(settings.redis_url)
    channels = ChannelsPlugin(
        backend=RedisChannelsPubSubBackend(redis=channels_redis, key_prefix="refundwatch:channels"),
        arbitrary_channels_allowed=True,
        subscriber_class=LiveSubscriber,
        # A viewer that cannot keep up skips old frames: each message is a whole panel anyway.
        subscriber_max_backlog=64,
        subscriber_backlog_strategy="dropleft",
    )

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await rt.open(wait_for_redis=False)  # /readyz says 503 until Redis answers
        app.state.rt = rt
        app.state.apikeys = ApiKeyAuthenticator(rt.db)
        app.state.sessions = SessionStore(
            rt.require_redis(),
            rt.cipher,
            idle_seconds=settings.session_idle_minutes * 60,
            absolute_seconds=settings.session_absolute_hours * 3600,
        )
        app.state.oidc = OidcProvider(settings, rt.require_redis(), rt.require_http())
        env = app.template_engine.engine  # type: ignore[union-attr]
        broadcaster = asyncio.create_task(Broadcaster(rt, channels, env).run(), name="refundwatch-live")
        # Everything loaded so far lives as long as the process: keep it out of the collector's full
        # passes, which otherwise pause the event loop for ~90 ms every few hundred pages.
        gc.freeze()
        try:
            yield
        finally:
            broadcaster.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await broadcaster
            await channels_redis.aclose()
            await rt.close()

    app = Litestar(
        route_handlers=[
            RefundController,
            PaymentController,
            ReconciliationController,
            WebhookEndpointController,
            webhook,
            AuthController,
            pages_router(),
            healthz,
            readyz,
            metrics,
            create_static_files_router(path="/static", directories=[assets.static], include_in_schema=False),
        ],
        lifespan=[lifespan],
        exception_handlers={**EXCEPTION_HANDLERS, **PAGE_EXCEPTION_HANDLERS},
        after_exception=[load_viewer],  # error pages keep a signed-in person's header (web.error_pages)
        csrf_config=CSRFConfig(
            secret=settings.effective_secret_key,
            cookie_name="rw_csrf",
            cookie_httponly=True,
            cookie_secure=settings.is_https,
            cookie_samesite="lax",
            # The API authenticates with bearer tokens (no cookies), webhooks with signatures.
            exclude=["^/api/", "^/webhooks/", "^/healthz", "^/readyz", "^/metrics", "^/static/", "^/schema"],
        ),
        template_config=TemplateConfig(
            directory=assets.templates,
            engine=JinjaTemplateEngine,
            engine_callback=lambda engine: register_filters(engine.engine),
        ),
        plugins=[channels],
        openapi_config=OpenAPIConfig(
            title="refundwatch",
            version="0.1.0",
            path="/schema",
            render_plugins=[SwaggerRenderPlugin()],
            components=COMPONENTS,
        ),
        response_cache_config=ResponseCacheConfig(),
        request_max_body_size=256 * 1024,
        # Outermost first: every request gets its id before anything can log about it.
        middleware=[request_id_middleware, *security_middleware(settings)],
        # Unmatched paths and methods never reach app middleware: they get the headers here.
        before_send=[security_before_send(settings), allow_before_send],
        debug=False,
        # Our own structured, scrubbed logging (logs.py) stays in charge: Litestar's default
        # logging config would replace the root handler with its plain one.
        logging_config=None,
    )
    complete_document(app)
    return app
