// The peer of the token issuance benchmark: node `oidc-provider` (an OpenID Certified
// implementation) issuing JWT access tokens by client_credentials, with private_key_jwt client
// authentication (Ed25519 client keys) and DPoP-bound tokens — the same protocol work that
// Mandate does per token, minus the durable receipt.
//
// Env: PEER_PORT (default 8091), PEER_ISSUER (default http://127.0.0.1:PORT), PEER_CLIENTS (the
// registrations written by `mandate-loadgen setup-peer`), PEER_RESOURCE (the resource server
// the JWT access tokens are for, default https://crm.example.com).
//
// Replay detection (client assertion jti, DPoP proof jti) goes to the provider's adapter. The
// bundled MemoryAdapter is an LRU capped at 1000 entries, which would forget used ids under
// load; this peer uses an uncapped in-memory Map with expiry instead, so single-use is actually
// enforced (as Mandate enforces it, durably). JWT access tokens are not stored by
// oidc-provider (nothing is persisted per token).
import { readFileSync } from 'node:fs';
import { generateKeyPairSync } from 'node:crypto';

import Provider, { errors } from 'oidc-provider';

const port = Number(process.env.PEER_PORT || 8091);
const issuer = process.env.PEER_ISSUER || `http://127.0.0.1:${port}`;
const resource = process.env.PEER_RESOURCE || 'https://crm.example.com';
const registrations = JSON.parse(readFileSync(process.env.PEER_CLIENTS, 'utf8'));

const stores = new Map();
class MapAdapter {
  constructor(name) {
    this.name = name;
    if (!stores.has(name)) stores.set(name, new Map());
    this.m = stores.get(name);
  }

  async upsert(id, payload, expiresIn) {
    const exp = expiresIn ? Date.now() + expiresIn * 1000 : Infinity;
    this.m.set(id, { payload, exp });
  }

  async find(id) {
    const e = this.m.get(id);
    if (!e) return undefined;
    if (e.exp <= Date.now()) {
      this.m.delete(id);
      return undefined;
    }
    return e.payload;
  }

  async findByUserCode() { return undefined; }

  async findByUid() { return undefined; }

  async consume(id) {
    const e = this.m.get(id);
    if (e) e.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) { this.m.delete(id); }

  async revokeByGrantId() {}
}
setInterval(() => {
  const now = Date.now();
  for (const m of stores.values()) {
    for (const [k, e] of m) if (e.exp <= now) m.delete(k);
  }
}, 30_000).unref();

const { privateKey } = generateKeyPairSync('ed25519');
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'peer-ed25519-1', use: 'sig' };

const clients = registrations.map((r) => ({
  client_id: r.client_id,
  token_endpoint_auth_method: 'private_key_jwt',
  token_endpoint_auth_signing_alg: 'EdDSA',
  jwks: r.jwks,
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  id_token_signed_response_alg: 'EdDSA',
}));

const provider = new Provider(issuer, {
  adapter: MapAdapter,
  clients,
  jwks: { keys: [signingKey] },
  clientDefaults: {
    grant_types: ['client_credentials'],
    response_types: [],
    id_token_signed_response_alg: 'EdDSA',
  },
  enabledJWA: {
    clientAuthSigningAlgValues: ['EdDSA', 'Ed25519'],
    dPoPSigningAlgValues: ['EdDSA', 'Ed25519'],
    idTokenSigningAlgValues: ['EdDSA', 'Ed25519'],
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    dPoP: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: (_ctx, _client, oneOf) => oneOf ?? resource,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, indicator) => {
        if (indicator !== resource) throw new errors.InvalidTarget();
        return {
          scope: 'read',
          audience: resource,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'EdDSA' } },
        };
      },
    },
  },
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider peer listening on ${issuer} (token endpoint ${issuer}/token), ${clients.length} clients`);
});
