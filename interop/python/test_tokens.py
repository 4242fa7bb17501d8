"""Interop test: a Python agent and gate talk to Mandate with stock JOSE libraries only.

Run by `crates/server/tests/it/interop.rs` against a fresh live server (it registers the gate
for https://crm.example.com, which a tenant has only once):

    MANDATE_URL=http://127.0.0.1:PORT MANDATE_ADMIN_KEY=... python test_tokens.py --lib pyjwt

With `--lib pyjwt` everything the agent and gate sign uses PyJWT and `alg: EdDSA`; with
`--lib joserfc` it uses joserfc and the RFC 9864 fully-specified name `alg: Ed25519`. Each
library verifies the access token under its own name only, so the joserfc run expects a server
started with the `Ed25519` signing setting (the Rust driver does that).
Setup goes through the admin API; then the agent reads discovery (RFC 8414), authenticates with
private_key_jwt (RFC 7523), redeems a mandate by token exchange (RFC 8693) with a DPoP proof
(RFC 9449) from an ephemeral key, verifies the access token (RFC 9068) against the JWKS, a gate
introspects it (RFC 7662), the agent revokes it (RFC 7009) and the gate sees it inactive.
One line is printed per step; the first failure exits non-zero with the reason.
"""

import argparse
import base64
import hashlib
import json
import os
import secrets
import sys
import time
import traceback

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

AUDIENCE = "https://crm.example.com"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
DELEGATION_TYPE = "urn:mandate:token-type:delegation"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class Failed(Exception):
    """A check did not hold."""


def check(cond, msg):
    if not cond:
        raise Failed(msg)


class PyJWTLib:
    """PyJWT: knows Ed25519 only as the polymorphic `EdDSA`."""

    alg = "EdDSA"
    verify_algs = ["EdDSA"]

    def __init__(self):
        import jwt

        self.jwt = jwt

    def new_key(self):
        return Ed25519PrivateKey.generate()

    def public_jwk(self, key):
        return self.jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key(), as_dict=True)

    def thumbprint(self, key):
        # PyJWT has no RFC 7638 helper: required members, sorted, no whitespace, SHA-256.
        jwk = self.public_jwk(key)
        canonical = json.dumps({m: jwk[m] for m in ("crv", "kty", "x")}, separators=(",", ":"), sort_keys=True)
        return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()

    def sign(self, header, claims, key):
        return self.jwt.encode(claims, key, algorithm=self.alg, headers=header)

    def verify(self, token, jwks, issuer):
        key = self.jwt.PyJWKSet.from_dict(jwks)[self.jwt.get_unverified_header(token)["kid"]]
        out = self.jwt.decode_complete(
            token, key, algorithms=self.verify_algs, audience=AUDIENCE, issuer=issuer,
            options={"require": ["iss", "aud", "exp", "iat", "nbf", "jti"]},
        )
        return out["header"], out["payload"]


class JoserfcLib:
    """joserfc: signs with the fully-specified `Ed25519` (RFC 9864)."""

    alg = "Ed25519"
    # Strict: only the fully-specified name (the server under test signs with `Ed25519`).
    verify_algs = ["Ed25519"]

    def __init__(self):
        from joserfc import jwt
        from joserfc.jwk import KeySet, OKPKey

        self.jwt, self.KeySet, self.OKPKey = jwt, KeySet, OKPKey

    def new_key(self):
        return self.OKPKey.import_key(Ed25519PrivateKey.generate())

    def public_jwk(self, key):
        return key.as_dict(private=False)

    def thumbprint(self, key):
        return key.thumbprint()

    def sign(self, header, claims, key):
        return self.jwt.encode({"alg": self.alg, **header}, claims, key, algorithms=[self.alg])

    def verify(self, token, jwks, issuer):
        tok = self.jwt.decode(token, self.KeySet.import_key_set(jwks), algorithms=self.verify_algs)
        essential = {"essential": True}
        self.jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": issuer}, aud={"essential": True, "value": AUDIENCE},
            exp=essential, iat=essential, nbf=essential, jti=essential,
        ).validate(tok.claims)
        return tok.header, tok.claims


