//! Talking to the authority: metadata (RFC 8414), JWKS, status lists, introspection
//! (RFC 7662) and the event stream, authenticated as the gate with `private_key_jwt`
//! (RFC 7523).

use std::time::Duration;

use ed25519_dalek::SigningKey;
use mandate_core::encoding::b64url;
use mandate_core::jose::{self, Algorithm, JwtKind};
use mandate_core::jwk::PublicJwk;
use serde_json::{Value, json};

/// Timeout of one request to the authority (not the event stream).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest response body read from the authority.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Lifetime of the gate's client assertions (RFC 7523 §3: `exp` bounds the window of use).
const ASSERTION_LIFETIME_SECS: i64 = 60;
/// RFC 7523 §2.2: the client assertion type.
pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The authority's endpoints.
#[derive(Debug, Clone)]
pub(crate) struct Endpoints {
    pub(crate) jwks_uri: String,
    pub(crate) introspection: Option<String>,
    pub(crate) events: String,
    /// Status list URIs must start with this (`{issuer}/statuslists/`).
    pub(crate) status_prefix: String,
}

impl Endpoints {
    /// Reads RFC 8414 metadata: RFC 8414 §3.3, "the issuer value returned MUST be identical
    /// to the authorization server's issuer identifier value into which the well-known URI
    /// string was inserted".
    pub(crate) fn from_metadata(issuer: &str, meta: &Value) -> Result<Self, String> {
        if meta.get("issuer").and_then(Value::as_str) != Some(issuer) {
            return Err("the metadata's `issuer` is not the configured issuer".into());
        }
        let jwks_uri = meta
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or("the metadata has no `jwks_uri`")?
            .to_owned();
        let introspection = meta
            .get("introspection_endpoint")
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(Self {
            jwks_uri,
            introspection,
            events: format!("{issuer}/v1/events"),
            status_prefix: format!("{issuer}/statuslists/"),
        })
    }

    /// Endpoints derived from the issuer alone (offline verifiers never use them).
    pub(crate) fn derived(issuer: &str) -> Self {
        Self {
            jwks_uri: format!("{issuer}/jwks.json"),
            introspection: Some(format!("{issuer}/oauth2/introspect")),
            events: format!("{issuer}/v1/events"),
            status_prefix: format!("{issuer}/statuslists/"),
        }
    }
}

/// The metadata URL of `issuer` (RFC 8414 §3: the well-known suffix after the host, before
/// any path of the issuer).
pub(crate) fn metadata_url(issuer: &str) -> String {
    const WELL_KNOWN: &str = "/.well-known/oauth-authorization-server";
    match issuer.split_once("://") {
        Some((scheme, rest)) => match rest.find('/') {
            Some(i) => {
                let (host, path) = rest.split_at(i);
                format!(
                    "{scheme}://{host}{WELL_KNOWN}{}",
                    path.trim_end_matches('/')
                )
            }
            None => format!("{scheme}://{rest}{WELL_KNOWN}"),
        },
        None => format!("{issuer}{WELL_KNOWN}"),
    }
}

/// An RFC 7523 client assertion of the gate: `iss` = `sub` = the gate id, `aud` = the issuer
/// (draft-ietf-oauth-rfc7523bis), a fresh random `jti`, one minute of life.
pub(crate) fn client_assertion(
    gate_id: &str,
    key: &SigningKey,
    issuer: &str,
    now_secs: i64,
) -> Result<String, String> {
    let mut jti = [0u8; 16];
    getrandom::fill(&mut jti).map_err(|_| "the system random source is unavailable")?;
    let claims = json!({
        "iss": gate_id,
        "sub": gate_id,
        "aud": issuer,
        "iat": now_secs,
        "exp": now_secs + ASSERTION_LIFETIME_SECS,
        "jti": b64url(&jti),
    });
    let kid = PublicJwk::from_seed(&key.to_bytes()).thumbprint();
    Ok(jose::sign(
        JwtKind::ClientAssertion,
        Some(&kid),
        Algorithm::EdDSA,
        &claims,
        key,
    ))
}

