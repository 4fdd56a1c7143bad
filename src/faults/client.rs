//! Talking to a Toxiproxy server (warren's embedded one or a real one) through the
//! toxiproxy_rust crate. Its calls block, so each runs on the blocking pool, never on the
//! async threads. Two things the crate cannot do (create a reset_peer toxic, delete one
//! toxic by name) go through plain HTTP, as the crate does itself.

use std::collections::HashMap;
use std::time::Duration;

use toxiproxy_rust::client::Client;
use toxiproxy_rust::proxy::ProxyPack;

use super::toxics::{Stream, ToxicKind};

/// A Toxiproxy API at `host:port`. The crate's client owns a blocking HTTP client, which
/// must neither run nor be dropped on an async thread: it lives on a thread of its own,
/// and calls are sent to it.
#[derive(Debug, Clone)]
pub struct ToxiproxyClient {
    address: String,
    jobs: std::sync::mpsc::Sender<Job>,
}

/// A call to run on the client's thread.
type Job = Box<dyn FnOnce(&Client, &Http) + Send>;

/// The plain HTTP client for the calls the crate lacks.
type Http = reqwest::blocking::Client;

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

impl ToxiproxyClient {
    /// A client for the API at `address` (`host:port`).
    pub fn new(address: &str) -> Self {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let client_address = address.to_string();
        let spawned = std::thread::Builder::new()
            .name("toxiproxy-client".into())
            .spawn(move || {
                let client = Client::new(client_address.as_str());
                let http = http();
                for job in queue {
                    job(&client, &http);
                }
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start the Toxiproxy client thread");
        }
        Self {
            address: address.to_string(),
            jobs,
        }
    }

    /// The API's address.
    pub fn address(&self) -> &str {
        &self.address
    }

    async fn blocking<T: Send + 'static>(
        &self,
        what: &str,
        call: impl FnOnce(Client, &Http) -> Result<T, String> + Send + 'static,
    ) -> Result<T, ToxiproxyError> {
        let failed = |reason: String| ToxiproxyError {
            address: self.address.clone(),
            what: what.to_string(),
            reason,
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |client: &Client, http: &Http| {
            let client = client.clone();
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || call(client, http)));
            let _ = reply.send(result.unwrap_or_else(|_| {
                Err("the client panicked (is the Toxiproxy reachable?)".into())
            }));
        });
        if self.jobs.send(job).is_err() {
            return Err(failed("the client thread is gone".into()));
        }
        match answer.await {
            Ok(result) => result.map_err(failed),
            Err(_) => Err(failed("the client thread stopped".into())),
        }
    }

    /// The server's version, which also checks that it answers.
    ///
    /// # Errors
    /// [`ToxiproxyError`] when it does not answer.
    pub async fn version(&self) -> Result<String, ToxiproxyError> {
        let address = self.address.clone();
        self.blocking("GET /version", move |client, _| {
            if !client.is_running() {
                return Err(format!("nothing listens at {address}"));
            }
            client.version()
        })
        .await
    }

    /// Creates (or replaces) the given proxies: (name, listen, upstream).
    ///
    /// # Errors
    /// [`ToxiproxyError`] when the server refuses them.
    pub async fn populate(
        &self,
        proxies: Vec<(String, String, String)>,
    ) -> Result<Vec<ProxyAddress>, ToxiproxyError> {
        self.blocking("POST /populate", move |client, _| {
            let packs = proxies
                .into_iter()
                .map(|(name, listen, upstream)| ProxyPack::new(name, listen, upstream))
                .collect();
            let made = client.populate(packs)?;
            Ok(made
                .into_iter()
                .map(|p| ProxyAddress {
                    name: p.proxy_pack.name.clone(),
                    listen: p.proxy_pack.listen.clone(),
                })
                .collect())
        })
        .await
    }

    /// Enables or disables a proxy (disabled = down: connections closed, nothing accepted).
    ///
    /// # Errors
    /// [`ToxiproxyError`] for an unknown proxy or an unreachable server.
    pub async fn set_enabled(&self, proxy: &str, enabled: bool) -> Result<(), ToxiproxyError> {
        let proxy = proxy.to_string();
        self.blocking(
            if enabled {
                "enable a proxy"
            } else {
                "disable a proxy"
            },
            move |client, _| {
                let found = client.find_proxy(&proxy)?;
                if enabled {
                    found.enable()
                } else {
                    found.disable()
                }
            },
        )
        .await
    }

    /// Adds a toxic named `<type>_<stream>` (Toxiproxy's default); returns its name.
    ///
    /// # Errors
    /// [`ToxiproxyError`] when the server refuses it (a toxic of that name already exists).
    pub async fn add_toxic(
        &self,
        proxy: &str,
        kind: ToxicKind,
        stream: Stream,
        toxicity: f64,
    ) -> Result<String, ToxiproxyError> {
        let name = format!("{}_{}", kind.type_name(), stream.as_str());
        let (proxy, address, expected) = (proxy.to_string(), self.address.clone(), name.clone());
        self.blocking("add a toxic", move |client, http| {
            let found = client.find_proxy(&proxy)?;
            if found.toxics()?.iter().any(|t| t.name == expected) {
                return Err(format!("a toxic named {expected} is already on {proxy}"));
            }
            let s = stream.as_str().to_string();
            let t = toxicity as f32;
            let value = |v: u64| v.min(u64::from(u32::MAX)) as u32;
            match kind {
                ToxicKind::Latency {
                    latency_ms,
                    jitter_ms,
                } => {
                    let _ = found.with_latency(s, value(latency_ms), value(jitter_ms), t);
                }
                ToxicKind::Bandwidth { rate_kbps } => {
                    let _ = found.with_bandwidth(s, value(rate_kbps), t);
                }
                ToxicKind::SlowClose { delay_ms } => {
                    let _ = found.with_slow_close(s, value(delay_ms), t);
                }
                ToxicKind::Timeout { timeout_ms } => {
                    let _ = found.with_timeout(s, value(timeout_ms), t);
                }
                ToxicKind::Slicer {
                    average_size,
                    size_variation,
                    delay_us,
                } => {
                    let _ = found.with_slicer(
                        s,
                        value(average_size),
                        value(size_variation),
                        value(delay_us),
                        t,
                    );
                }
                ToxicKind::LimitData { bytes } => {
                    let _ = found.with_limit_data(s, value(bytes), t);
                }
                ToxicKind::ResetPeer { timeout_ms } => {
                    raw_reset_peer(http, &address, &proxy, stream, timeout_ms, toxicity)?
                }
            }
            if !found.toxics()?.iter().any(|t| t.name == expected) {
                return Err(format!("the toxic {expected} was not created on {proxy}"));
            }
            Ok(())
        })
        .await?;
        Ok(name)
    }

    /// Removes one toxic.
    ///
    /// # Errors
    /// [`ToxiproxyError`] when the server refuses (unknown toxic) or does not answer.
    pub async fn remove_toxic(&self, proxy: &str, toxic: &str) -> Result<(), ToxiproxyError> {
        let url = format!("http://{}/proxies/{proxy}/toxics/{toxic}", self.address);
        self.blocking("remove a toxic", move |_, http| {
            let response = http.delete(url).send().map_err(|e| e.to_string())?;
            match response.status().as_u16() {
                204 | 404 => Ok(()),
                status => Err(format!("status {status}")),
            }
        })
        .await
    }

    /// Deletes a proxy.
    ///
    /// # Errors
    /// [`ToxiproxyError`] when the server does not answer.
    pub async fn delete(&self, proxy: &str) -> Result<(), ToxiproxyError> {
        let proxy = proxy.to_string();
        self.blocking("delete a proxy", move |client, _| {
            match client.find_proxy(&proxy) {
                Ok(found) => found.delete(),
                Err(_) => Ok(()),
            }
        })
        .await
    }

    /// Removes every toxic of `proxy` and enables it.
    ///
    /// # Errors
    /// [`ToxiproxyError`] when the server does not answer.
    pub async fn heal(&self, proxy: &str) -> Result<(), ToxiproxyError> {
        let proxy = proxy.to_string();
        self.blocking("heal a proxy", move |client, _| {
            client.find_and_reset_proxy(&proxy).map(drop)
        })
        .await
    }

    /// The toxic names on each proxy.
    ///
    /// # Errors
    /// [`ToxiproxyError`] when the server does not answer.
    pub async fn toxics(&self) -> Result<HashMap<String, Vec<String>>, ToxiproxyError> {
        self.blocking("list proxies", move |client, _| {
            let mut out = HashMap::new();
            for (name, proxy) in client.all()? {
                out.insert(name, proxy.toxics()?.into_iter().map(|t| t.name).collect());
            }
            Ok(out)
        })
        .await
    }
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client")
}

/// toxiproxy_rust has no reset_peer helper: the same POST it makes for the others.
fn raw_reset_peer(
    http: &Http,
    address: &str,
    proxy: &str,
    stream: Stream,
    timeout_ms: u64,
    toxicity: f64,
) -> Result<(), String> {
    let body = serde_json::json!({
        "name": format!("reset_peer_{}", stream.as_str()),
        "type": "reset_peer",
        "stream": stream.as_str(),
        "toxicity": toxicity,
        "attributes": { "timeout": timeout_ms },
    });
    let response = http
        .post(format!("http://{address}/proxies/{proxy}/toxics"))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .map_err(|e| e.to_string())?;
    match response.status().as_u16() {
        200 | 201 => Ok(()),
        status => Err(format!(
            "status {status}: {}",
            response.text().unwrap_or_default()
        )),
    }
}
