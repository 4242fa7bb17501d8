//! MCP Streamable HTTP as the gate sees it: one JSON-RPC 2.0 message per POST, the standard
//! `Mcp-Method` / `Mcp-Name` headers checked against it, and `tools/list` answers filtered.
//!
//! Decisions taken here:
//!
//! - **Batches are refused** (`-32600`). JSON-RPC 2.0 §6 allows them, MCP 2025-06-18 removed
//!   them from Streamable HTTP, and checking each member would make one HTTP request carry
//!   several decisions that the upstream could execute in any order; a client sends one
//!   message per POST instead.
//! - `initialize`, `ping`, `notifications/*`, `tools/list` and JSON-RPC responses (the
//!   client's answers to server requests) pass for any authenticated caller; `tools/call` is
//!   decided per tool; every other method is denied.
//! - SEP-2243 (MCP 2026-07-28, "HTTP standard headers"): when `Mcp-Method` is present it must
//!   equal the body's `method`, and when `Mcp-Name` is present it must equal `params.name`
//!   (or `params.uri` when there is no name); a value of the form `=?base64?…?=` is compared
//!   after decoding. A disagreement is a 400 with JSON-RPC error `-32001` (header mismatch):
//!   the gate never lets a proxy or upstream that routes by header see a different request
//!   than the one decided on. A repeated header is a disagreement too.

use axum::http::HeaderMap;
use base64ct::{Base64, Encoding as _};
use serde_json::Value;

use crate::error::Refusal;

/// Deepest JSON nesting accepted in an MCP message.
pub(crate) const MAX_JSON_DEPTH: usize = 64;
/// Largest `tools/list` answer the gate reads to filter it.
pub(crate) const MAX_LIST_BYTES: usize = 4 * 1024 * 1024;

/// One JSON-RPC message, classified.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Message {
    /// A request (has an `id` and a `method`).
    Request {
        id: Value,
        method: String,
        params: Option<Value>,
    },
    /// A notification (a `method`, no `id`).
    Notification { method: String },
    /// A response to a server-initiated request (`id` and `result` or `error`).
    Response,
}

impl Message {
    /// Parses and classifies one JSON-RPC 2.0 message (JSON-RPC 2.0 §4, §5).
    pub(crate) fn parse(body: &[u8]) -> Result<Self, Refusal> {
        let value = mandate_core::json::parse_strict(body, MAX_JSON_DEPTH)
            .map_err(|e| Refusal::ParseError(e.to_string()))?;
        let obj = match value {
            Value::Object(o) => o,
            Value::Array(_) => {
                return Err(Refusal::BadRequest(
                    "JSON-RPC batches are not accepted: send one message per request".into(),
                ));
            }
            _ => return Err(invalid("a JSON-RPC message must be an object")),
        };
        if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Err(invalid("`jsonrpc` must be \"2.0\""));
        }
        let id = obj.get("id");
        if let Some(id) = id {
            // MCP: "the ID MUST NOT be null"; JSON-RPC: a string or a number.
            let ok = id.is_string() || id.as_i64().is_some() || id.as_u64().is_some();
            if !ok {
                return Err(invalid("`id` must be a string or an integer"));
            }
        }
        let params = obj.get("params").cloned();
        if params
            .as_ref()
            .is_some_and(|p| !p.is_object() && !p.is_array())
        {
            return Err(invalid("`params` must be an object or an array"));
        }
        match (obj.get("method"), id) {
            (Some(Value::String(method)), Some(id)) => Ok(Message::Request {
                id: id.clone(),
                method: method.clone(),
                params,
            }),
            (Some(Value::String(method)), None) => Ok(Message::Notification {
                method: method.clone(),
            }),
            (Some(_), _) => Err(invalid("`method` must be a string")),
            (None, Some(_)) if obj.contains_key("result") || obj.contains_key("error") => {
                Ok(Message::Response)
            }
            (None, _) => Err(invalid(
                "a JSON-RPC message needs a `method`, or a `result` or `error`",
            )),
        }
    }

    /// The `method`, if any.
    pub(crate) fn method(&self) -> Option<&str> {
        match self {
            Message::Request { method, .. } | Message::Notification { method } => Some(method),
            Message::Response => None,
        }
    }

    /// The JSON-RPC id to answer with (`null` when there is none).
    pub(crate) fn id(&self) -> Value {
        match self {
            Message::Request { id, .. } => id.clone(),
            _ => Value::Null,
        }
    }
}

