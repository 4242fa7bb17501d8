//! `mandate mandate` and `mandate delegation`: a human delegates to an agent, and the stored
//! delegation chains are shown (as a terminal tree), listed per agent and revoked.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};
use clap::Subcommand;
use serde_json::{Map, Value, json};

use crate::Outcome;
use crate::client::ApiClient;
use crate::human::reason_body;
use crate::input;
use crate::output::{self, Field, Output, Render};

#[derive(Subcommand)]
pub(crate) enum MandateCommand {
    /// Delegate to an agent as the calling human; prints the mandate and the signed delegation
    /// document the agent redeems at the token endpoint.
    Add {
        /// The delegate agent (`agt_…`).
        #[arg(long, value_name = "ID")]
        agent: String,
        /// The authority granted: JSON authorization_details (array or one object), or `@FILE`.
        #[arg(long, value_name = "JSON_OR_@FILE")]
        authorization_details: String,
        /// Explicit denials inherited by every descendant: JSON (array or one object), or `@FILE`.
        #[arg(long, value_name = "JSON_OR_@FILE")]
        prohibitions: Option<String>,
        /// Lifetime of the mandate in seconds.
        #[arg(long, value_name = "SECS", default_value_t = 3600)]
        expires_in: u32,
        /// Deepest sub-delegation allowed in the tree (1 forbids sub-delegation; default 3).
        #[arg(long, value_name = "N")]
        max_depth: Option<u8>,
        /// What the task is for; recorded in the mandate.
        #[arg(long)]
        purpose: String,
        /// Your own task identifier, carried in the mandate.
        #[arg(long, value_name = "T")]
        task_id: Option<String>,
        /// Write the delegation document to FILE (created with mode 0600) instead of printing it.
        #[arg(long, value_name = "FILE")]
        save_document: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub(crate) enum DelegationCommand {
    /// Show one delegation.
    Show {
        /// The delegation (`del_…`).
        id: String,
    },
    /// Show a delegation and every delegation below it as a tree.
    Tree {
        /// The delegation (`del_…`), usually a mandate.
        id: String,
    },
    /// Revoke a delegation, every delegation below it and every token issued under them.
    Revoke {
        /// The delegation (`del_…`).
        id: String,
        /// Why; recorded in the ledger.
        #[arg(long)]
        reason: Option<String>,
    },
    /// List the delegations to and from an agent.
    List {
        /// The agent (`agt_…`).
        #[arg(long, value_name = "ID")]
        agent: String,
    },
}

pub(crate) const DELEGATION: &[Field] = &[
    Field::new("id", "id"),
    Field::new("status", "status"),
    Field::new("delegator", "delegator.id"),
    Field::new("delegate", "delegate"),
    Field::new("parent", "parent"),
    Field::new("root", "root"),
    Field::new("depth", "depth"),
    Field::new("max depth", "max_depth"),
    Field::new("scope", "authorization_details")
        .render(Render::Json)
        .max(60),
    Field::new("prohibitions", "prohibitions")
        .render(Render::Json)
        .max(60),
    Field::new("purpose", "purpose").max(60),
    Field::new("task", "task_id").max(60),
    Field::new("expires", "expires_at"),
    Field::new("created", "created_at"),
    Field::new("revoked", "revoked_at"),
    Field::new("digest", "digest").max(16),
];

const DELEGATION_ROW: &[Field] = &[
    Field::new("id", "id"),
    Field::new("from", "delegator.id"),
    Field::new("to", "delegate"),
    Field::new("depth", "depth"),
    Field::new("status", "status"),
    Field::new("expires", "expires_at"),
    Field::new("purpose", "purpose").max(24),
];

/// Deepest tree the renderer descends into (the server caps depth at 10).
const MAX_TREE_DEPTH: usize = 64;

pub(crate) async fn run_mandate(
    api: &ApiClient,
    out: &Output,
    cmd: MandateCommand,
) -> Result<Outcome> {
    let MandateCommand::Add {
        agent,
        authorization_details,
        prohibitions,
        expires_in,
        max_depth,
        purpose,
        task_id,
        save_document,
    } = cmd;
    let mut body = json!({
        "agent": agent,
        "authorization_details": input::object_list(
            &authorization_details,
            "--authorization-details",
            "authorization_details",
        )?,
        "expires_in": expires_in,
        "purpose": purpose,
    });
    if let Some(p) = prohibitions {
        body["prohibitions"] = input::object_list(&p, "--prohibitions", "prohibition")?;
    }
    if let Some(depth) = max_depth {
        body["max_depth"] = json!(depth);
    }
    if let Some(task) = task_id {
        body["task_id"] = json!(task);
    }
    if let Some(path) = &save_document {
        input::check_save_target(path)?;
    }
    let Value::Object(mut created) = api.post(&["v1", "mandates"], &body).await? else {
        bail!("unexpected response from the server: expected an object");
    };
    let held = deliver_document(&mut created, save_document.as_deref(), out)?;
    if out.is_json() {
        output::print_json(&Value::Object(created))?;
    } else {
        out.object(created.get("mandate").unwrap_or(&Value::Null), DELEGATION)?;
    }
    if let Some(document) = held {
        output::print_stdout(&format!(
            "delegation document (hand it to agent {} only):\n{document}\n",
            output::sanitize(&agent)
        ))?;
    }
    Ok(Outcome::Ok)
}

/// Delivers the delegation document: into `save` (mode 0600), or back to the caller to print.
///
/// It lets its holder redeem the mandate, so it is printed only when no file was asked for (or
/// the file could not be written, so it is never lost), always after a note on stderr. With
/// `--json` a saved document is left out of the printed response.
fn deliver_document(
    created: &mut Map<String, Value>,
    save: Option<&Path>,
    out: &Output,
) -> Result<Option<String>> {
    let Some(Value::String(document)) = created.remove("delegation") else {
        bail!("unexpected response from the server: no `delegation` document");
    };
    if let Some(path) = save {
        match input::write_private_text(path, &document) {
            Ok(()) => {
                eprintln!(
                    "delegation document written to `{}` (mode 0600); hand it to the agent only",
                    path.display()
                );
                return Ok(None);
            }
            Err(e) => eprintln!(
                "warning: cannot write `{}`: {e:#}; printing the document instead",
                path.display()
            ),
        }
    }
    eprintln!(
        "note: the delegation document lets its holder redeem this mandate until it expires; \
         treat it like a secret and hand it to the agent only"
    );
    if out.is_json() {
        created.insert("delegation".to_owned(), Value::String(document));
        Ok(None)
    } else {
        Ok(Some(output::sanitize(&document)))
    }
}

pub(crate) async fn run(api: &ApiClient, out: &Output, cmd: DelegationCommand) -> Result<Outcome> {
    match cmd {
        DelegationCommand::Show { id } => {
            let d = api.get(&["v1", "delegations", &id], &[]).await?;
            out.object(&d, DELEGATION)?;
        }
        DelegationCommand::Tree { id } => {
            let tree = api.get(&["v1", "delegations", &id, "tree"], &[]).await?;
            if out.is_json() {
                output::print_json(&tree)?;
            } else {
                output::print_stdout(&render_tree(&tree, &now_rfc3339()))?;
            }
        }
        DelegationCommand::Revoke { id, reason } => revoke(api, out, &id, reason).await?,
        DelegationCommand::List { agent } => {
            let both = api
                .get(&["v1", "agents", &agent, "delegations"], &[])
                .await?;
            if out.is_json() {
                output::print_json(&both)?;
            } else {
                let agent = output::sanitize(&agent);
                for (key, title) in [("in", "to"), ("out", "from")] {
                    let items = match both.get(key) {
                        Some(Value::Array(items)) => items.clone(),
                        _ => bail!("unexpected response from the server: no `{key}` array"),
                    };
                    output::print_stdout(&format!(
                        "delegations {title} {agent} ({key}): {}\n",
                        items.len()
                    ))?;
                    if !items.is_empty() {
                        out.list(items, DELEGATION_ROW)?;
                    }
                }
            }
        }
    }
    Ok(Outcome::Ok)
}

/// `POST /v1/delegations/{id}/revoke`, printing the delegation and how many were revoked.
pub(crate) async fn revoke(
    api: &ApiClient,
    out: &Output,
    id: &str,
    reason: Option<String>,
) -> Result<()> {
    let d = api
        .post(&["v1", "delegations", id, "revoke"], &reason_body(reason))
        .await?;
    out.object(&d, DELEGATION)?;
    if !out.is_json() {
        let n = d
            .get("revoked_delegations")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let noun = if n == 1 { "delegation" } else { "delegations" };
        output::print_stdout(&format!(
            "revoked {n} {noun} (and every token under them)\n"
        ))?;
    }
    Ok(())
}

/// The tree as text: the root on the first line, each descendant below its parent behind
/// `├─`/`└─` connectors, `│ ` continuing a branch that has more children to come.
fn render_tree(tree: &Value, now: &str) -> String {
    let mut text = String::new();
    text.push_str(&tree_line(tree, now));
    text.push('\n');
    render_children(tree, "", now, 0, &mut text);
    text
}

fn render_children(node: &Value, prefix: &str, now: &str, level: usize, text: &mut String) {
    let children = node
        .get("children")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    if level >= MAX_TREE_DEPTH {
        if !children.is_empty() {
            text.push_str(&format!("{prefix}└─ … ({} more)\n", children.len()));
        }
        return;
    }
    for (i, child) in children.iter().enumerate() {
        let last = i + 1 == children.len();
        let (branch, next) = if last {
            ("└─ ", "   ")
        } else {
            ("├─ ", "│  ")
        };
        text.push_str(prefix);
        text.push_str(branch);
        text.push_str(&tree_line(child, now));
        text.push('\n');
        render_children(child, &format!("{prefix}{next}"), now, level + 1, text);
    }
}

/// One delegation: `agt_… (del_…)  depth 1  ● active  read, write  expires 2026-…`.
fn tree_line(d: &Value, now: &str) -> String {
    let s = |key: &str| d.get(key).and_then(Value::as_str).unwrap_or("?");
    let depth = d
        .get("depth")
        .map_or_else(|| "?".to_owned(), Value::to_string);
    let expires = s("expires_at");
    let status = match s("status") {
        "revoked" => "✗ REVOKED".to_owned(),
        // RFC 3339 times of one format compare as strings.
        "active" if expires != "?" && expires <= now => "○ expired".to_owned(),
        "active" => "● active".to_owned(),
        other => other.to_owned(),
    };
    let line = format!(
        "{} ({})  depth {depth}  {status}  {}  expires {expires}",
        s("delegate"),
        s("id"),
        actions(d),
    );
    output::sanitize(&line)
}

/// The union of the actions of a delegation's authorization_details, in first-seen order.
fn actions(d: &Value) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for detail in d
        .get("authorization_details")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for action in detail
            .get("actions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !seen.contains(&action) {
                seen.push(action);
            }
        }
    }
    if seen.is_empty() {
        "-".to_owned()
    } else {
        seen.join(", ")
    }
}