LIBS = {"pyjwt": PyJWTLib, "joserfc": JoserfcLib}


def run(lib, name, http, admin):
    def step(msg):
        print(f"[{name}] ok: {msg}", flush=True)

    def admin_post(path, body):
        r = http.post(path, json=body, headers={"Authorization": f"Bearer {admin}"})
        check(r.status_code == 201, f"POST {path}: {r.status_code} {r.text}")
        return r.json()

    # Setup through the admin API.
    human = admin_post("/v1/humans", {"name": f"interop-{name}", "email": f"interop-{name}@example.com"})["id"]
    agent_key, gate_key, dpop_key = lib.new_key(), lib.new_key(), lib.new_key()
    ceiling = [{"type": "mandate", "actions": ["read", "write"], "locations": [AUDIENCE], "resources": ["tickets/*"]}]
    agent_id = admin_post("/v1/agents", {
        "name": f"interop-agent-{name}", "owner": human, "purpose": "triage support tickets",
        "ceiling": ceiling, "jwk": lib.public_jwk(agent_key),
    })["agent"]["id"]
    gate_id = admin_post("/v1/gates", {"name": f"interop-gate-{name}", "audience": AUDIENCE, "jwk": lib.public_jwk(gate_key)})["id"]
    mandate = admin_post("/v1/mandates", {
        "agent": agent_id, "expires_in": 3600, "purpose": "triage",
        "authorization_details": [{"type": "mandate", "actions": ["read"], "locations": [AUDIENCE], "resources": ["tickets/*"]}],
    })
    r = http.get(f"/v1/agents/{agent_id}", headers={"Authorization": f"Bearer {admin}"})
    check(r.status_code == 200, f"GET agent: {r.status_code} {r.text}")
    agent_view = r.json()
    step(f"setup: human {human}, agent {agent_id}, gate {gate_id}, mandate {mandate['id']}")

    # 1. Discovery (RFC 8414).
    meta = http.get("/.well-known/oauth-authorization-server").json()
    issuer = meta["issuer"]
    check(issuer == str(http.base_url).rstrip("/"), f"issuer {issuer!r} is not the server's URL {http.base_url}")
    for field in ("token_endpoint", "jwks_uri", "introspection_endpoint", "revocation_endpoint"):
        check(meta.get(field, "").startswith(issuer), f"discovery `{field}` = {meta.get(field)!r}")
    check("private_key_jwt" in meta["token_endpoint_auth_methods_supported"], "private_key_jwt not advertised")
    check(lib.alg in meta["dpop_signing_alg_values_supported"], f"{lib.alg} not in dpop_signing_alg_values_supported")
    check(lib.alg in meta["token_endpoint_auth_signing_alg_values_supported"], f"{lib.alg} not advertised for client auth")
    step(f"discovery: issuer {issuer}")

    # 2. Client assertions (RFC 7523 §3; aud = the issuer identifier as a single string).
    def assertion(client_id, key):
        now = int(time.time())
        claims = {"iss": client_id, "sub": client_id, "aud": issuer, "iat": now, "exp": now + 120, "jti": secrets.token_urlsafe(16)}
        return lib.sign({"typ": "JWT", "kid": lib.thumbprint(key)}, claims, key)

    # 3. DPoP proofs (RFC 9449 §4.2) from the ephemeral per-task key.
    def dpop_proof(htm, htu):
        claims = {"jti": secrets.token_urlsafe(16), "htm": htm, "htu": htu, "iat": int(time.time())}
        return lib.sign({"typ": "dpop+jwt", "jwk": lib.public_jwk(dpop_key)}, claims, dpop_key)

    step("signed a client assertion and a DPoP proof")

    # 4. Redeem the mandate (RFC 8693 token exchange).
    def redeem(client_assertion, proof):
        form = {
            "grant_type": TOKEN_EXCHANGE, "subject_token": mandate["delegation"], "subject_token_type": DELEGATION_TYPE,
            "client_assertion_type": JWT_BEARER, "client_assertion": client_assertion,
        }
        return http.post(meta["token_endpoint"], data=form, headers={"DPoP": proof})

    first_assertion, first_proof = assertion(agent_id, agent_key), dpop_proof("POST", meta["token_endpoint"])
    r = redeem(first_assertion, first_proof)
    check(r.status_code == 200, f"token endpoint: {r.status_code} {r.text}")
    body = r.json()
    check(body.get("token_type") == "DPoP", f"token_type {body.get('token_type')!r}")
    check(r.headers.get("cache-control") == "no-store", f"Cache-Control {r.headers.get('cache-control')!r}")
    access_token = body["access_token"]
    step("redeemed the mandate: DPoP-bound access token, Cache-Control: no-store")

    # 5. Verify the access token (RFC 9068) with the stock library and the published JWKS.
    jwks = http.get(meta["jwks_uri"]).json()
    header, claims = lib.verify(access_token, jwks, issuer)
    check(header.get("typ") == "at+jwt", f"typ {header.get('typ')!r}")
    expected = {
        "client_id": agent_id, "scope": "read", "cmt": agent_view["commitment"], "tnt": agent_view["tenant"],
        "del": mandate["id"], "cnf": {"jkt": lib.thumbprint(dpop_key)}, "act": {"sub": agent_view["spiffe_id"]},
    }
    for claim, value in expected.items():
        check(claims.get(claim) == value, f"access token `{claim}` = {claims.get(claim)!r}, expected {value!r}")
    step(f"verified the access token (alg {header['alg']}, kid {header['kid']}) and its claims")

    # 6. The gate introspects it (RFC 7662).
    def introspect():
        form = {"client_assertion_type": JWT_BEARER, "client_assertion": assertion(gate_id, gate_key), "token": access_token}
        r = http.post(meta["introspection_endpoint"], data=form)
        check(r.status_code == 200, f"introspection: {r.status_code} {r.text}")
        return r.json()

    info = introspect()
    check(info.get("active") is True, f"introspection: {info}")
    check(info.get("client_id") == agent_id, f"introspection client_id {info.get('client_id')!r}")
    chain = info.get("delegation_chain")
    check(isinstance(chain, list) and len(chain) == 1 and chain[0].get("delegate") == agent_id, f"delegation_chain {chain!r}")
    step("gate introspection: active, chain of 1 ending at the agent")

    # 7. Replays are refused.
    r = redeem(first_assertion, dpop_proof("POST", meta["token_endpoint"]))
    check(r.status_code == 401 and r.json().get("error") == "invalid_client", f"replayed assertion: {r.status_code} {r.text}")
    r = redeem(assertion(agent_id, agent_key), first_proof)
    check(r.status_code == 400 and r.json().get("error") == "invalid_dpop_proof", f"replayed DPoP proof: {r.status_code} {r.text}")
    step("replayed client assertion -> invalid_client, replayed DPoP proof -> invalid_dpop_proof")

    # 8. The agent revokes its token (RFC 7009); the gate then sees exactly {"active": false}.
    form = {"client_assertion_type": JWT_BEARER, "client_assertion": assertion(agent_id, agent_key), "token": access_token}
    r = http.post(meta["revocation_endpoint"], data=form)
    check(r.status_code == 200, f"revocation: {r.status_code} {r.text}")
    info = introspect()
    check(info == {"active": False}, f"introspection after revocation: {info}")
    step('revoked; introspection now says exactly {"active": false}')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lib", choices=sorted(LIBS), required=True)
    args = parser.parse_args()
    base, admin = os.environ.get("MANDATE_URL"), os.environ.get("MANDATE_ADMIN_KEY")
    if not base or not admin:
        sys.exit("set MANDATE_URL and MANDATE_ADMIN_KEY")
    try:
        with httpx.Client(base_url=base, timeout=30) as http:
            run(LIBS[args.lib](), args.lib, http, admin)
    except Failed as e:
        sys.exit(f"[{args.lib}] FAILED: {e}")
    except Exception as e:  # a library refused something (bad signature, claim, algorithm...)
        traceback.print_exc()
        sys.exit(f"[{args.lib}] FAILED: {type(e).__name__}: {e}")
    print(f"[{args.lib}] all steps passed")


if __name__ == "__main__":
    main()
