//! The OAuth side of the server as an agent sees it: RFC 8414 discovery and form posts to the
//! token endpoint, with RFC 6749 §5.2 errors reported as `error: error_description`.

use std::fmt;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{StatusCode, Url};
use serde_json::Value;

use crate::output::sanitize;

/// RFC 8414 §3: where the metadata lives, below the server's base URL.
const METADATA: [&str; 2] = [".well-known", "oauth-authorization-server"];

/// The authorization server of one Mandate deployment, as discovered.
pub(crate) struct AuthorizationServer {
    http: reqwest::Client,
    /// The issuer identifier: the `aud` of client assertions and consents.
    pub(crate) issuer: String,
    /// The token endpoint: where requests go, and the `htu` of their DPoP proofs.
    pub(crate) token_endpoint: Url,
}

/// A refusal of the token endpoint (RFC 6749 §5.2), or a non-OAuth failure of it.
#[derive(Debug)]
pub(crate) struct OAuthError {
    status: u16,
    /// The `error` code, such as `invalid_scope`; `None` when the body was not an OAuth error.
    error: Option<String>,
    description: String,
}

impl AuthorizationServer {
    /// Reads `GET <server>/.well-known/oauth-authorization-server`.
    pub(crate) async fn discover(server: &str) -> Result<Self> {
        crate::client::install_crypto_provider();
        let mut url =
            Url::parse(server).with_context(|| format!("invalid server URL `{server}`"))?;
        if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
            bail!("invalid server URL `{server}`: expected an http:// or https:// URL");
        }
        if !url.username().is_empty() || url.password().is_some() {
            bail!("invalid server URL: it must not contain credentials");
        }
        url.set_query(None);
        url.set_fragment(None);
        url.path_segments_mut()
            .map_err(|()| anyhow!("the server URL `{server}` cannot take a path"))?
            .pop_if_empty()
            .extend(METADATA);
        let http = reqwest::Client::builder()
            .user_agent(concat!("mandate-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            // Assertions and tokens are never replayed to wherever a redirect points.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("cannot build the HTTP client")?;
        let unreachable = |e: reqwest::Error| {
            anyhow::Error::new(e.without_url())
                .context(format!("cannot reach the server at `{server}`"))
        };
        let response = http
            .get(url)
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(unreachable)?;
        if !status.is_success() {
            bail!(
                "the server at `{server}` has no OAuth metadata (HTTP {})",
                status.as_u16()
            );
        }
        let metadata: Value =
            serde_json::from_slice(&bytes).context("the server's OAuth metadata is not JSON")?;
        Self::from_metadata(http, &metadata)
    }

    fn from_metadata(http: reqwest::Client, metadata: &Value) -> Result<Self> {
        let member = |name: &str| {
            metadata
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| anyhow!("the server's OAuth metadata has no `{name}`"))
        };
        let issuer = member("issuer")?.to_owned();
        let endpoint = member("token_endpoint")?;
        let token_endpoint = Url::parse(endpoint)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| {
                anyhow!(
                    "the server's token endpoint `{}` is not an http(s) URL",
                    sanitize(endpoint)
                )
            })?;
        Ok(Self {
            http,
            issuer,
            token_endpoint,
        })
    }

    /// POSTs `params` as a form to the token endpoint with the DPoP proof `dpop`; returns the
    /// JSON of a 2xx answer, an [`OAuthError`] otherwise.
    pub(crate) async fn token(&self, params: &[(&str, &str)], dpop: &str) -> Result<Value> {
        let response = self
            .http
            .post(self.token_endpoint.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .header("DPoP", dpop)
            .body(form_body(params))
            .send()
            .await
            .map_err(|e| {
                anyhow::Error::new(e.without_url()).context(format!(
                    "cannot reach the token endpoint `{}`",
                    self.token_endpoint
                ))
            })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| anyhow::Error::new(e.without_url()))
            .context("cannot read the token endpoint's response")?;
        if !status.is_success() {
            return Err(OAuthError::from_response(status, &bytes).into());
        }
        serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "the token endpoint answered HTTP {} with a body that is not JSON",
                status.as_u16()
            )
        })
    }
}

