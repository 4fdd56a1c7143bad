//! The proxy engine: named TCP proxies, each between clients and one upstream, that can be
//! disabled (down) and carry toxics, with the operations and errors of Toxiproxy's API.
//! The embedded Toxiproxy server serves this registry over HTTP.

mod link;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::TcpListener;
use tokio::sync::{Mutex, watch};
use tokio_util::sync::CancellationToken;

pub use link::ToxicList;

use super::toxics::Toxic;

/// Why an operation was refused, with Toxiproxy's status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("proxy not found")]
    ProxyNotFound,
    #[error("toxic not found")]
    ToxicNotFound,
    #[error("proxy already exists")]
    ProxyExists,
    #[error("toxic already exists")]
    ToxicExists,
    #[error("{0}")]
    BadRequest(String),
    #[error("listen {listen}: {reason}")]
    Listen { listen: String, reason: String },
}

impl EngineError {
    /// The HTTP status Toxiproxy answers with.
    pub fn status(&self) -> u16 {
        match self {
            EngineError::ProxyNotFound | EngineError::ToxicNotFound => 404,
            EngineError::ProxyExists | EngineError::ToxicExists => 409,
            EngineError::BadRequest(_) => 400,
            EngineError::Listen { .. } => 500,
        }
    }
}

/// A proxy as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyInfo {
    pub name: String,
    /// The address it listens on (with the port it got, when 0 was asked).
    pub listen: String,
    pub upstream: String,
    pub enabled: bool,
    pub toxics: Vec<Toxic>,
}

impl ProxyInfo {
    /// Toxiproxy's JSON for a proxy.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "toxics": self.toxics.iter().map(Toxic::to_json).collect::<Vec<_>>(),
        })
    }
}

/// Every proxy, by name.
#[derive(Default)]
pub struct Registry {
    proxies: Mutex<BTreeMap<String, Arc<Proxy>>>,
    /// Seeds each connection's toxicity draws.
    connections: Arc<AtomicU64>,
}

struct Proxy {
    name: String,
    state: Mutex<ProxyState>,
    toxics: watch::Sender<ToxicList>,
}

struct ProxyState {
    listen: SocketAddr,
    upstream: String,
    enabled: bool,
    /// The accept loop and the token that closes it and every connection.
    running: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
}

