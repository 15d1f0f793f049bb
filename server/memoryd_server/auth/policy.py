"""Which role may call which RPC. A method missing here is refused to everyone."""

from __future__ import annotations

from typing import Literal

from memoryd.v1 import admin_pb2, conversation_pb2, document_pb2, memory_pb2
from memoryd_server.auth.principal import Role

Permission = Literal["read", "write", "admin", "operator", "any"]

# Each role's permissions. Operator keys administer but hold no tenant data.
GRANTS: dict[Role, frozenset[Permission]] = {
    "viewer": frozenset({"any", "read"}),
    "member": frozenset({"any", "read", "write"}),
    "admin": frozenset({"any", "read", "write", "admin"}),
    "operator": frozenset({"any", "admin", "operator"}),
}

_READS = {
    "ConversationService": {
        "GetConversation",
        "ListConversations",
        "ListMessages",
        "GetContextWindow",
        "SearchMessages",
    },
    "MemoryService": {
        "GetMemory",
        "ListMemories",
        "SearchMemories",
        "ListNamespaces",
        "GetMemoryHistory",
        "GetMemoryAt",
    },
    "DocumentService": {"GetDocument", "ListDocuments", "ListChunks", "SearchDocuments"},
}
_ADMIN = {
    "WhoAmI": "any",
    "CreateTenant": "operator",
    "ListTenants": "operator",
    "UpdateTenant": "operator",
    "DisableTenant": "operator",
    "EnableTenant": "operator",
    "GetTenant": "admin",
    "CreateApiKey": "admin",
    "ListApiKeys": "admin",
    "RevokeApiKey": "admin",
    "EraseUser": "admin",
}


def _build() -> dict[str, Permission]:
    table: dict[str, Permission] = {}
    for file in (conversation_pb2, memory_pb2, document_pb2):
        for service in file.DESCRIPTOR.services_by_name.values():
            reads = _READS[service.name]
            for method in service.methods:
                permission: Permission = "read" if method.name in reads else "write"
                table[f"/{service.full_name}/{method.name}"] = permission
    admin = admin_pb2.DESCRIPTOR.services_by_name["AdminService"]
    for method in admin.methods:
        table[f"/{admin.full_name}/{method.name}"] = _ADMIN[method.name]  # type: ignore[assignment]
    return table


# "/memoryd.v1.MemoryService/CreateMemory" -> "write". Data RPCs not listed as
# reads are writes, so a new RPC is never readable by a viewer by mistake.
METHOD_PERMISSIONS: dict[str, Permission] = _build()


def allows(role: Role, method: str) -> bool:
    """True when ``role`` may call ``method`` (a full gRPC method path)."""
    permission = METHOD_PERMISSIONS.get(method)
    return permission is not None and permission in GRANTS[role]