/// SEP-2243: `Mcp-Method` and `Mcp-Name`, when present, must agree with the body.
pub(crate) fn check_headers(headers: &HeaderMap, message: &Message) -> Result<(), Refusal> {
    let params = match message {
        Message::Request { params, .. } => params.as_ref(),
        _ => None,
    };
    if let Some(value) = single_header(headers, "mcp-method")?
        && Some(value.as_str()) != message.method()
    {
        return Err(Refusal::HeaderMismatch(
            "the `Mcp-Method` header does not match the body's `method`".into(),
        ));
    }
    if let Some(value) = single_header(headers, "mcp-name")? {
        let name = params
            .and_then(|p| p.get("name"))
            .and_then(Value::as_str)
            .or_else(|| params.and_then(|p| p.get("uri")).and_then(Value::as_str));
        if Some(value.as_str()) != name {
            return Err(Refusal::HeaderMismatch(
                "the `Mcp-Name` header does not match the body's `params.name`".into(),
            ));
        }
    }
    Ok(())
}

/// The names of the tools in a `tools/list` result.
pub(crate) fn listed_tools(message: &Value) -> Vec<String> {
    message
        .pointer("/result/tools")
        .and_then(Value::as_array)
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| t.get("name").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Keeps only the tools for which `keep` holds.
pub(crate) fn retain_tools(message: &mut Value, keep: &dyn Fn(&str) -> bool) {
    if let Some(tools) = message
        .pointer_mut("/result/tools")
        .and_then(Value::as_array_mut)
    {
        tools.retain(|t| t.get("name").and_then(Value::as_str).is_some_and(keep));
    }
}

/// A `text/event-stream` body split into events (WHATWG HTML §9.2.6), each with its field
/// lines; the `data` of an event is its `data:` lines joined by `\n`.
pub(crate) struct EventStream {
    events: Vec<Vec<String>>,
}

impl EventStream {
    /// Splits a complete event-stream body.
    pub(crate) fn parse(text: &str) -> Self {
        let normalised = text.replace("\r\n", "\n").replace('\r', "\n");
        let mut events = Vec::new();
        let mut current = Vec::new();
        for line in normalised.split('\n') {
            if line.is_empty() {
                if !current.is_empty() {
                    events.push(std::mem::take(&mut current));
                }
            } else {
                current.push(line.to_owned());
            }
        }
        if !current.is_empty() {
            events.push(current);
        }
        Self { events }
    }

    /// The JSON messages of the events, with the index of their event.
    pub(crate) fn messages(&self) -> Vec<(usize, Value)> {
        self.events
            .iter()
            .enumerate()
            .filter_map(|(i, lines)| {
                let data: Vec<&str> = lines
                    .iter()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect();
                if data.is_empty() {
                    return None;
                }
                serde_json::from_str(&data.join("\n")).ok().map(|v| (i, v))
            })
            .collect()
    }

    /// Replaces the data of event `index` by `message`.
    pub(crate) fn replace(&mut self, index: usize, message: &Value) {
        if let Some(lines) = self.events.get_mut(index) {
            let mut out: Vec<String> = lines
                .iter()
                .filter(|l| !l.starts_with("data:"))
                .cloned()
                .collect();
            out.push(format!("data: {message}"));
            *lines = out;
        }
    }

    /// The event stream as text.
    pub(crate) fn to_text(&self) -> String {
        let mut out = String::new();
        for lines in &self.events {
            for l in lines {
                out.push_str(l);
                out.push('\n');
            }
            out.push('\n');
        }
        out
    }
}

/// The value of a header that may appear at most once, decoded from the SEP-2243 base64 form.
fn single_header(headers: &HeaderMap, name: &str) -> Result<Option<String>, Refusal> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Refusal::HeaderMismatch(format!(
            "the `{name}` header must appear at most once"
        )));
    }
    let text = first.to_str().map_err(|_| {
        Refusal::HeaderMismatch(format!("the `{name}` header is not visible ASCII"))
    })?;
    if let Some(encoded) = text
        .strip_prefix("=?base64?")
        .and_then(|t| t.strip_suffix("?="))
    {
        let bytes = Base64::decode_vec(encoded).map_err(|_| {
            Refusal::HeaderMismatch(format!("the `{name}` header is not valid base64"))
        })?;
        return String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| Refusal::HeaderMismatch(format!("the `{name}` header is not UTF-8")));
    }
    Ok(Some(text.to_owned()))
}

