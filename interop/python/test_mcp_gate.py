"""End-to-end: the official MCP Python SDK's client talks to an MCP server through `mandate gate`.

Run by `crates/cli/tests/it/mcp_gate.rs` against a live authority:

    MANDATE_URL=http://127.0.0.1:PORT MANDATE_ADMIN_KEY=... MANDATE_BIN=.../mandate python test_mcp_gate.py WORKDIR

It sets up, through the admin API, a human, an agent with its own Ed25519 key, a gate and a
mandate; starts `mcp_tools_server.py` (an MCP server built with the SDK, Streamable HTTP, four
tools) and `mandate gate --config` in front of it; redeems the mandate for a DPoP-bound token
with an ephemeral key; then drives the SDK's own `Client` through the gate, with an `Auth` hook
that adds `Authorization: DPoP <token>` and a fresh DPoP proof (RFC 9449 §7.1) to each request.
One line is printed per step; the first failure exits non-zero with the reason.
"""

import asyncio
import base64
import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import traceback

import httpx
import httpx2
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

HERE = os.path.dirname(os.path.abspath(__file__))
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
DELEGATION_TYPE = "urn:mandate:token-type:delegation"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class Failed(Exception):
    """A check did not hold."""


def check(cond, msg):
    if not cond:
        raise Failed(msg)


def step(msg):
    print(f"[mcp] ok: {msg}", flush=True)


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(key):
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": b64u(raw)}


def private_jwk(key):
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return {**public_jwk(key), "d": b64u(raw)}


def thumbprint(key):
    # RFC 7638: required members, lexicographic order, no whitespace.
    jwk = public_jwk(key)
    canonical = json.dumps({m: jwk[m] for m in ("crv", "kty", "x")}, separators=(",", ":"), sort_keys=True)
    return b64u(hashlib.sha256(canonical.encode()).digest())


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, deadline=30.0):
    end = time.time() + deadline
    while time.time() < end:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise Failed(f"{url} did not come up within {deadline}s")


class DPoPAuth(httpx2.Auth):
    """Adds the access token and a fresh DPoP proof (RFC 9449 §4.2, with `ath`) to every request."""

    def __init__(self, token, key):
        self.token, self.key = token, key

    def auth_flow(self, request):
        url = str(request.url).split("?", 1)[0].split("#", 1)[0]
        claims = {
            "jti": secrets.token_urlsafe(16), "htm": request.method, "htu": url, "iat": int(time.time()),
            "ath": b64u(hashlib.sha256(self.token.encode()).digest()),
        }
        proof = jwt.encode(claims, self.key, algorithm="EdDSA", headers={"typ": "dpop+jwt", "jwk": public_jwk(self.key)})
        request.headers["Authorization"] = f"DPoP {self.token}"
        request.headers["DPoP"] = proof
        yield request


async def mcp_session(gate_mcp_url, token, key):
    """An MCP client session through the gate: the SDK's Client over Streamable HTTP."""
    http = httpx2.AsyncClient(auth=DPoPAuth(token, key), timeout=20.0)
    return http, Client(streamable_http_client(gate_mcp_url, http_client=http))


def read_hits(path):
    try:
        with open(path, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]
    except FileNotFoundError:
        return []


async def expect_refused(client, name, args, reason, hits_file):
    """The call fails with a JSON-RPC error naming `reason`, and the upstream never saw it."""
    from mcp.shared.exceptions import MCPError

    before = read_hits(hits_file)
    try:
        result = await client.call_tool(name, args)
    except MCPError as e:
        text = json.dumps({"message": e.message, "data": e.data})
        check(reason in text, f"{name}: refused, but not for `{reason}`: {text}")
        check(read_hits(hits_file) == before, f"{name}: the upstream was reached although the gate refused")
        return e
    raise Failed(f"{name}{args}: expected a refusal ({reason}), got {result}")


