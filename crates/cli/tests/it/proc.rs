//! Runs `mandate serve` as a child process on a free loopback port.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ADMIN_KEY: &str = "mnd_process_test_key_0123456789abcdef";

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mandate"))
}

pub struct ServerProcess {
    pub child: Child,
    pub url: String,
}

impl ServerProcess {
    pub fn start(data: &Path) -> Self {
        Self::start_logging(data, None)
    }

    /// Starts the server; with `log`, its stdout and stderr go to that file at debug level.
    pub fn start_logging(data: &Path, log: Option<&Path>) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::spawn(data, port, &[], log)
    }

    /// Starts the server on `port` with `extra` arguments to `serve`.
    pub fn start_with(data: &Path, port: u16, extra: &[&str]) -> Self {
        Self::spawn(data, port, extra, None)
    }

    fn spawn(data: &Path, port: u16, extra: &[&str], log: Option<&Path>) -> Self {
        let child = Command::new(bin())
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
            .arg(data)
            .args(extra)
            .env("MANDATE_BOOTSTRAP_KEY", ADMIN_KEY)
            .env("MANDATE_LOG", if log.is_some() { "debug" } else { "warn" })
            .stdout(match log {
                Some(p) => Stdio::from(std::fs::File::create(p).expect("log file")),
                None => Stdio::null(),
            })
            .stderr(match log {
                Some(p) => Stdio::from(
                    std::fs::OpenOptions::new()
                        .append(true)
                        .open(p)
                        .expect("log file"),
                ),
                None => Stdio::inherit(),
            })
            .spawn()
            .expect("spawn mandate serve");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, url }
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("wait");
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the CLI against `url` and returns (exit code, stdout, stderr).
pub fn mandate(url: &str, key: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(args)
        .env("MANDATE_SERVER", url)
        .env("MANDATE_API_KEY", key)
        .output()
        .expect("run mandate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
