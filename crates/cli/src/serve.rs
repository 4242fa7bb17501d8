//! `mandate serve`: settings from flags, environment, config file and defaults, then the server.
//!
//! Each setting is taken from the first place that has it: the command-line flag, then its
//! `MANDATE_*` environment variable, then the TOML config file, then the built-in default.
//! Empty environment variables count as unset. The config file is `--config`, else
//! `MANDATE_CONFIG`, else `./mandate.toml` when it exists; unknown keys in it are an error.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow};
use clap::Args;
use mandate_core::jose::Algorithm;
use serde::Deserialize;

/// Config file read when neither `--config` nor `MANDATE_CONFIG` names one, if it exists.
const DEFAULT_CONFIG: &str = "mandate.toml";
const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_DATA: &str = "./mandate-data";

#[derive(Args, Default)]
pub(crate) struct ServeArgs {
    /// TOML config file [env: MANDATE_CONFIG] [default: ./mandate.toml if it exists]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on, IP:PORT [env: MANDATE_LISTEN] [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Directory for the embedded SQLite store and server keys [env: MANDATE_DATA] [default: ./mandate-data]
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Database URL: `sqlite:PATH`, or `postgres://user@host:port/db` (replicas may share it),
    /// instead of the embedded store [env: MANDATE_DATABASE_URL]
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Issuer identifier (public base URL) [env: MANDATE_ISSUER]
    #[arg(long, value_name = "URL")]
    issuer: Option<String>,
    /// SPIFFE trust domain of agent ids [env: MANDATE_TRUST_DOMAIN]
    #[arg(long, value_name = "TD")]
    trust_domain: Option<String>,
    /// JOSE name of the server's Ed25519 signatures: `EdDSA` or `Ed25519` (RFC 9864)
    /// [env: MANDATE_SIGNING_ALG] [default: EdDSA]
    #[arg(long, value_name = "ALG")]
    signing_alg: Option<String>,
}

/// Runs the server until Ctrl-C or SIGTERM.
pub(crate) async fn run(args: ServeArgs) -> Result<()> {
    init_tracing();
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let settings = resolve(&args, &env, Path::new(DEFAULT_CONFIG))?;
    let config = mandate_server::ServerConfig {
        listen: settings.listen,
        data_dir: settings.data_dir,
        database_url: settings.database_url,
        issuer: settings.issuer,
        trust_domain: settings.trust_domain,
        // Only from the environment: a flag would leave the key in shell history and `ps`.
        bootstrap_key: env("MANDATE_BOOTSTRAP_KEY"),
        signing_alg: settings.signing_alg,
        clock: None,
    };
    mandate_server::serve(config, shutdown_signal())
        .await
        .map_err(|e| anyhow!("server failed: {e}"))
}

/// The merged settings, before they become a `ServerConfig`.
#[derive(Debug, PartialEq)]
struct Settings {
    listen: SocketAddr,
    data_dir: PathBuf,
    database_url: Option<String>,
    issuer: Option<String>,
    trust_domain: Option<String>,
    signing_alg: Algorithm,
}

/// One source of settings; also the schema of the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Layer {
    listen: Option<String>,
    data: Option<PathBuf>,
    database_url: Option<String>,
    issuer: Option<String>,
    trust_domain: Option<String>,
    signing_alg: Option<String>,
}

/// Merges flags > environment > config file > defaults.
fn resolve(
    args: &ServeArgs,
    env: &dyn Fn(&str) -> Option<String>,
    default_config: &Path,
) -> Result<Settings> {
    let flags = Layer {
        listen: args.listen.clone(),
        data: args.data.clone(),
        database_url: args.database_url.clone(),
        issuer: args.issuer.clone(),
        trust_domain: args.trust_domain.clone(),
        signing_alg: args.signing_alg.clone(),
    };
    let environment = Layer {
        listen: env("MANDATE_LISTEN"),
        data: env("MANDATE_DATA").map(PathBuf::from),
        database_url: env("MANDATE_DATABASE_URL"),
        issuer: env("MANDATE_ISSUER"),
        trust_domain: env("MANDATE_TRUST_DOMAIN"),
        signing_alg: env("MANDATE_SIGNING_ALG"),
    };
    let file = match args
        .config
        .clone()
        .or_else(|| env("MANDATE_CONFIG").map(PathBuf::from))
    {
        Some(path) => read_config(&path)?,
        None if default_config.is_file() => read_config(default_config)?,
        None => Layer::default(),
    };
    let merged = flags.or(environment).or(file);
    let listen = merged.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen = listen.parse().map_err(|_| {
        anyhow!("invalid listen address `{listen}`: expected IP:PORT such as `{DEFAULT_LISTEN}`")
    })?;
    let signing_alg = match merged.signing_alg.as_deref() {
        None => Algorithm::EdDSA,
        Some(name) => Algorithm::from_header(name).ok_or_else(|| {
            anyhow!("invalid signing algorithm `{name}`: use `EdDSA` or `Ed25519`")
        })?,
    };
    Ok(Settings {
        listen,
        signing_alg,
        data_dir: merged.data.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA)),
        database_url: merged.database_url,
        issuer: merged.issuer,
        trust_domain: merged.trust_domain,
    })
}