/// `application/x-www-form-urlencoded` serialisation of `params` (the WHATWG URL standard's
/// byte serializer: `*-._` and alphanumerics as they are, space as `+`, the rest `%XX`).
fn form_body(params: &[(&str, &str)]) -> String {
    let encode = |s: &str, out: &mut String| {
        for b in s.bytes() {
            match b {
                b'*' | b'-' | b'.' | b'_' | b'0'..=b'9' | b'A'..=b'Z' | b'a'..=b'z' => {
                    out.push(char::from(b));
                }
                b' ' => out.push('+'),
                other => out.push_str(&format!("%{other:02X}")),
            }
        }
    };
    let mut body = String::new();
    for (i, (name, value)) in params.iter().enumerate() {
        if i > 0 {
            body.push('&');
        }
        encode(name, &mut body);
        body.push('=');
        encode(value, &mut body);
    }
    body
}

impl OAuthError {
    fn from_response(status: StatusCode, body: &[u8]) -> Self {
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let field = |name: &str| {
            parsed
                .as_ref()
                .and_then(|v| v.get(name))
                .and_then(Value::as_str)
                .map(|s| sanitize(s.trim()))
        };
        let error = field("error");
        let description = match (field("error_description"), &error) {
            (Some(d), _) => d,
            (None, Some(_)) => String::new(),
            // Not an OAuth error (a proxy's page, say): show its start.
            (None, None) => sanitize(String::from_utf8_lossy(body).trim())
                .chars()
                .take(200)
                .collect(),
        };
        Self {
            status: status.as_u16(),
            error,
            description,
        }
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self.error.as_deref().unwrap_or("error");
        if self.description.is_empty() {
            write!(f, "{code} (HTTP {})", self.status)
        } else {
            write!(f, "{code}: {} (HTTP {})", self.description, self.status)
        }
    }
}

impl std::error::Error for OAuthError {}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn oauth_errors_show_code_and_description() {
        let e = OAuthError::from_response(
            StatusCode::BAD_REQUEST,
            br#"{"error":"invalid_scope","error_description":"wider than\nthe parent"}"#,
        );
        assert_eq!(e.error.as_deref(), Some("invalid_scope"));
        assert_eq!(
            e.to_string(),
            "invalid_scope: wider than\u{fffd}the parent (HTTP 400)"
        );
        let e =
            OAuthError::from_response(StatusCode::UNAUTHORIZED, br#"{"error":"invalid_client"}"#);
        assert_eq!(e.to_string(), "invalid_client (HTTP 401)");
        let e = OAuthError::from_response(StatusCode::BAD_GATEWAY, b"upstream down");
        assert_eq!(e.error.as_deref(), None);
        assert_eq!(e.to_string(), "error: upstream down (HTTP 502)");
    }

    #[test]
    fn forms_are_url_encoded() {
        assert_eq!(
            form_body(&[("a", "x y&z"), ("b", r#"[{"k":"é"}]"#)]),
            "a=x+y%26z&b=%5B%7B%22k%22%3A%22%C3%A9%22%7D%5D"
        );
    }

    #[test]
    fn metadata_needs_an_issuer_and_an_http_token_endpoint() {
        crate::client::install_crypto_provider();
        let http = reqwest::Client::new();
        let ok = AuthorizationServer::from_metadata(
            http.clone(),
            &json!({"issuer": "https://m.example", "token_endpoint": "https://m.example/oauth2/token"}),
        )
        .unwrap();
        assert_eq!(ok.issuer, "https://m.example");
        assert_eq!(ok.token_endpoint.path(), "/oauth2/token");
        for bad in [
            json!({"token_endpoint": "https://m.example/oauth2/token"}),
            json!({"issuer": "https://m.example"}),
            json!({"issuer": "https://m.example", "token_endpoint": "file:///etc/passwd"}),
        ] {
            assert!(AuthorizationServer::from_metadata(http.clone(), &bad).is_err());
        }
    }
}