impl Drop for ProxyState {
    /// A proxy dropped with its registry (say, on an error path) stops listening and closes
    /// its connections, as a deleted one does.
    fn drop(&mut self) {
        if let Some((token, task)) = self.running.take() {
            token.cancel();
            task.abort();
        }
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Creates a proxy; an enabled one listens at once.
    ///
    /// # Errors
    /// 409 when the name exists, 400 for a missing name or upstream, 500 when `listen` cannot be bound.
    pub async fn create(
        &self,
        name: &str,
        listen: &str,
        upstream: &str,
        enabled: bool,
    ) -> Result<ProxyInfo, EngineError> {
        let mut proxies = self.proxies.lock().await;
        if proxies.contains_key(name) {
            return Err(EngineError::ProxyExists);
        }
        let proxy = self.build(name, listen, upstream, enabled).await?;
        let info = proxy.info().await;
        proxies.insert(name.to_string(), proxy);
        Ok(info)
    }

    async fn build(
        &self,
        name: &str,
        listen: &str,
        upstream: &str,
        enabled: bool,
    ) -> Result<Arc<Proxy>, EngineError> {
        if name.is_empty() {
            return Err(EngineError::BadRequest(
                "missing required field: name".into(),
            ));
        }
        if upstream.is_empty() {
            return Err(EngineError::BadRequest(
                "missing required field: upstream".into(),
            ));
        }
        let listen = resolve(listen)?;
        let (toxics, _) = watch::channel(Arc::new(Vec::new()));
        let proxy = Arc::new(Proxy {
            name: name.to_string(),
            state: Mutex::new(ProxyState {
                listen,
                upstream: upstream.to_string(),
                enabled: false,
                running: None,
            }),
            toxics,
        });
        if enabled {
            proxy.start(&self.connections).await?;
        }
        Ok(proxy)
    }

    /// Creates or replaces the given proxies (Toxiproxy's populate): an existing proxy with
    /// another listen address or upstream is recreated, an identical one kept.
    ///
    /// # Errors
    /// The first proxy that cannot be made; those made before stay.
    pub async fn populate(
        &self,
        wanted: &[(String, String, String, bool)],
    ) -> Result<Vec<ProxyInfo>, EngineError> {
        let mut out = Vec::new();
        for (name, listen, upstream, enabled) in wanted {
            let existing = self.proxies.lock().await.get(name).cloned();
            if let Some(proxy) = existing {
                let same = {
                    let state = proxy.state.lock().await;
                    resolve(listen).is_ok_and(|l| l == state.listen || l.port() == 0)
                        && &state.upstream == upstream
                };
                if same {
                    proxy.set_enabled(*enabled, &self.connections).await?;
                    out.push(proxy.info().await);
                    continue;
                }
                self.delete(name).await?;
            }
            out.push(self.create(name, listen, upstream, *enabled).await?);
        }
        Ok(out)
    }

    /// One proxy.
    ///
    /// # Errors
    /// 404 for an unknown name.
    pub async fn get(&self, name: &str) -> Result<ProxyInfo, EngineError> {
        Ok(self.proxy(name).await?.info().await)
    }

    /// Every proxy, by name.
    pub async fn list(&self) -> Vec<ProxyInfo> {
        let proxies: Vec<Arc<Proxy>> = self.proxies.lock().await.values().cloned().collect();
        let mut out = Vec::with_capacity(proxies.len());
        for proxy in proxies {
            out.push(proxy.info().await);
        }
        out
    }

    /// Changes a proxy: enable or disable it (disabling closes every connection), move it.
    ///
    /// # Errors
    /// 404 for an unknown name, 500 when the new listen address cannot be bound.
    pub async fn update(
        &self,
        name: &str,
        enabled: Option<bool>,
        listen: Option<&str>,
        upstream: Option<&str>,
    ) -> Result<ProxyInfo, EngineError> {
        let proxy = self.proxy(name).await?;
        if listen.is_some() || upstream.is_some() {
            let was_enabled = proxy.state.lock().await.enabled;
            proxy.set_enabled(false, &self.connections).await?;
            let mut state = proxy.state.lock().await;
            if let Some(listen) = listen {
                state.listen = resolve(listen)?;
            }
            if let Some(upstream) = upstream {
                state.upstream = upstream.to_string();
            }
            drop(state);
            proxy.set_enabled(was_enabled, &self.connections).await?;
        }
        if let Some(enabled) = enabled {
            proxy.set_enabled(enabled, &self.connections).await?;
        }
        Ok(proxy.info().await)
    }

    /// Deletes a proxy, closing its connections.
    ///
    /// # Errors
    /// 404 for an unknown name.
    pub async fn delete(&self, name: &str) -> Result<(), EngineError> {
        let proxy = self
            .proxies
            .lock()
            .await
            .remove(name)
            .ok_or(EngineError::ProxyNotFound)?;
        proxy.set_enabled(false, &self.connections).await
    }

    /// The toxics of a proxy.
    ///
    /// # Errors
    /// 404 for an unknown proxy.
    pub async fn toxics(&self, proxy: &str) -> Result<Vec<Toxic>, EngineError> {
        Ok(self.proxy(proxy).await?.toxics.borrow().as_ref().clone())
    }

    /// Adds a toxic; live connections feel it at once.
    ///
    /// # Errors
    /// 404 for an unknown proxy, 409 for a name already used, 400 for a toxicity outside 0..1.
    pub async fn add_toxic(&self, proxy: &str, toxic: Toxic) -> Result<Toxic, EngineError> {
        if !(0.0..=1.0).contains(&toxic.toxicity) {
            return Err(EngineError::BadRequest(
                "toxicity must be between 0 and 1".into(),
            ));
        }
        let proxy = self.proxy(proxy).await?;
        let mut refused = None;
        proxy.toxics.send_if_modified(|list| {
            if list.iter().any(|t| t.name == toxic.name) {
                refused = Some(EngineError::ToxicExists);
                return false;
            }
            let mut next = list.as_ref().clone();
            next.push(toxic.clone());
            *list = Arc::new(next);
            true
        });
        refused.map_or(Ok(toxic), Err)
    }

    /// Replaces a toxic's attributes and toxicity, keeping its name, type and stream.
    ///
    /// # Errors
    /// 404 for an unknown proxy or toxic.
    pub async fn update_toxic(
        &self,
        proxy: &str,
        name: &str,
        change: impl FnOnce(&mut Toxic),
    ) -> Result<Toxic, EngineError> {
        let proxy = self.proxy(proxy).await?;
        let mut updated = None;
        proxy.toxics.send_if_modified(|list| {
            let mut next = list.as_ref().clone();
            let Some(toxic) = next.iter_mut().find(|t| t.name == name) else {
                return false;
            };
            change(toxic);
            updated = Some(toxic.clone());
            *list = Arc::new(next);
            true
        });
        updated.ok_or(EngineError::ToxicNotFound)
    }

    /// Removes a toxic; data it was holding goes on.
    ///
    /// # Errors
    /// 404 for an unknown proxy or toxic.
    pub async fn remove_toxic(&self, proxy: &str, name: &str) -> Result<(), EngineError> {
        let proxy = self.proxy(proxy).await?;
        let removed = proxy.toxics.send_if_modified(|list| {
            if !list.iter().any(|t| t.name == name) {
                return false;
            }
            *list = Arc::new(list.iter().filter(|t| t.name != name).cloned().collect());
            true
        });
        if removed {
            Ok(())
        } else {
            Err(EngineError::ToxicNotFound)
        }
    }

    /// Every proxy enabled, every toxic removed (Toxiproxy's /reset).
    ///
    /// # Errors
    /// 500 when a proxy cannot listen again.
    pub async fn reset(&self) -> Result<(), EngineError> {
        let proxies: Vec<Arc<Proxy>> = self.proxies.lock().await.values().cloned().collect();
        for proxy in proxies {
            proxy.toxics.send_replace(Arc::new(Vec::new()));
            proxy.set_enabled(true, &self.connections).await?;
        }
        Ok(())
    }

    /// Deletes every proxy.
    pub async fn clear(&self) {
        let names: Vec<String> = self.proxies.lock().await.keys().cloned().collect();
        for name in names {
            let _ = self.delete(&name).await;
        }
    }

    async fn proxy(&self, name: &str) -> Result<Arc<Proxy>, EngineError> {
        self.proxies
            .lock()
            .await
            .get(name)
            .cloned()
            .ok_or(EngineError::ProxyNotFound)
    }
}

impl Proxy {
    async fn info(&self) -> ProxyInfo {
        let state = self.state.lock().await;
        ProxyInfo {
            name: self.name.clone(),
            listen: state.listen.to_string(),
            upstream: state.upstream.clone(),
            enabled: state.enabled,
            toxics: self.toxics.borrow().as_ref().clone(),
        }
    }