fn now_rfc3339() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    output::unix_ms_to_rfc3339(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, agent: &str, depth: u8, status: &str, children: Vec<Value>) -> Value {
        json!({
            "id": id, "delegate": agent, "depth": depth, "status": status,
            "expires_at": "2030-01-01T00:00:00.000Z",
            "authorization_details": [
                {"type": "mandate", "actions": ["read", "write"], "resources": ["a/*"]},
                {"type": "mandate", "actions": ["read"], "resources": ["b/*"]},
            ],
            "children": children,
        })
    }

    #[test]
    fn tree_has_connectors_and_markers() {
        let tree = node(
            "del_root",
            "agt_a",
            1,
            "active",
            vec![
                node(
                    "del_b",
                    "agt_b",
                    2,
                    "revoked",
                    vec![node("del_d", "agt_d", 3, "revoked", vec![])],
                ),
                node("del_c", "agt_c", 2, "active", vec![]),
            ],
        );
        let text = render_tree(&tree, "2026-01-01T00:00:00.000Z");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("agt_a (del_root)  depth 1  ● active  read, write"));
        assert!(lines[1].starts_with("├─ agt_b (del_b)  depth 2  ✗ REVOKED"));
        assert!(lines[2].starts_with("│  └─ agt_d (del_d)  depth 3  ✗ REVOKED"));
        assert!(lines[3].starts_with("└─ agt_c (del_c)  depth 2  ● active"));
        assert!(lines[3].ends_with("expires 2030-01-01T00:00:00.000Z"));
        let later = render_tree(&tree, "2031-01-01T00:00:00.000Z");
        assert!(later.lines().next().unwrap().contains("○ expired"));
    }

    #[test]
    fn tree_text_cannot_drive_the_terminal() {
        let tree = node("del_\u{1b}[2J", "agt_a", 1, "active", vec![]);
        assert!(!render_tree(&tree, "").contains('\u{1b}'));
    }

    #[test]
    fn saved_document_is_not_printed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mandate.jwt");
        let mut created = Map::new();
        created.insert("delegation".into(), json!("eyJ.doc.sig"));
        let held = deliver_document(&mut created, Some(&path), &Output::new(true)).unwrap();
        assert!(held.is_none());
        assert!(!created.contains_key("delegation"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "eyJ.doc.sig\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let mut created = Map::new();
        created.insert("delegation".into(), json!("eyJ.doc.sig"));
        let held = deliver_document(&mut created, None, &Output::new(false)).unwrap();
        assert_eq!(held.as_deref(), Some("eyJ.doc.sig"));
    }
}
