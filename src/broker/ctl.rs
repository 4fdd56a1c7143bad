//! `rabbitmqctl` against private nodes: clustering commands, status in JSON, and the
//! environment (cookie home, private epmd port) every call needs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::process::Command;

use super::BrokerError;
use super::account::Account;
use super::install::RabbitInstall;

/// How long a rabbitmqctl query may take before the broker counts as not answering: a
/// hang guard. Each call starts an Erlang VM; beside two busy loops on 2 cores, with two
/// RabbitMQ 4.0.5 clusters running, a listing took more than 30 s.
pub const CTL_ANSWER_WITHIN: Duration = Duration::from_secs(120);

/// How to reach the nodes of one managed broker with rabbitmqctl.
#[derive(Debug, Clone)]
pub struct Ctl {
    /// The install whose rabbitmqctl is run.
    pub install: RabbitInstall,
    /// The broker's folder, holding the shared `.erlang.cookie` (given as HOME).
    pub home: PathBuf,
    /// The broker's private epmd.
    pub epmd_port: u16,
    /// Account that owns the cookie.
    pub account: Account,
}

/// What `rabbitmqctl cluster_status --formatter json` reports (the parts warren uses).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ClusterStatus {
    /// Nodes currently running in the cluster.
    #[serde(default)]
    pub running_nodes: Vec<String>,
    /// Every member, running or not.
    #[serde(default)]
    pub disk_nodes: Vec<String>,
    /// The cluster's name.
    #[serde(default)]
    pub cluster_name: String,
    /// RabbitMQ and Erlang versions by node.
    #[serde(default)]
    pub versions: BTreeMap<String, NodeVersions>,
    /// Resource alarms in effect.
    #[serde(default)]
    pub alarms: Vec<serde_json::Value>,
}

/// Versions of one node.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NodeVersions {
    #[serde(default)]
    pub rabbitmq_version: String,
    #[serde(default)]
    pub erlang_version: String,
}

/// Environment that points the Erlang tools at a private broker and nothing else.
pub fn erlang_env(command: &mut Command, home: &std::path::Path, epmd_port: u16) {
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("RABBITMQ_") || key.starts_with("ERL_") || key == "NOTIFY_SOCKET" {
            command.env_remove(&*key);
        }
    }
    command
        .env("HOME", home)
        .env("ERL_EPMD_PORT", epmd_port.to_string())
        .env("LANG", "C.UTF-8")
        .env("LC_ALL", "C.UTF-8");
}

impl Ctl {
    /// Runs `rabbitmqctl -n node args...` and returns its standard output.
    ///
    /// # Errors
    /// [`BrokerError::Ctl`] with the command's output when it fails or takes longer than `timeout`.
    pub async fn run(
        &self,
        node: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<String, BrokerError> {
        let failed = |output: String| BrokerError::Ctl {
            node: node.to_string(),
            command: args.join(" "),
            output,
        };
        // In the broker's folder: the caller's may be one the node account cannot read
        // (root's home, a `mktemp -d`), and the Erlang code server then prints `eacces`
        // errors into stdout.
        let mut command = self
            .install
            .command(&self.install.ctl, &self.account, &self.home, &self.home)
            .map_err(|e| failed(e.to_string()))?;
        command
            .arg("-n")
            .arg(node)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        erlang_env(&mut command, &self.home, self.epmd_port);
        // A partitionable cluster's host names, resolved to the nodes themselves.
        let inetrc = self.home.join("inetrc");
        if inetrc.exists() {
            command.env("ERL_INETRC", inetrc);
        }
        let output = match tokio::time::timeout(timeout, command.output()).await {
            Err(_) => return Err(failed(format!("no answer within {} s", timeout.as_secs()))),
            Ok(Err(e)) => return Err(failed(e.to_string())),
            Ok(Ok(output)) => output,
        };
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            Ok(stdout)
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            Err(failed(format!("{}{}", stdout.trim(), stderr.trim())))
        }
    }

    /// The cluster as `node` sees it.
    ///
    /// # Errors
    /// [`BrokerError::Ctl`] when rabbitmqctl fails or prints something that is not its JSON.
    pub async fn cluster_status(&self, node: &str) -> Result<ClusterStatus, BrokerError> {
        let text = self
            .run(
                node,
                &["cluster_status", "--formatter", "json"],
                CTL_ANSWER_WITHIN,
            )
            .await?;
        json_document(&text).map_err(|e| BrokerError::Ctl {
            node: node.to_string(),
            command: "cluster_status --formatter json".into(),
            output: format!(
                "unreadable JSON ({e}): {}",
                text.chars().take(300).collect::<String>()
            ),
        })
    }
}

/// The first JSON object in a command's output that reads as a `T`, whatever the Erlang
/// VM printed around it (warnings, `=ERROR REPORT====` blocks from its code server): only
/// a line that starts with `{` can begin the document, and it must parse as a whole.
///
/// # Errors
/// The parse error of the first candidate, or a message saying there was none.
pub fn json_document<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    let mut first_error = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with('{') {
            let mut values = serde_json::Deserializer::from_str(&text[offset..]).into_iter::<T>();
            match values.next() {
                Some(Ok(value)) => return Ok(value),
                Some(Err(e)) => {
                    first_error.get_or_insert_with(|| e.to_string());
                }
                None => {}
            }
        }
        offset += line.len();
    }
    Err(first_error.unwrap_or_else(|| "no JSON object in the output".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_document_is_found_among_the_vm_noise() {
        let noisy = "{erl_prim_loader,file_error}\n\"File operation error: eacces.\"\n=ERROR REPORT==== 2-Dec-2026 ===\n{\"running_nodes\":[\"a@localhost\"],\"cluster_name\":\"c\"}\nwarning: trailing words\n";
        let status: ClusterStatus = json_document(noisy).unwrap();
        assert_eq!(status.running_nodes, ["a@localhost"]);
        assert_eq!(status.cluster_name, "c");
    }

    #[test]
    fn output_without_json_is_an_error_not_a_default() {
        assert!(json_document::<ClusterStatus>("Error: unable to perform an operation\n").is_err());
        assert!(json_document::<ClusterStatus>("{not json\n").is_err());
        let plain: ClusterStatus = json_document("{}").unwrap();
        assert!(plain.running_nodes.is_empty());
    }
}
