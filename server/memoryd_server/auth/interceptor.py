"""The auth interceptor: who is calling, and may they call this RPC."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc
import grpc.aio
import structlog

from memoryd_server import quotas
from memoryd_server.auth import keys, policy
from memoryd_server.auth.principal import ANONYMOUS, Principal, bind, unbind
from memoryd_server.auth.verifier import KeyVerifier, Verified
from memoryd_server.errors import (
    STATUS_DETAILS_KEY,
    MemorydError,
    PermissionDenied,
    Unauthenticated,
    to_status,
)
from memoryd_server.interceptors import Behavior, Continuation, log_unavailable, rewrap
from memoryd_server.ratelimit import FailedKeyLimiter, RateLimiter

log = structlog.get_logger("memoryd.auth")

# Health checks and reflection need no key: load balancers and grpcurl use them.
OPEN_METHOD_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
# One message for every key that does not work, so none tells them apart.
INVALID_KEY = "the API key is not valid"
MISSING_KEY = "this call needs an API key: send the metadata 'authorization: Bearer <key>'"
MALFORMED = "the authorization metadata must be 'Bearer <key>'"


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates each call by its API key and checks the key's role.

    With ``verifier`` None (MEMORYD_AUTH=off) every caller is the anonymous
    admin of the ``default`` tenant, and tenant administration is refused.
    The principal is bound around the handler, where ``tenancy`` reads it,
    and so are its tenant's limits (``quotas.current()``), after ``limiter``
    took the call from the tenant's rate.
    """

    def __init__(
        self,
        verifier: KeyVerifier | None,
        limiter: RateLimiter | None = None,
        failures: FailedKeyLimiter | None = None,
    ) -> None:
        self._verifier = verifier
        self._limiter = limiter
        self._failures = failures

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is None or method.startswith(OPEN_METHOD_PREFIXES):
            return handler

        def wrap(behavior: Behavior, streams: bool) -> Behavior:
            # In the handler, where the caller's address is known; before the
            # request is parsed, so a caller without a key learns nothing more.
            async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                try:
                    # From the context, not the call details: the wrapped handler
                    # is composed once per method and serves every call (boundary.py).
                    verified = await self._authenticate(
                        context.invocation_metadata(), _address(context.peer())
                    )
                    principal = verified.principal
                    _authorize(principal, verified, method, auth_on=self._verifier is not None)
                    limits = self._limits(verified)
                except Exception as exc:
                    if not isinstance(exc, MemorydError):  # a bug: INTERNAL, never a pass
                        log.exception("auth_error", rpc=method)
                    log_unavailable(exc, method)
                    code, message, details = to_status(exc)
                    await context.abort(
                        code, message, trailing_metadata=((STATUS_DETAILS_KEY, details),)
                    )
                token = bind(principal)
                limits_token = quotas.bind(limits)
                # Left bound: each call is its own task, and the access log (an
                # outer interceptor) reports them after the handler returns.
                structlog.contextvars.bind_contextvars(
                    tenant=principal.tenant_id, key_id=principal.key_id
                )
                try:
                    return await behavior(request, context)
                finally:
                    quotas.unbind(limits_token)
                    unbind(token)

            del streams  # memoryd's own RPCs are all unary; the open ones are not wrapped
            return guarded

        return rewrap(handler, wrap)

    def _limits(self, verified: Verified) -> quotas.Limits:
        """The caller's tenant's limits, once its rate admits the call (RESOURCE_EXHAUSTED).

        Operator keys and MEMORYD_AUTH=off have no tenant record: no limits.
        """
        if self._limiter is None or verified.tenant is None:
            return quotas.UNLIMITED
        limits = self._limiter.limits(verified.tenant)
        self._limiter.check(verified.tenant.tenant_id, limits)
        return limits

    async def _authenticate(
        self, metadata: Iterable[tuple[str, Any]] | None, address: str
    ) -> Verified:
        if self._verifier is None:
            return Verified(ANONYMOUS, None)
        values = [v for k, v in metadata or () if k == "authorization"]
        if not values:
            raise Unauthenticated(MISSING_KEY)
        value = values[0]
        secret = keys.bearer_token(value) if isinstance(value, str) and len(values) == 1 else None
        if secret is None:
            raise Unauthenticated(MALFORMED)
        failures = self._failures
        if failures is None or self._verifier.known(secret) or not failures.exhausted(address):
            verified = await self._verifier.verify(secret)
        else:
            # This address used up its failures: its unknown keys are looked up
            # one at a time. Refusing them instead refused valid keys too.
            async with failures.turn(address):
                verified = await self._verifier.verify(secret)
        if verified is None and failures is not None:
            failures.failed(address)
        if verified is None:
            raise Unauthenticated(INVALID_KEY)
        return verified


def _authorize(principal: Principal, verified: Verified, method: str, *, auth_on: bool) -> None:
    if verified.tenant is not None and verified.tenant.disabled:
        raise PermissionDenied(f"tenant {verified.tenant.tenant_id} is disabled")
    if policy.allows(principal.role, method):
        return
    rpc = method.rsplit("/", 1)[-1]
    if not auth_on and policy.METHOD_PERMISSIONS.get(method) == "operator":
        raise PermissionDenied(
            f"{rpc} manages tenants: it needs MEMORYD_AUTH=on and an operator key"
        )
    if principal.role == "operator":
        raise PermissionDenied(f"operator keys manage tenants and keys; {rpc} needs a tenant's key")
    raise PermissionDenied(f"a {principal.role} key may not call {rpc}")


def _address(peer: str) -> str:
    """The client's address without its port: ``ipv4:10.0.0.7:51234`` -> ``ipv4:10.0.0.7``."""
    return peer.rpartition(":")[0] if peer.startswith(("ipv4:", "ipv6:")) else peer