async def run(workdir):
    base, admin, mandate_bin = os.environ["MANDATE_URL"], os.environ["MANDATE_ADMIN_KEY"], os.environ["MANDATE_BIN"]
    http = httpx.Client(base_url=base, timeout=20.0)
    auth = {"Authorization": f"Bearer {admin}"}

    def admin_call(method, path, body=None, want=(200, 201)):
        r = http.request(method, path, json=body, headers=auth)
        check(r.status_code in want, f"{method} {path}: {r.status_code} {r.text}")
        return r.json()

    procs = []
    try:
        # 1. The MCP server (official SDK), counting every tool it executes.
        hits_file = os.path.join(workdir, "hits.txt")
        mcp_proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "mcp_tools_server.py"), hits_file],
            stdout=subprocess.PIPE, text=True,
        )
        procs.append(mcp_proc)
        line = mcp_proc.stdout.readline()
        check(line.startswith("PORT "), f"MCP server did not start: {line!r}")
        upstream = f"http://127.0.0.1:{int(line.split()[1])}/mcp"
        step(f"MCP server (SDK, Streamable HTTP) at {upstream}")

        # 2. Registry: a human, her agent (own key), the gate (own key), a mandate.
        gate_port = free_port()
        gate_url = f"http://127.0.0.1:{gate_port}"
        audience = gate_url
        agent_key, gate_key, dpop_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        human = admin_call("POST", "/v1/humans", {"name": "Dana", "email": "dana@example.com"})["id"]
        ceiling = [{"type": "mandate", "actions": ["read", "execute", "delete"], "locations": [audience], "resources": ["**"]}]
        agent = admin_call("POST", "/v1/agents", {
            "name": "support-bot", "owner": human, "purpose": "answer support tickets", "ceiling": ceiling,
            "jwk": public_jwk(agent_key),
        })["agent"]["id"]
        gate_id = admin_call("POST", "/v1/gates", {"name": "tools-gate", "audience": audience, "jwk": public_jwk(gate_key)})["id"]
        details = [
            {"type": "mandate", "actions": ["read"], "locations": [audience], "resources": ["tickets/*"]},
            {"type": "mandate", "actions": ["execute"], "locations": [audience], "resources": ["orders/*"],
             "constraints": {"max_amount": {"value": 100, "currency": "USD"}}},
            {"type": "mandate", "actions": ["execute"], "locations": [audience], "resources": ["accounts/*"],
             "constraints": {"approval_required_for": ["execute"]}},
        ]
        mandate = admin_call("POST", "/v1/mandates", {
            "agent": agent, "expires_in": 3600, "purpose": "support queue", "authorization_details": details,
        })
        step(f"registry: human {human}, agent {agent}, gate {gate_id}, mandate {mandate['id']}")

        # 3. The gate in front of the MCP server.
        key_file = os.path.join(workdir, "gate-key.json")
        with open(key_file, "w", encoding="utf-8") as f:
            json.dump(private_jwk(gate_key), f)
        os.chmod(key_file, 0o600)
        config = os.path.join(workdir, "gate.toml")
        with open(config, "w", encoding="utf-8") as f:
            f.write(f'''
listen = "127.0.0.1:{gate_port}"
issuer = "{base}"
audience = "{audience}"
gate_id = "{gate_id}"
key_file = "gate-key.json"
spool_dir = "spool"

[[upstream]]
name = "tools"
kind = "mcp"
url = "{upstream}"
mount = "/mcp"

[[tool]]
name = "read_ticket"
action = "read"
resource = "tickets/{{arguments.ticket_id}}"

[[tool]]
name = "refund_order"
action = "execute"
resource = "orders/{{arguments.order_id}}"
inputs = {{ amount = "arguments.amount" }}

[[tool]]
name = "delete_ticket"
action = "delete"
resource = "tickets/{{arguments.ticket_id}}"

[[tool]]
name = "close_account"
action = "execute"
resource = "accounts/{{arguments.customer_id}}"
''')
        gate_proc = subprocess.Popen([mandate_bin, "gate", "--config", config], env={**os.environ, "MANDATE_LOG": "warn"})
        procs.append(gate_proc)
        wait_http(f"{gate_url}/.well-known/oauth-protected-resource")
        step(f"gate {gate_url} in front of it")

        # 4. Standard discovery from the gate: RFC 9728 metadata and a 401 pointing at it.
        r = httpx.post(f"{gate_url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        check(r.status_code == 401, f"unauthenticated call: {r.status_code} {r.text}")
        www = r.headers.get("www-authenticate", "")
        check("resource_metadata=" in www and www.startswith("DPoP"), f"WWW-Authenticate {www!r}")
        meta_url = www.split('resource_metadata="', 1)[1].split('"', 1)[0]
        prm = httpx.get(meta_url).json()
        check(prm.get("authorization_servers") == [base], f"protected-resource metadata {prm}")
        step("401 carries WWW-Authenticate with resource_metadata; metadata names the authority")

        # 5. The agent redeems its mandate for a DPoP-bound token (ephemeral key).
        meta = http.get("/.well-known/oauth-authorization-server").json()
        now = int(time.time())
        assertion = jwt.encode(
            {"iss": agent, "sub": agent, "aud": meta["issuer"], "iat": now, "exp": now + 120, "jti": secrets.token_urlsafe(16)},
            agent_key, algorithm="EdDSA", headers={"typ": "JWT", "kid": thumbprint(agent_key)},
        )
        proof = jwt.encode(
            {"jti": secrets.token_urlsafe(16), "htm": "POST", "htu": meta["token_endpoint"], "iat": now},
            dpop_key, algorithm="EdDSA", headers={"typ": "dpop+jwt", "jwk": public_jwk(dpop_key)},
        )
        r = http.post(meta["token_endpoint"], headers={"DPoP": proof}, data={
            "grant_type": TOKEN_EXCHANGE, "subject_token": mandate["delegation"], "subject_token_type": DELEGATION_TYPE,
            "client_assertion_type": JWT_BEARER, "client_assertion": assertion,
        })
        check(r.status_code == 200, f"token endpoint: {r.status_code} {r.text}")
        token = r.json()["access_token"]
        step("redeemed the mandate: DPoP-bound access token")

        http2, client = await mcp_session(f"{gate_url}/mcp", token, dpop_key)
        async with http2, client:
            # 6. Allowed tool.
            result = await client.call_tool("read_ticket", {"ticket_id": "T-1"})
            check(not result.is_error and "printer on fire" in json.dumps(result.model_dump()), f"read_ticket: {result}")
            check(read_hits(hits_file) == ["read_ticket"], f"hits {read_hits(hits_file)}")
            step("allowed tool read_ticket: answered by the upstream")

            # 7. tools/list shows only what the caller may call.
            names = sorted(t.name for t in (await client.list_tools()).tools)
            check(names == ["close_account", "read_ticket", "refund_order"], f"tools/list through the gate: {names}")
            step(f"tools/list filtered to {names} (delete_ticket hidden)")

            # 8. Forbidden tool: a clear JSON-RPC error, the upstream never reached.
            await expect_refused(client, "delete_ticket", {"ticket_id": "T-1"}, "insufficient_scope", hits_file)
            step("forbidden tool delete_ticket: JSON-RPC error insufficient_scope, upstream untouched")

            # 9. Amount limit.
            result = await client.call_tool("refund_order", {"order_id": "O-7", "amount": 40})
            check(not result.is_error, f"refund 40: {result}")
            await expect_refused(client, "refund_order", {"order_id": "O-7", "amount": 400}, "max_amount", hits_file)
            step("refund_order 40 allowed; 400 refused (max_amount 100), upstream untouched")

            # 10. Approval: refused with an id, approved once by the owner, works once, refused on replay.
            err = await expect_refused(client, "close_account", {"customer_id": "C-9"}, "approval", hits_file)
            approval = (err.data or {}).get("approval_id")
            check(isinstance(approval, str) and approval.startswith("apr_"), f"no approval id in {err.data}")
            admin_call("POST", f"/v1/approvals/{approval}/approve")
            result = await client.call_tool("close_account", {"customer_id": "C-9"})
            check(not result.is_error and read_hits(hits_file).count("close_account") == 1, f"approved call: {result}")
            await expect_refused(client, "close_account", {"customer_id": "C-9"}, "approval", hits_file)
            step(f"close_account: refused with {approval}, approved, worked once, refused on replay")

            # 11. Revoke the delegation: the next call fails within 1 s.
            admin_call("POST", f"/v1/delegations/{mandate['id']}/revoke")
            revoked_at = time.time()
            while True:
                try:
                    await client.call_tool("read_ticket", {"ticket_id": "T-2"})
                except Exception:  # noqa: BLE001 - any refusal (JSON-RPC error or 401) counts
                    break
                check(time.time() - revoked_at < 1.0, "a call still succeeded 1 s after the revocation")
                await asyncio.sleep(0.05)
            elapsed = time.time() - revoked_at
            check(elapsed < 1.0, f"refused only after {elapsed:.2f}s")
            step(f"revoked the mandate: calls refused after {elapsed * 1000:.0f} ms")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def main():
    workdir = sys.argv[1]
    try:
        asyncio.run(run(workdir))
    except Failed as e:
        print(f"[mcp] FAILED: {e}", flush=True)
        sys.exit(1)
    except Exception:  # noqa: BLE001 - report any crash as a failure with its trace
        traceback.print_exc()
        sys.exit(1)
    print("[mcp] all checks passed", flush=True)


if __name__ == "__main__":
    main()
