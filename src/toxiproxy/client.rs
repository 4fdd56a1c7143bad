//! A small async client of a real Toxiproxy's HTTP API (Toxiproxy 2.x, for example the
//! one in docker-compose.yml): the calls a run makes, on reqwest, each bounded in time.
//! The embedded proxy is driven in process instead (see [`super::control`]).

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::toxics::{Stream, ToxicKind};

/// How long one call to the Toxiproxy may take.
const CALL_WITHIN: Duration = Duration::from_secs(10);

/// A Toxiproxy call that failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("Toxiproxy at {address}: {what}: {reason}")]
pub struct ToxiproxyError {
    pub address: String,
    pub what: String,
    pub reason: String,
}

/// A proxy as Toxiproxy returned it.
#[derive(Debug, Clone)]
pub struct ProxyAddress {
    pub name: String,
    /// `host:port` it listens on.
    pub listen: String,
}

/// A Toxiproxy API at `host:port`.
#[derive(Debug, Clone)]
pub struct RemoteToxiproxy {
    address: String,
    http: reqwest::Client,
}

impl RemoteToxiproxy {
    /// A client for the API at `address` (`host:port`).
    pub fn new(address: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(CALL_WITHIN)
            .connect_timeout(CALL_WITHIN)
            .build()
            .unwrap_or_default();
        Self {
            address: address.to_string(),
            http,
        }
    }

    /// The API's address.
    pub fn address(&self) -> &str {
        &self.address
    }

    fn error(&self, what: &str, reason: impl std::fmt::Display) -> ToxiproxyError {
        ToxiproxyError {
            address: self.address.clone(),
            what: what.to_string(),
            reason: reason.to_string(),
        }
    }

    /// One call: its status and JSON body (Null when empty).
    async fn call(
        &self,
        what: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), ToxiproxyError> {
        let url = format!("http://{}{path}", self.address);
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| {
            let reason = if e.is_connect() {
                format!("nothing answers at {}", self.address)
            } else {
                e.to_string()
            };
            self.error(what, reason)
        })?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| self.error(what, e))?;
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok((status, value))
    }

    /// A call that must answer with one of `ok`: its body.
    async fn expect(
        &self,
        what: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        ok: &[u16],
    ) -> Result<Value, ToxiproxyError> {
        let (status, value) = self.call(what, method, path, body).await?;
        if ok.contains(&status) {
            Ok(value)
        } else {
            let message = value
                .get("error")
                .and_then(Value::as_str)
                .map_or_else(|| value.to_string(), str::to_string);
            Err(self.error(what, format!("status {status}: {message}")))
        }
    }

    /// The server's version, which also checks that it answers.
    ///
    /// # Errors
    /// [`ToxiproxyError`] when it does not answer.
    pub async fn version(&self) -> Result<String, ToxiproxyError> {
        let value = self
            .expect(
                "GET /version",
                reqwest::Method::GET,
                "/version",
                None,
                &[200],
            )
            .await?;
        // Toxiproxy 2.x answers {"version": ...}; older ones plain text.
        Ok(match &value {
            Value::Object(o) => o
                .get("version")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    /// Creates (or replaces) the given proxies: (name, listen, upstream).
    ///
    /// # Errors
    /// [`ToxiproxyError`] when the server refuses them.
    pub async fn populate(
        &self,
        proxies: &[(String, String, String)],
    ) -> Result<Vec<ProxyAddress>, ToxiproxyError> {
        let body: Vec<Value> = proxies
            .iter()
            .map(|(name, listen, upstream)| {
                json!({ "name": name, "listen": listen, "upstream": upstream, "enabled": true })
            })
            .collect();
        let value = self
            .expect(
                "POST /populate",
                reqwest::Method::POST,
                "/populate",
                Some(Value::Array(body)),
                &[200, 201],
            )
            .await?;
        let list = value
            .get("proxies")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok(list
            .iter()
            .map(|p| ProxyAddress {
                name: text(p, "name"),
                listen: text(p, "listen"),
            })
            .collect())
    }

    /// Enables or disables a proxy (disabled = down: connections closed, nothing accepted).
    ///
    /// # Errors
    /// [`ToxiproxyError`] for an unknown proxy or an unreachable server.
    pub async fn set_enabled(&self, proxy: &str, enabled: bool) -> Result<(), ToxiproxyError> {
        let what = if enabled {
            "enable a proxy"
        } else {
            "disable a proxy"
        };
        self.expect(
            what,
            reqwest::Method::POST,
            &format!("/proxies/{proxy}"),
            Some(json!({ "enabled": enabled })),
            &[200],
        )
        .await
        .map(drop)
    }

    /// Adds a toxic named `name`.
    ///
    /// # Errors
    /// [`ToxiproxyError`] when the server refuses it (a toxic of that name already exists).
    pub async fn add_toxic(
        &self,
        proxy: &str,
        name: &str,
        kind: &ToxicKind,
        stream: Stream,
        toxicity: f64,
    ) -> Result<(), ToxiproxyError> {
        let body = json!({
            "name": name,
            "type": kind.type_name(),
            "stream": stream.as_str(),
            "toxicity": toxicity,
            "attributes": kind.attributes(),
        });
        self.expect(
            "add a toxic",
            reqwest::Method::POST,
            &format!("/proxies/{proxy}/toxics"),
            Some(body),
            &[200, 201],
        )
        .await
        .map(drop)
    }

    /// Removes one toxic (one already gone is fine).
    ///
    /// # Errors
    /// [`ToxiproxyError`] when the server refuses or does not answer.
    pub async fn remove_toxic(&self, proxy: &str, toxic: &str) -> Result<(), ToxiproxyError> {
        self.expect(
            "remove a toxic",
            reqwest::Method::DELETE,
            &format!("/proxies/{proxy}/toxics/{toxic}"),
            None,
            &[204, 404],
        )
        .await
        .map(drop)
    }

    /// Deletes a proxy (one already gone is fine).
    ///
    /// # Errors
    /// [`ToxiproxyError`] when the server does not answer.
    pub async fn delete(&self, proxy: &str) -> Result<(), ToxiproxyError> {
        self.expect(
            "delete a proxy",
            reqwest::Method::DELETE,
            &format!("/proxies/{proxy}"),
            None,
            &[204, 404],
        )
        .await
        .map(drop)
    }

    /// Removes every toxic of `proxy` and enables it.
    ///
    /// # Errors
    /// [`ToxiproxyError`] when the server does not answer.
    pub async fn heal(&self, proxy: &str) -> Result<(), ToxiproxyError> {
        let toxics = self
            .expect(
                "list a proxy's toxics",
                reqwest::Method::GET,
                &format!("/proxies/{proxy}/toxics"),
                None,
                &[200],
            )
            .await?;
        for toxic in toxics.as_array().into_iter().flatten() {
            self.remove_toxic(proxy, &text(toxic, "name")).await?;
        }
        self.set_enabled(proxy, true).await
    }

    /// The toxic names on each proxy.
    ///
    /// # Errors
    /// [`ToxiproxyError`] when the server does not answer.
    pub async fn toxics(&self) -> Result<HashMap<String, Vec<String>>, ToxiproxyError> {
        let all = self
            .expect(
                "list proxies",
                reqwest::Method::GET,
                "/proxies",
                None,
                &[200],
            )
            .await?;
        Ok(all
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, proxy)| {
                let names = proxy
                    .get("toxics")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|t| text(t, "name"))
                    .collect();
                (name.clone(), names)
            })
            .collect())
    }
}

fn text(value: &Value, field: &str) -> String {
    value
        .get(field)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}
