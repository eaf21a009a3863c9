"""From the Authorization header to a principal: an API key, a JWT, or the bootstrap admin key.

JWTs are HS256 only (the algorithm is pinned: ``alg: none`` and RS/HS confusion are refused),
signed with JWT_SECRET, must carry ``exp`` and ``tenant`` (and ``aud``/``iss`` matching
JWT_AUDIENCE/JWT_ISSUER when those are set); ``scope`` (space-separated) or ``scopes`` (a
list) give the scopes, ``collections`` (a list of names) optionally restricts them: any other
``collections`` value is refused, never read as "no restriction".
"""

from __future__ import annotations

import hmac
import re
from typing import Any

import jwt
from rag_config import GatewaySettings
from rag_core.catalog import DEFAULT_NAMESPACE
from rag_core.tenancy import TENANT_PATTERN

from rag_gateway.auth.keys import KEY_PATTERN, ApiKeyStore
from rag_gateway.auth.principal import BOOTSTRAP_ADMIN, SCOPES, Principal, Unauthorized

# header.payload.signature, each base64url: anything else is no JWT, whatever the secret.
_JWT_SHAPE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\Z")
INVALID_KEY = "the API key is not valid (unknown, wrong or revoked)"

# Which setting asks for a claim PyJWT found missing (exp is always required).
_REQUIRED_BY = {"aud": " (JWT_AUDIENCE is set)", "iss": " (JWT_ISSUER is set)"}


class Authenticator:
    def __init__(self, settings: GatewaySettings, keys: ApiKeyStore) -> None:
        self.keys = keys
        self.jwt_secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
        self.jwt_audience = settings.jwt_audience
        self.jwt_issuer = settings.jwt_issuer
        self.admin_key = (
            settings.admin_api_key.get_secret_value() if settings.admin_api_key else None
        )

    async def authenticate(self, authorization: str | None, api_key: str | None) -> Principal:
        # An empty header (`X-API-Key:`, sent by some clients and proxies) is no credential:
        # it must not hide the bearer token beside it.
        token = api_key.strip() if api_key and api_key.strip() else None
        if token is None and authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise Unauthorized("use 'Authorization: Bearer <API key or JWT>'")
            token = value.strip()
        if not token:
            raise Unauthorized("no credential: send 'Authorization: Bearer <API key or JWT>'")
        if self.admin_key and hmac.compare_digest(token.encode(), self.admin_key.encode()):
            return Principal(BOOTSTRAP_ADMIN, DEFAULT_NAMESPACE, Principal.expand(["admin"]))
        if KEY_PATTERN.fullmatch(token):
            record = await self.keys.verify(token)
            if record is None:
                raise Unauthorized(INVALID_KEY)
            return Principal(
                f"key:{record.id}",
                record.tenant,
                Principal.expand(record.scopes),
                frozenset(record.collections) if record.collections is not None else None,
                record.requests_per_minute,
                record.ingest_bytes_per_day,
            )
        if not _JWT_SHAPE.fullmatch(token):
            # An OpenAI-style key, a chat UI's placeholder: a wrong API key, not a JWT problem.
            raise Unauthorized(INVALID_KEY)
        return self._from_jwt(token)

    def _from_jwt(self, token: str) -> Principal:
        if self.jwt_secret is None:
            raise Unauthorized("bearer tokens are not accepted here (JWT_SECRET is not set)")
        required = ["exp"]
        required += ["aud"] if self.jwt_audience else []
        required += ["iss"] if self.jwt_issuer else []
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.jwt_secret,
                algorithms=["HS256"],
                audience=self.jwt_audience,
                issuer=self.jwt_issuer,
                options={"require": required, "verify_aud": self.jwt_audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired") from None
        except jwt.MissingRequiredClaimError as exc:
            why = _REQUIRED_BY.get(exc.claim, "")
            raise Unauthorized(f"the token has no {exc.claim!r} claim{why}") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized(
                "the token's 'aud' claim does not name this deployment (JWT_AUDIENCE)"
            ) from None
        except jwt.InvalidIssuerError:
            raise Unauthorized(
                "the token's 'iss' claim is not the issuer this deployment trusts (JWT_ISSUER)"
            ) from None
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"the token is not valid ({type(exc).__name__})") from None
        tenant = claims.get("tenant")
        if not isinstance(tenant, str) or not TENANT_PATTERN.fullmatch(tenant):
            raise Unauthorized("the token has no valid 'tenant' claim")
        raw_scopes = claims.get("scopes", claims.get("scope", ""))
        scopes = raw_scopes.split() if isinstance(raw_scopes, str) else list(raw_scopes or [])
        return Principal(
            f"jwt:{tenant}:{claims.get('sub', '')}",
            tenant,
            Principal.expand(s for s in scopes if s in SCOPES),
            _collections(claims),
        )


def _collections(claims: dict[str, Any]) -> frozenset[str] | None:
    """The collections a token is limited to; None (no limit) only when it has no such claim.
    Read any other way, a malformed claim (a string, null, numbers) would mean "all of them"."""
    if "collections" not in claims:
        return None
    collections = claims["collections"]
    if not isinstance(collections, list) or not all(isinstance(c, str) for c in collections):
        raise Unauthorized("the token's 'collections' claim must be a list of collection names")
    return frozenset(collections)