fn invalid(message: &str) -> Refusal {
    Refusal::BadRequest(message.to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use axum::http::HeaderValue;
    use serde_json::json;

    fn msg(v: Value) -> Result<Message, Refusal> {
        Message::parse(v.to_string().as_bytes())
    }

    #[test]
    fn classifies_messages() {
        let m = msg(
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "x"}}),
        )
        .unwrap();
        assert_eq!(m.method(), Some("tools/call"));
        assert_eq!(m.id(), json!(1));
        assert_eq!(
            msg(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).unwrap(),
            Message::Notification {
                method: "notifications/initialized".into()
            }
        );
        assert_eq!(
            msg(json!({"jsonrpc": "2.0", "id": "a", "result": {}})).unwrap(),
            Message::Response
        );
        assert!(matches!(
            msg(json!([{"jsonrpc": "2.0", "id": 1, "method": "ping"}])),
            Err(Refusal::BadRequest(_))
        ));
        assert!(msg(json!({"jsonrpc": "1.0", "id": 1, "method": "ping"})).is_err());
        assert!(msg(json!({"jsonrpc": "2.0", "id": null, "method": "ping"})).is_err());
        assert!(msg(json!({"jsonrpc": "2.0", "id": 1.5, "method": "ping"})).is_err());
        assert!(msg(json!({"jsonrpc": "2.0", "id": 1, "method": 7})).is_err());
        assert!(msg(json!({"jsonrpc": "2.0", "id": 1, "method": "x", "params": 3})).is_err());
        assert!(matches!(
            Message::parse(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"id\":2,\"method\":\"ping\"}"),
            Err(Refusal::ParseError(_))
        ));
        assert!(matches!(Message::parse(b"{"), Err(Refusal::ParseError(_))));
    }

    #[test]
    fn headers_must_agree() {
        let call = msg(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "read_ticket"}})).unwrap();
        let mut h = HeaderMap::new();
        assert!(check_headers(&h, &call).is_ok());
        h.insert("mcp-method", HeaderValue::from_static("tools/call"));
        h.insert("mcp-name", HeaderValue::from_static("read_ticket"));
        assert!(check_headers(&h, &call).is_ok());
        h.insert(
            "mcp-name",
            HeaderValue::from_static("=?base64?cmVhZF90aWNrZXQ=?="),
        );
        assert!(check_headers(&h, &call).is_ok());
        h.insert("mcp-name", HeaderValue::from_static("delete_ticket"));
        assert!(matches!(
            check_headers(&h, &call),
            Err(Refusal::HeaderMismatch(_))
        ));
        h.insert("mcp-name", HeaderValue::from_static("read_ticket"));
        h.insert("mcp-method", HeaderValue::from_static("tools/list"));
        assert!(matches!(
            check_headers(&h, &call),
            Err(Refusal::HeaderMismatch(_))
        ));
        h.insert("mcp-method", HeaderValue::from_static("tools/call"));
        h.append("mcp-method", HeaderValue::from_static("tools/call"));
        assert!(matches!(
            check_headers(&h, &call),
            Err(Refusal::HeaderMismatch(_))
        ));
        let list = msg(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})).unwrap();
        let mut h = HeaderMap::new();
        h.insert("mcp-name", HeaderValue::from_static("x"));
        assert!(check_headers(&h, &list).is_err());
    }

    #[test]
    fn filters_event_streams() {
        let body = "event: message\r\nid: 7\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"tools\":[{\"name\":\"a\"},{\"name\":\"b\"}]}}\r\n\r\n";
        let mut stream = EventStream::parse(body);
        let messages = stream.messages();
        assert_eq!(messages.len(), 1);
        let (i, mut m) = messages.into_iter().next().unwrap();
        assert_eq!(listed_tools(&m), ["a", "b"]);
        retain_tools(&mut m, &|n| n == "b");
        stream.replace(i, &m);
        assert_eq!(
            stream.to_text(),
            "event: message\nid: 7\ndata: {\"id\":3,\"jsonrpc\":\"2.0\",\"result\":{\"tools\":[{\"name\":\"b\"}]}}\n\n"
        );
    }
}
