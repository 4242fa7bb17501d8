//! HTTP client for the admin API: bearer auth, problem+json errors and cursor paging.

use std::fmt;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use reqwest::header::ACCEPT;
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

/// Largest page the API serves; used whenever the CLI walks a whole list.
pub(crate) const MAX_PAGE: u32 = 1000;

/// How long a stream may stay silent before the connection is taken for dead.
const STREAM_IDLE: Duration = Duration::from_secs(45);

/// A client for one server, authenticated as one human.
pub(crate) struct ApiClient {
    http: reqwest::Client,
    /// For long-lived streams: no overall timeout, but a silent connection is given up.
    stream_http: reqwest::Client,
    base: Url,
    api_key: Option<ApiKey>,
}

/// A non-2xx answer of the server, built from its RFC 9457 problem document.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: u16,
    title: String,
    detail: String,
}

/// One page of a list: `{"items": [...], "next": null | "<cursor>"}`.
pub(crate) struct Page {
    pub(crate) items: Vec<Value>,
    pub(crate) next: Option<String>,
}

/// The caller's API key; kept out of every `Debug` and error message.
struct ApiKey(String);

impl ApiClient {
    /// Builds a client for `server` (an `http` or `https` base URL).
    pub(crate) fn new(server: &str, api_key: Option<String>) -> Result<Self> {
        // reqwest panics when building a client without a provider; `main` installs it
        // first, this covers every other caller (tests).
        install_crypto_provider();
        let mut base =
            Url::parse(server).with_context(|| format!("invalid server URL `{server}`"))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            bail!("invalid server URL `{server}`: expected an http:// or https:// URL");
        }
        if !base.username().is_empty() || base.password().is_some() {
            bail!("invalid server URL: it must not contain credentials; use `--api-key`");
        }
        base.set_query(None);
        base.set_fragment(None);
        let http = reqwest::Client::builder()
            .user_agent(concat!("mandate-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .context("cannot build the HTTP client")?;
        let stream_http = reqwest::Client::builder()
            .user_agent(concat!("mandate-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            // The event stream sends a keep-alive every 15 seconds.
            .read_timeout(STREAM_IDLE)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self {
            http,
            stream_http,
            base,
            api_key: api_key.filter(|k| !k.is_empty()).map(ApiKey),
        })
    }

    /// `GET` of the path made of `segments` (each one percent-encoded).
    pub(crate) async fn get(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<Value> {
        self.send(Method::GET, segments, query, None).await
    }

    /// `POST` of a JSON body.
    pub(crate) async fn post(&self, segments: &[&str], body: &Value) -> Result<Value> {
        self.send(Method::POST, segments, &[], Some(body)).await
    }

    /// `DELETE` without a body.
    pub(crate) async fn delete(&self, segments: &[&str]) -> Result<Value> {
        self.send(Method::DELETE, segments, &[], None).await
    }

    /// Opens a long-lived `GET` (such as a Server-Sent Events stream) accepting `accept`, with
    /// extra `headers`; returns the response, to be read with `chunk()`, once its status is 2xx.
    pub(crate) async fn open_stream(
        &self,
        segments: &[&str],
        accept: &str,
        headers: &[(&str, String)],
    ) -> Result<reqwest::Response> {
        let key = self.key()?;
        let url = self.url(segments, &[])?;
        let mut request = self
            .stream_http
            .get(url)
            .bearer_auth(&key.0)
            .header(ACCEPT, accept);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.map_err(|e| {
            anyhow::Error::new(e.without_url())
                .context(format!("cannot reach the server at `{}`", self.base))
        })?;
        let status = response.status();
        if !status.is_success() {
            let bytes = response.bytes().await.unwrap_or_default();
            return Err(ApiError::from_response(status, &bytes).into());
        }
        Ok(response)
    }

    fn key(&self) -> Result<&ApiKey> {
        self.api_key
            .as_ref()
            .ok_or_else(|| anyhow!("no API key: set `MANDATE_API_KEY` or pass `--api-key`"))
    }

    /// One page of a list, starting after `cursor`.
    pub(crate) async fn page(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page> {
        let limit = limit.to_string();
        let mut q: Vec<(&str, &str)> = query.to_vec();
        q.push(("limit", &limit));
        if let Some(c) = cursor {
            q.push(("cursor", c));
        }
        let value = self.get(segments, &q).await?;
        Page::from_value(value)
    }

    /// Every item of a list, following `next` cursors to the end.
    pub(crate) async fn list_all(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .page(segments, query, cursor.as_deref(), MAX_PAGE)
                .await?;
            items.extend(page.items);
            match page.next {
                None => return Ok(items),
                Some(next) => {
                    if cursor.as_deref() == Some(next.as_str()) {
                        bail!("the server returned the cursor `{next}` twice; stopping");
                    }
                    cursor = Some(next);
                }
            }
        }
    }

    async fn send(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value> {
        let key = self.key()?;
        let url = self.url(segments, query)?;
        let mut request = self
            .http
            .request(method, url)
            .bearer_auth(&key.0)
            .header(ACCEPT, "application/json, application/problem+json");
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| {
            anyhow::Error::new(e.without_url())
                .context(format!("cannot reach the server at `{}`", self.base))
        })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| anyhow::Error::new(e.without_url()))
            .context("cannot read the server's response")?;
        if !status.is_success() {
            return Err(ApiError::from_response(status, &bytes).into());
        }
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "the server answered HTTP {} with a body that is not JSON",
                status.as_u16()
            )
        })
    }

    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<Url> {
        if let Some(bad) = segments.iter().find(|s| matches!(**s, "" | "." | "..")) {
            bail!("invalid id `{bad}`");
        }
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| anyhow!("the server URL `{}` cannot take a path", self.base))?
            .pop_if_empty()
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }
}

