"""HTTP API for outgoing webhook endpoints (CONTRACT §4): scope ``webhooks:write``. Handlers parse,
call one service, render."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, delete, get, patch, post
from litestar.di import Provide

from refundwatch.auth.apikeys import Principal
from refundwatch.outgoing import endpoints
from refundwatch.outgoing.endpoints import (
    EndpointCreate,
    EndpointList,
    EndpointOut,
    EndpointUpdate,
    EndpointWithSecret,
    SecretRotation,
)
from refundwatch.web.auth import api_actor, principal, require_scopes
from refundwatch.web.state import runtime_of

WRITE = {"scopes": ["webhooks:write"]}
SOURCE = "api"


class WebhookEndpointController(Controller):
    path = "/api/v1/webhook-endpoints"
    dependencies = {"who": Provide(principal)}
    guards = [require_scopes]
    tags = ["webhook endpoints"]

    @post("/", opt=WRITE, status_code=201)
    async def create(
        self, request: Request[Any, Any, Any], who: Principal, data: EndpointCreate
    ) -> EndpointWithSecret:
        """Register an endpoint. The answer carries its signing ``secret`` (``whsec_…``), shown this once."""
        return await endpoints.create_endpoint(
            runtime_of(request), data, actor=api_actor(request, who), source=SOURCE, created_by=who.identity
        )

    @get("/", opt=WRITE)
    async def list_all(self, request: Request[Any, Any, Any], who: Principal) -> EndpointList:
        return EndpointList(await endpoints.list_endpoints(runtime_of(request)))

    @get("/{endpoint_id:uuid}", opt=WRITE)
    async def one(self, request: Request[Any, Any, Any], who: Principal, endpoint_id: UUID) -> EndpointOut:
        return await endpoints.get_endpoint(runtime_of(request), endpoint_id)

    @patch("/{endpoint_id:uuid}", opt=WRITE)
    async def update(
        self, request: Request[Any, Any, Any], who: Principal, endpoint_id: UUID, data: EndpointUpdate
    ) -> EndpointOut:
        return await endpoints.update_endpoint(
            runtime_of(request), endpoint_id, data, actor=api_actor(request, who), source=SOURCE
        )

    @delete("/{endpoint_id:uuid}", opt=WRITE, status_code=204)
    async def remove(self, request: Request[Any, Any, Any], who: Principal, endpoint_id: UUID) -> None:
        await endpoints.delete_endpoint(
            runtime_of(request), endpoint_id, actor=api_actor(request, who), source=SOURCE
        )

    @post("/{endpoint_id:uuid}/rotate-secret", opt=WRITE, status_code=200)
    async def rotate(
        self,
        request: Request[Any, Any, Any],
        who: Principal,
        endpoint_id: UUID,
        data: SecretRotation | None = None,
    ) -> EndpointWithSecret:
        """A new signing secret, shown this once; the previous one also signs for ``overlap_hours``."""
        overlap = (data or SecretRotation()).overlap_hours
        return await endpoints.rotate_secret(
            runtime_of(request),
            endpoint_id,
            actor=api_actor(request, who),
            source=SOURCE,
            overlap_hours=overlap,
        )
