//! Command-line input that is not a plain string: JSON or `@FILE` arguments and key files.

use std::fs::{self, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use serde_json::{Map, Value, json};

use crate::output::{self, Output};

/// Parses `arg` as JSON, or reads JSON from the file it names after `@` (`@-` is stdin).
pub(crate) fn json_or_file(arg: &str) -> Result<Value> {
    let (text, origin) = match arg.strip_prefix('@') {
        Some("-") => {
            let mut text = String::new();
            io::stdin()
                .read_to_string(&mut text)
                .context("cannot read standard input")?;
            (text, "standard input".to_owned())
        }
        Some(path) => (
            fs::read_to_string(path).with_context(|| format!("cannot read `{path}`"))?,
            format!("`{path}`"),
        ),
        None => (arg.to_owned(), "the argument".to_owned()),
    };
    serde_json::from_str(&text).with_context(|| format!("{origin} is not valid JSON"))
}

/// A ceiling: a JSON array of `authorization_details`; a single object is taken as a one-item array.
pub(crate) fn ceiling(arg: &str) -> Result<Value> {
    object_list(arg, "--ceiling", "authorization_details")
}

/// A JSON array of objects read from `arg` (JSON or `@FILE`) for the option `flag`; a single
/// object is taken as a one-item array.
pub(crate) fn object_list(arg: &str, flag: &str, what: &str) -> Result<Value> {
    match json_or_file(arg).with_context(|| format!("invalid `{flag}`"))? {
        Value::Array(items) if items.iter().all(Value::is_object) => Ok(Value::Array(items)),
        Value::Object(item) => Ok(Value::Array(vec![Value::Object(item)])),
        _ => bail!("invalid `{flag}`: expected a JSON array of {what} objects"),
    }
}

/// The public members of an Ed25519 JWK read from `arg`; a private `d` is never sent.
pub(crate) fn public_jwk(arg: &str) -> Result<Value> {
    let jwk = json_or_file(arg).context("invalid `--jwk`")?;
    let Some(obj) = jwk.as_object() else {
        bail!("invalid `--jwk`: expected a JWK object");
    };
    let member = |name: &str| -> Result<&str> {
        obj.get(name)
            .and_then(Value::as_str)
            .with_context(|| format!("invalid `--jwk`: the key has no `{name}` string"))
    };
    let public = json!({ "kty": member("kty")?, "crv": member("crv")?, "x": member("x")? });
    if obj.contains_key("d") {
        eprintln!("note: the JWK holds a private key; only its public part is sent");
    }
    Ok(public)
}

/// Fails early if a private key could not be saved at `path`, before the server makes one.
pub(crate) fn check_save_target(path: &Path) -> Result<()> {
    if path.exists() {
        bail!(
            "`{}` already exists; refusing to overwrite it",
            path.display()
        );
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        bail!(
            "cannot save to `{}`: `{}` is not a directory",
            path.display(),
            dir.display()
        );
    }
    Ok(())
}

/// Delivers a server-generated private key exactly once: into `save` (mode 0600) or to stdout.
///
/// The `private_jwk` member is taken out of `response`. It is printed (after a warning on
/// stderr) when no file was asked for, or when writing the file failed, so it is never lost.
/// With `--json` the key is put back into `response` instead, for the caller to print.
pub(crate) fn deliver_private_key(
    response: &mut Map<String, Value>,
    save: Option<&Path>,
    out: &Output,
) -> Result<Option<Value>> {
    let Some(key) = response.remove("private_jwk").filter(|k| !k.is_null()) else {
        return Ok(None);
    };
    if let Some(path) = save {
        match write_private_file(path, &key) {
            Ok(()) => {
                eprintln!("private key written to `{}` (mode 0600)", path.display());
                return Ok(None);
            }
            Err(e) => eprintln!(
                "warning: cannot write `{}`: {e:#}; printing the key instead",
                path.display()
            ),
        }
    }
    eprintln!("warning: this private key is shown once and never again; store it now");
    if out.is_json() {
        response.insert("private_jwk".to_owned(), key);
        Ok(None)
    } else {
        Ok(Some(key))
    }
}

/// Prints a private key held back by [`deliver_private_key`] in table mode.
pub(crate) fn print_private_key(key: Option<Value>) -> Result<()> {
    match key {
        Some(key) => {
            output::print_stdout("private key (JWK):\n")?;
            output::print_json(&key)
        }
        None => Ok(()),
    }
}

fn write_private_file(path: &Path, key: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(key)?;
    write_private_text(path, &text)
}

/// Writes `text` and a newline to a new file at `path` with mode 0600 (never overwriting).
pub(crate) fn write_private_text(path: &Path, text: &str) -> Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_accepts_array_object_and_file() {
        let one = r#"{"type":"mandate","actions":["read"]}"#;
        assert_eq!(ceiling(one).unwrap().as_array().unwrap().len(), 1);
        assert_eq!(
            ceiling(&format!("[{one},{one}]"))
                .unwrap()
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert!(ceiling("42").is_err());
        assert!(ceiling("[1]").is_err());
        assert_eq!(
            object_list(
                r#"{"actions":["delete"],"resources":["**"]}"#,
                "--prohibitions",
                "x"
            )
            .unwrap(),
            json!([{"actions": ["delete"], "resources": ["**"]}])
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        fs::write(&path, one).unwrap();
        assert!(ceiling(&format!("@{}", path.display())).is_ok());
        assert!(ceiling("@/nonexistent/ceiling.json").is_err());
    }

    #[test]
    fn public_jwk_drops_private_and_extra_members() {
        let jwk = public_jwk(r#"{"kty":"OKP","crv":"Ed25519","x":"abc","d":"secret","kid":"k"}"#)
            .unwrap();
        assert_eq!(jwk, json!({"kty": "OKP", "crv": "Ed25519", "x": "abc"}));
        assert!(public_jwk(r#"{"kty":"OKP"}"#).is_err());
    }

    #[test]
    fn private_key_is_saved_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.jwk");
        check_save_target(&path).unwrap();
        let mut response = Map::new();
        response.insert("private_jwk".into(), json!({"d": "secret"}));
        let held = deliver_private_key(&mut response, Some(&path), &Output::new(false)).unwrap();
        assert!(held.is_none());
        assert!(!response.contains_key("private_jwk"));
        let saved: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(saved, json!({"d": "secret"}));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(check_save_target(&path).is_err());
    }

    #[test]
    fn private_key_falls_back_to_output_when_the_file_cannot_be_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("agent.jwk");
        let mut response = Map::new();
        response.insert("private_jwk".into(), json!({"d": "secret"}));
        let held = deliver_private_key(&mut response, Some(&path), &Output::new(false)).unwrap();
        assert_eq!(held, Some(json!({"d": "secret"})));

        let mut response = Map::new();
        response.insert("private_jwk".into(), json!({"d": "secret"}));
        let held = deliver_private_key(&mut response, None, &Output::new(true)).unwrap();
        assert!(held.is_none());
        assert!(response.contains_key("private_jwk"));
    }
}
