"""Who is calling: the tenant, subject, roles and customer a verified token's claims name."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aforo.api.auth.config import ADMIN_ROLES, CUSTOMER_ROLE
from aforo.api.auth.errors import UnauthenticatedError
from aforo.shared.request_json import check_identifier_text


@dataclass(frozen=True, slots=True)
class Principal:
    """The verified caller: a tenant, a subject, its roles and, for portal users, its end customer."""

    tenant_id: str
    subject: str
    roles: frozenset[str]
    customer_id: str | None

    @property
    def is_admin(self) -> bool:
        return not self.roles.isdisjoint(ADMIN_ROLES)

    @property
    def is_customer(self) -> bool:
        return CUSTOMER_ROLE in self.roles


def _string_list(value: object, claim: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise UnauthenticatedError("invalid_token", f"the {claim} claim must be a list of strings", claim)
    return frozenset(value)


def _optional_string(claims: Mapping[str, Any], claim: str) -> str | None:
    value = claims.get(claim)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise UnauthenticatedError("invalid_token", f"the {claim} claim must be a non-empty string", claim)
    try:
        check_identifier_text(value)
    except ValueError as error:
        raise UnauthenticatedError("invalid_token", f"the {claim} claim {error}", claim) from None
    return value


def principal_from_claims(claims: Mapping[str, Any]) -> Principal:
    """Verified claims → principal. Roles are the union of `roles` and Keycloak's `realm_access.roles`."""
    tenant_id = _optional_string(claims, "tenant_id")
    if tenant_id is None:
        raise UnauthenticatedError("invalid_token", "the token has no tenant_id claim", "tenant_id")
    subject = _optional_string(claims, "sub")
    if subject is None:
        raise UnauthenticatedError("invalid_token", "the token has no sub claim", "sub")
    roles: frozenset[str] = frozenset()
    if "roles" in claims:
        roles |= _string_list(claims["roles"], "roles")
    realm_access = claims.get("realm_access")
    if realm_access is not None:
        if not isinstance(realm_access, dict):
            raise UnauthenticatedError(
                "invalid_token", "the realm_access claim must be an object", "realm_access"
            )
        if "roles" in realm_access:
            roles |= _string_list(realm_access["roles"], "realm_access.roles")
    return Principal(
        tenant_id=tenant_id, subject=subject, roles=roles, customer_id=_optional_string(claims, "customer_id")
    )