impl ApiError {
    /// The HTTP status code.
    pub(crate) fn status(&self) -> u16 {
        self.status
    }

    /// Reads `title` and `detail` of a problem document, falling back to the status text.
    fn from_response(status: StatusCode, body: &[u8]) -> Self {
        let reason = status.canonical_reason().unwrap_or("error").to_owned();
        let problem: Option<Value> = serde_json::from_slice(body).ok();
        let field = |name: &str| {
            problem
                .as_ref()
                .and_then(|p| p.get(name))
                .and_then(Value::as_str)
                .map(one_line)
        };
        let title = field("title").unwrap_or(reason);
        let detail = match (field("detail"), problem.is_some()) {
            (Some(detail), _) => detail,
            (None, true) => String::new(),
            // Not a problem document (a proxy's error page, say): show its start.
            (None, false) => one_line(&String::from_utf8_lossy(body))
                .chars()
                .take(200)
                .collect(),
        };
        Self {
            status: status.as_u16(),
            title,
            detail,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.detail.is_empty() {
            write!(f, "{} (HTTP {})", self.title, self.status)
        } else {
            write!(f, "{}: {} (HTTP {})", self.title, self.detail, self.status)
        }
    }
}

impl std::error::Error for ApiError {}

impl Page {
    fn from_value(value: Value) -> Result<Self> {
        let Value::Object(mut map) = value else {
            bail!("unexpected response from the server: expected a list object");
        };
        let items = match map.remove("items") {
            Some(Value::Array(items)) => items,
            _ => bail!("unexpected response from the server: the list has no `items` array"),
        };
        let next = match map.remove("next") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(_) => bail!("unexpected response from the server: `next` is not a cursor"),
        };
        Ok(Self { items, next })
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Installs rustls' ring provider for the process; reqwest is built without one.
pub(crate) fn install_crypto_provider() {
    // An error only means a provider is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Flattens server-supplied text to one line without control characters.
fn one_line(s: &str) -> String {
    s.trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_document_is_rendered_as_title_detail_status() {
        let body = br#"{"type":"urn:mandate:problem:not-found","title":"Not Found","status":404,"detail":"no agent `agt_x`"}"#;
        let e = ApiError::from_response(StatusCode::NOT_FOUND, body);
        assert_eq!(e.to_string(), "Not Found: no agent `agt_x` (HTTP 404)");
    }

    #[test]
    fn non_json_error_body_falls_back_to_status_text() {
        let e = ApiError::from_response(StatusCode::BAD_GATEWAY, b"upstream\ndown");
        assert_eq!(e.to_string(), "Bad Gateway: upstream down (HTTP 502)");
        let e = ApiError::from_response(StatusCode::UNAUTHORIZED, b"");
        assert_eq!(e.to_string(), "Unauthorized (HTTP 401)");
    }

    #[test]
    fn path_segments_are_encoded_and_base_path_kept() {
        let c = ApiClient::new("http://example.test/prefix/", None).unwrap();
        let url = c
            .url(&["v1", "humans", "../x y"], &[("owner", "a&b")])
            .unwrap();
        assert_eq!(
            url.as_str(),
            "http://example.test/prefix/v1/humans/..%2Fx%20y?owner=a%26b"
        );
    }

    #[test]
    fn dot_segments_are_refused() {
        let c = ApiClient::new("http://example.test", None).unwrap();
        assert!(c.url(&["v1", "humans", ".."], &[]).is_err());
        assert!(c.url(&["v1", "humans", ""], &[]).is_err());
    }

    #[test]
    fn api_key_never_shows_in_debug() {
        let c = ApiClient::new("http://127.0.0.1:1", Some("mnd_secret".into())).unwrap();
        assert!(!format!("{:?}", c.api_key).contains("secret"));
    }

    #[test]
    fn credentials_in_server_url_are_refused() {
        assert!(ApiClient::new("http://u:p@example.test", None).is_err());
        assert!(ApiClient::new("ftp://example.test", None).is_err());
    }

    #[test]
    fn page_accepts_numeric_cursor() {
        let p = Page::from_value(serde_json::json!({"items": [1], "next": 7})).unwrap();
        assert_eq!(p.next.as_deref(), Some("7"));
        assert_eq!(p.items.len(), 1);
    }
}
