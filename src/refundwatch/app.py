"""The Litestar application: API, webhooks, pages, health and metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from litestar import Litestar
from litestar.config.response_cache import ResponseCacheConfig
from litestar.contrib.jinja import JinjaTemplateEngine
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.static_files import create_static_files_router
from litestar.template import TemplateConfig

from refundwatch.auth.apikeys import ApiKeyAuthenticator
from refundwatch.config import get_settings
from refundwatch.health.controllers import healthz, metrics, readyz
from refundwatch.logs import configure_logging
from refundwatch.refunds.controllers import PaymentController, RefundController
from refundwatch.runtime import Runtime
from refundwatch.web.errors import EXCEPTION_HANDLERS
from refundwatch.web.pages import status_page
from refundwatch.webhooks.controllers import webhook

ROOT = Path(__file__).resolve().parents[2]


def create_app() -> Litestar:
    settings = get_settings()
    configure_logging(settings)
    rt = Runtime.build(settings)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await rt.open()
        app.state.rt = rt
        app.state.apikeys = ApiKeyAuthenticator(rt.db)
        try:
            yield
        finally:
            await rt.close()

    return Litestar(
        route_handlers=[
            RefundController,
            PaymentController,
            webhook,
            healthz,
            readyz,
            metrics,
            status_page,
            create_static_files_router(
                path="/static", directories=[ROOT / "static"], include_in_schema=False
            ),
        ],
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        template_config=TemplateConfig(directory=ROOT / "templates", engine=JinjaTemplateEngine),
        openapi_config=OpenAPIConfig(
            title="refundwatch",
            version="0.1.0",
            path="/schema",
            render_plugins=[SwaggerRenderPlugin()],
        ),
        response_cache_config=ResponseCacheConfig(),
        request_max_body_size=256 * 1024,
        debug=False,
    )