impl Layer {
    /// Each setting from `self`, or from `lower` where `self` has none.
    fn or(self, lower: Self) -> Self {
        Self {
            listen: self.listen.or(lower.listen),
            data: self.data.or(lower.data),
            database_url: self.database_url.or(lower.database_url),
            issuer: self.issuer.or(lower.issuer),
            trust_domain: self.trust_domain.or(lower.trust_domain),
            signing_alg: self.signing_alg.or(lower.signing_alg),
        }
    }
}

fn read_config(path: &Path) -> Result<Layer> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file `{}`", path.display()))?;
    toml::from_str(&text).map_err(|e| {
        // toml's message spans several lines (it quotes the source); keep the gist on one.
        let message = e.message().to_owned();
        anyhow!("invalid config file `{}`: {message}", path.display())
    })
}

/// Logs to stderr, filtered by `MANDATE_LOG` (default `info`).
pub(crate) fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("MANDATE_LOG") {
        Ok(spec) => EnvFilter::try_new(&spec).unwrap_or_else(|e| {
            eprintln!("warning: ignoring invalid `MANDATE_LOG`: {e}");
            EnvFilter::new("info")
        }),
        Err(_) => EnvFilter::new("info"),
    };
    // Fails only if a subscriber is already set, which then keeps working.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let dir = tempfile::tempdir().unwrap();
        let s = resolve(
            &ServeArgs::default(),
            &env_of(&[]),
            &dir.path().join("none.toml"),
        )
        .unwrap();
        assert_eq!(
            s,
            Settings {
                listen: "127.0.0.1:8080".parse().unwrap(),
                data_dir: PathBuf::from("./mandate-data"),
                signing_alg: Algorithm::EdDSA,
                database_url: None,
                issuer: None,
                trust_domain: None,
            }
        );
    }

    #[test]
    fn flags_beat_env_beat_file_beat_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let default_config = dir.path().join("mandate.toml");
        std::fs::write(
            &default_config,
            r#"
            listen = "127.0.0.1:1001"
            data = "/file/data"
            database_url = "sqlite:///file.db"
            issuer = "https://file.example"
            "#,
        )
        .unwrap();
        let env = env_of(&[
            ("MANDATE_LISTEN", "127.0.0.1:2002"),
            ("MANDATE_DATA", "/env/data"),
            ("MANDATE_TRUST_DOMAIN", "env.example"),
        ]);
        let args = ServeArgs {
            listen: Some("127.0.0.1:3003".into()),
            ..ServeArgs::default()
        };
        let s = resolve(&args, &env, &default_config).unwrap();
        assert_eq!(s.listen, "127.0.0.1:3003".parse().unwrap()); // flag
        assert_eq!(s.data_dir, PathBuf::from("/env/data")); // env over file
        assert_eq!(s.database_url.as_deref(), Some("sqlite:///file.db")); // file
        assert_eq!(s.issuer.as_deref(), Some("https://file.example")); // file
        assert_eq!(s.trust_domain.as_deref(), Some("env.example")); // env

        let s = resolve(&ServeArgs::default(), &env, &default_config).unwrap();
        assert_eq!(s.listen, "127.0.0.1:2002".parse().unwrap()); // env over file

        let s = resolve(&ServeArgs::default(), &env_of(&[]), &default_config).unwrap();
        assert_eq!(s.listen, "127.0.0.1:1001".parse().unwrap()); // file over default
    }

    #[test]
    fn config_path_comes_from_flag_then_env_then_default() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, issuer: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, format!("issuer = \"{issuer}\"\n")).unwrap();
            path
        };
        let default_config = write("mandate.toml", "https://default");
        let from_env = write("env.toml", "https://env");
        let from_flag = write("flag.toml", "https://flag");
        let env = env_of(&[("MANDATE_CONFIG", from_env.to_str().unwrap())]);

        let issuer = |args: &ServeArgs, env: &dyn Fn(&str) -> Option<String>| {
            resolve(args, env, &default_config).unwrap().issuer.unwrap()
        };
        let flag_args = ServeArgs {
            config: Some(from_flag),
            ..ServeArgs::default()
        };
        assert_eq!(issuer(&flag_args, &env), "https://flag");
        assert_eq!(issuer(&ServeArgs::default(), &env), "https://env");
        assert_eq!(
            issuer(&ServeArgs::default(), &env_of(&[])),
            "https://default"
        );

        let missing = ServeArgs {
            config: Some(dir.path().join("missing.toml")),
            ..ServeArgs::default()
        };
        assert!(resolve(&missing, &env_of(&[]), &default_config).is_err());
    }

    #[test]
    fn unknown_config_keys_and_bad_addresses_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mandate.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:1\"\nbootstrap_key = \"x\"\n").unwrap();
        let err = resolve(&ServeArgs::default(), &env_of(&[]), &path).unwrap_err();
        assert!(err.to_string().contains("bootstrap_key"), "{err}");

        let args = ServeArgs {
            listen: Some("localhost".into()),
            ..ServeArgs::default()
        };
        let err = resolve(&args, &env_of(&[]), &dir.path().join("none.toml")).unwrap_err();
        assert!(err.to_string().contains("invalid listen address"), "{err}");
    }
}