/// Reads a response body, bounded.
async fn body(mut resp: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if out.len() + chunk.len() > MAX_BODY_BYTES {
            return Err("the response is too large".into());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// `GET url`, expecting 200; the body as text.
pub(crate) async fn get_text(http: &reqwest::Client, url: &str) -> Result<String, String> {
    let resp = http
        .get(url)
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(format!("GET {url}: status {}", resp.status()));
    }
    let bytes = body(resp).await?;
    String::from_utf8(bytes).map_err(|_| format!("GET {url}: not UTF-8"))
}

/// `GET url`, expecting 200 and JSON.
pub(crate) async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value, String> {
    let text = get_text(http, url).await?;
    serde_json::from_str(&text).map_err(|_| format!("GET {url}: not JSON"))
}

/// RFC 7662 §2.1 introspection of `token`, authenticated with a client assertion
/// (RFC 7523 §2.2). Returns the response object.
pub(crate) async fn introspect(
    http: &reqwest::Client,
    endpoint: &str,
    token: &str,
    assertion: &str,
) -> Result<Value, String> {
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("token", token)
        .append_pair("client_assertion_type", JWT_BEARER)
        .append_pair("client_assertion", assertion)
        .finish();
    let resp = http
        .post(endpoint)
        .timeout(REQUEST_TIMEOUT)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .map_err(|e| format!("introspection: {e}"))?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(format!("introspection: status {}", resp.status()));
    }
    let bytes = body(resp).await?;
    serde_json::from_slice(&bytes).map_err(|_| "introspection: not JSON".to_owned())
}

/// One Server-Sent Event (WHATWG HTML, "Server-sent events", §9.2.6 interpretation).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    pub(crate) id: Option<String>,
    pub(crate) event: String,
    pub(crate) data: String,
}

/// An incremental SSE parser: bytes in, complete events out. Lines end in CRLF, LF or CR.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    line: Vec<u8>,
    pending_cr: bool,
    current: SseEvent,
    has_data: bool,
}

/// The longest line accepted from the stream.
const MAX_SSE_LINE: usize = 256 * 1024;

impl SseParser {
    /// Feeds bytes; returns the events they complete.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, String> {
        let mut out = Vec::new();
        for &b in bytes {
            if self.pending_cr {
                self.pending_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' | b'\r' => {
                    self.pending_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(ev) = self.line_done(&line) {
                        out.push(ev);
                    }
                }
                _ => {
                    if self.line.len() >= MAX_SSE_LINE {
                        return Err("an event stream line is too long".into());
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(out)
    }

    fn line_done(&mut self, line: &[u8]) -> Option<SseEvent> {
        if line.is_empty() {
            // "If the line is empty (a blank line): Dispatch the event."
            let ev = std::mem::take(&mut self.current);
            let had = std::mem::take(&mut self.has_data);
            return (had || ev.id.is_some()).then_some(ev);
        }
        // "If the line starts with a U+003A COLON character (:): Ignore the line."
        if line.first() == Some(&b':') {
            return None;
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.split_once(':') {
            Some((f, v)) => (f.to_owned(), v.strip_prefix(' ').unwrap_or(v).to_owned()),
            None => (text.into_owned(), String::new()),
        };
        match field.as_str() {
            "event" => self.current.event = value,
            "data" => {
                if self.has_data {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(&value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.current.id = Some(value),
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_parser_handles_split_chunks_comments_and_line_endings() {
        let mut p = SseParser::default();
        let mut got = p
            .feed(b":keep-alive\n\nid: 7\nevent: token.revoked\nda")
            .unwrap();
        assert!(got.is_empty());
        got.extend(
            p.feed(b"ta: {\"token\":\"j\"}\r\n\r\nid:8\revent:x\rdata:a\rdata:b\r\r")
                .unwrap(),
        );
        assert_eq!(
            got,
            vec![
                SseEvent {
                    id: Some("7".into()),
                    event: "token.revoked".into(),
                    data: "{\"token\":\"j\"}".into()
                },
                SseEvent {
                    id: Some("8".into()),
                    event: "x".into(),
                    data: "a\nb".into()
                }
            ]
        );
        let mut p = SseParser::default();
        assert!(p.feed(&vec![b'a'; MAX_SSE_LINE + 1]).is_err());
    }

    #[test]
    fn metadata_url_inserts_the_well_known_suffix_after_the_host() {
        assert_eq!(
            metadata_url("https://auth.example.com"),
            "https://auth.example.com/.well-known/oauth-authorization-server"
        );
        assert_eq!(
            metadata_url("https://example.com/tenant1"),
            "https://example.com/.well-known/oauth-authorization-server/tenant1"
        );
    }

    #[test]
    fn metadata_issuer_must_match() {
        let meta = json!({"issuer": "http://a", "jwks_uri": "http://a/jwks.json"});
        assert!(Endpoints::from_metadata("http://a", &meta).is_ok());
        assert!(Endpoints::from_metadata("http://b", &meta).is_err());
        assert!(Endpoints::from_metadata("http://a", &json!({"issuer": "http://a"})).is_err());
    }
}
