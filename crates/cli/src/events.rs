//! `mandate events`: follow `GET /v1/events` (Server-Sent Events) — revocations, suspensions,
//! resumptions — one line per event until Ctrl-C, reconnecting with `Last-Event-ID`.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use serde_json::{Value, json};

use crate::Outcome;
use crate::client::{ApiClient, ApiError};
use crate::output::{self, Output};

#[derive(Args)]
pub(crate) struct EventsArgs {
    /// Start after this event id (a receipt `seq`; 0 replays every past event); without it,
    /// only events from now on.
    #[arg(long, value_name = "N")]
    last_event_id: Option<u64>,
}

/// Longest line the stream may send (a receipt is far smaller).
const MAX_LINE: usize = 1024 * 1024;
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub(crate) async fn run(api: &ApiClient, out: &Output, args: EventsArgs) -> Result<Outcome> {
    tokio::select! {
        result = follow(api, out, args.last_event_id) => result.map(|()| Outcome::Ok),
        signal = tokio::signal::ctrl_c() => {
            signal.context("cannot listen for Ctrl-C")?;
            Ok(Outcome::Ok)
        }
    }
}

async fn follow(api: &ApiClient, out: &Output, mut last: Option<u64>) -> Result<()> {
    let mut connected_once = false;
    let mut backoff = Duration::from_secs(1);
    loop {
        let headers: Vec<(&str, String)> = last
            .map(|id| vec![("last-event-id", id.to_string())])
            .unwrap_or_default();
        let mut response = match api
            .open_stream(&["v1", "events"], "text/event-stream", &headers)
            .await
        {
            Ok(r) => r,
            // The first connection reports every failure; later ones retry what may pass.
            Err(e) if connected_once && is_transient(&e) => {
                eprintln!("warning: {e:#}; retrying in {}s", backoff.as_secs());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
            Err(e) => return Err(e),
        };
        if !connected_once && !out.is_json() {
            eprintln!("following events (Ctrl-C to stop)");
        }
        connected_once = true;
        let mut parser = SseParser::default();
        loop {
            match response.chunk().await {
                Ok(Some(bytes)) => {
                    backoff = Duration::from_secs(1);
                    for event in parser.feed(&bytes)? {
                        print_event(out, &event)?;
                    }
                    if let Some(id) = parser.last_id.as_deref().and_then(|s| s.parse().ok()) {
                        last = Some(id);
                    }
                }
                Ok(None) => {
                    eprintln!("warning: the event stream ended; reconnecting");
                    break;
                }
                Err(e) => {
                    eprintln!(
                        "warning: the event stream failed: {}; reconnecting",
                        e.without_url()
                    );
                    break;
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// A 5xx answer or a transport error: worth another attempt.
fn is_transient(e: &anyhow::Error) -> bool {
    match e.downcast_ref::<ApiError>() {
        Some(api) => api.status() >= 500,
        None => e.chain().any(|c| c.is::<reqwest::Error>()),
    }
}

/// `<id> <kind> <resource>`, or with `--json` `{"id", "kind", "receipt"}` on one line.
fn print_event(out: &Output, event: &SseEvent) -> Result<()> {
    let receipt: Value =
        serde_json::from_str(&event.data).unwrap_or_else(|_| Value::String(event.data.clone()));
    let id = event.id.as_deref().unwrap_or("-");
    if out.is_json() {
        let id = id.parse::<u64>().map_or_else(|_| json!(id), |n| json!(n));
        return output::print_json_line(&json!({"id": id, "kind": event.kind, "receipt": receipt}));
    }
    let resource = receipt
        .get("resource")
        .and_then(Value::as_str)
        .unwrap_or("-");
    output::print_stdout(&format!(
        "{}\n",
        output::sanitize(&format!("{id} {} {resource}", event.kind))
    ))
}

/// One dispatched Server-Sent Event.
#[derive(Debug, PartialEq, Eq)]
struct SseEvent {
    /// The last event id at dispatch.
    id: Option<String>,
    /// The `event` field; `message` when absent.
    kind: String,
    /// The `data` lines joined with `\n`.
    data: String,
}

/// An incremental `text/event-stream` parser (WHATWG HTML §9.2.6), fed chunk by chunk. Lines
/// end in `\n` or `\r\n`.
#[derive(Default)]
struct SseParser {
    pending: Vec<u8>,
    kind: Option<String>,
    data: Option<String>,
    last_id: Option<String>,
}

impl SseParser {
    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>> {
        self.pending.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let mut line: Vec<u8> = self.pending.drain(..=end).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line);
            if let Some(event) = self.line(&line) {
                events.push(event);
            }
        }
        if self.pending.len() > MAX_LINE {
            bail!("the event stream sent a line longer than {MAX_LINE} bytes");
        }
        Ok(events)
    }

    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            let kind = self.kind.take();
            let data = self.data.take()?;
            return Some(SseEvent {
                id: self.last_id.clone(),
                kind: kind.unwrap_or_else(|| "message".to_owned()),
                data,
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => self.kind = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "id" if !value.contains('\0') => self.last_id = Some(value.to_owned()),
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_split_across_chunks() {
        let mut p = SseParser::default();
        assert!(
            p.feed(b": keep-alive\n\nid: 7\nevent: agent.re")
                .unwrap()
                .is_empty()
        );
        let events = p
            .feed(b"voked\r\ndata: {\"resource\":\r\ndata: \"agents/x\"}\r\n\r\nid: 9\n")
            .unwrap();
        assert_eq!(
            events,
            vec![SseEvent {
                id: Some("7".into()),
                kind: "agent.revoked".into(),
                data: "{\"resource\":\n\"agents/x\"}".into(),
            }]
        );
        // An id without data moves the resume point but dispatches nothing.
        assert!(p.feed(b"\n").unwrap().is_empty());
        assert_eq!(p.last_id.as_deref(), Some("9"));
        let events = p.feed(b"data:x\n\n").unwrap();
        assert_eq!(events[0].kind, "message");
        assert_eq!(events[0].data, "x");
        assert_eq!(events[0].id.as_deref(), Some("9"));
    }

    #[test]
    fn endless_lines_are_refused() {
        let mut p = SseParser::default();
        assert!(p.feed(&vec![b'a'; MAX_LINE + 1]).is_err());
    }
}