    async fn set_enabled(
        &self,
        enabled: bool,
        connections: &Arc<AtomicU64>,
    ) -> Result<(), EngineError> {
        if enabled {
            self.start(connections).await
        } else {
            self.stop().await
        }
    }

    /// Binds and accepts; the port asked for 0 is replaced by the one bound.
    async fn start(&self, connections: &Arc<AtomicU64>) -> Result<(), EngineError> {
        let mut state = self.state.lock().await;
        if state.enabled {
            return Ok(());
        }
        let listener = TcpListener::bind(state.listen)
            .await
            .map_err(|e| EngineError::Listen {
                listen: state.listen.to_string(),
                reason: e.to_string(),
            })?;
        state.listen = listener.local_addr().map_err(|e| EngineError::Listen {
            listen: state.listen.to_string(),
            reason: e.to_string(),
        })?;
        let token = CancellationToken::new();
        let task = tokio::spawn(accept(
            listener,
            state.upstream.clone(),
            self.toxics.subscribe(),
            token.clone(),
            connections.clone(),
        ));
        state.running = Some((token, task));
        state.enabled = true;
        Ok(())
    }

    /// Closes every connection and the listening socket; returns once the port is free.
    async fn stop(&self) -> Result<(), EngineError> {
        let running = {
            let mut state = self.state.lock().await;
            state.enabled = false;
            state.running.take()
        };
        if let Some((token, task)) = running {
            token.cancel();
            let _ = task.await;
        }
        Ok(())
    }
}

async fn accept(
    listener: TcpListener,
    upstream: String,
    toxics: watch::Receiver<ToxicList>,
    closing: CancellationToken,
    connections: Arc<AtomicU64>,
) {
    let mut links = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = closing.cancelled() => break,
            accepted = listener.accept() => accepted,
            Some(_) = links.join_next(), if !links.is_empty() => continue,
        };
        let Ok((client, _)) = accepted else { continue };
        let seed = crate::seeded::splitmix(connections.fetch_add(1, Ordering::Relaxed));
        links.spawn(link::serve(
            client,
            upstream.clone(),
            toxics.clone(),
            closing.clone(),
            seed,
        ));
    }
    drop(listener);
    while links.join_next().await.is_some() {}
}

fn resolve(listen: &str) -> Result<SocketAddr, EngineError> {
    use std::net::ToSocketAddrs;
    listen
        .to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .ok_or_else(|| EngineError::Listen {
            listen: listen.to_string(),
            reason: "not a host:port address".into(),
        })
}

#[cfg(test)]
mod tests;
