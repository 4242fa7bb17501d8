//! A scripted one-request-per-connection HTTP server and a runner for the binary.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::thread;

pub(crate) const API_KEY: &str =
    "mnd_abcdefghijklmnopqrstuvwxyz_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG";

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) method: String,
    /// Path and query.
    pub(crate) target: String,
    pub(crate) authorization: Option<String>,
    pub(crate) body: String,
}

/// A reply: status and JSON body (problem+json for errors).
pub(crate) struct Reply(pub(crate) u16, pub(crate) serde_json::Value);

/// Serves on `127.0.0.1:0` with `route`; returns the base URL and the log of requests.
pub(crate) fn serve(
    route: impl Fn(&Seen) -> Reply + Send + 'static,
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen_log = Arc::clone(&log);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or_default().to_owned();
            let target = parts.next().unwrap_or_default().to_owned();
            let mut length = 0;
            let mut authorization = None;
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                let header = header.trim_end();
                if header.is_empty() {
                    break;
                }
                let (name, value) = header.split_once(':').unwrap();
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap(),
                    "authorization" => authorization = Some(value.trim().to_owned()),
                    _ => {}
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let seen = Seen {
                method,
                target,
                authorization,
                body: String::from_utf8(body).unwrap(),
            };
            let Reply(status, json) = route(&seen);
            seen_log.lock().unwrap().push(seen);
            let body = json.to_string();
            let content_type = if status >= 400 {
                "application/problem+json"
            } else {
                "application/json"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (base, log)
}

/// Runs `mandate` with the API key in the environment.
pub(crate) fn mandate(base: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(args)
        .env("MANDATE_SERVER", base)
        .env("MANDATE_API_KEY", API_KEY)
        .env_remove("MANDATE_CONFIG")
        .output()
        .unwrap()
}

pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
