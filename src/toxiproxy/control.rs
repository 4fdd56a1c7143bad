//! The one interface a run's network faults use to make proxies and toxics: the embedded
//! proxy engine, called in process (no HTTP, no thread), or a real Toxiproxy through its
//! HTTP API. Both give the same results and the same errors.

use std::collections::HashMap;
use std::sync::Arc;

use super::client::{ProxyAddress, RemoteToxiproxy, ToxiproxyError};
use super::proxy::{EngineError, Registry};
use super::toxics::{Stream, Toxic, ToxicKind};

/// Where a run's proxies live.
pub enum ProxyControl {
    /// warren's own proxy engine, in this process.
    Embedded(Arc<Registry>),
    /// A Toxiproxy server (`[proxy] toxiproxy = "host:port"`).
    Remote(RemoteToxiproxy),
}

impl ProxyControl {
    /// What the console and errors call it: "embedded" or the server's address.
    pub fn address(&self) -> &str {
        match self {
            ProxyControl::Embedded(_) => "embedded",
            ProxyControl::Remote(remote) => remote.address(),
        }
    }

    fn engine_error(&self, what: &str, error: &EngineError) -> ToxiproxyError {
        ToxiproxyError {
            address: self.address().to_string(),
            what: what.to_string(),
            reason: error.to_string(),
        }
    }

    /// Checks that the server answers (the embedded one always does).
    ///
    /// # Errors
    /// [`ToxiproxyError`] when a remote server does not answer.
    pub async fn check(&self) -> Result<(), ToxiproxyError> {
        match self {
            ProxyControl::Embedded(_) => Ok(()),
            ProxyControl::Remote(remote) => remote.version().await.map(drop),
        }
    }

    /// Creates (or replaces) the given proxies: (name, listen, upstream).
    ///
    /// # Errors
    /// [`ToxiproxyError`] when a proxy cannot be made.
    pub async fn populate(
        &self,
        wanted: &[(String, String, String)],
    ) -> Result<Vec<ProxyAddress>, ToxiproxyError> {
        match self {
            ProxyControl::Embedded(registry) => {
                let wanted: Vec<_> = wanted
                    .iter()
                    .map(|(name, listen, upstream)| {
                        (name.clone(), listen.clone(), upstream.clone(), true)
                    })
                    .collect();
                let made = registry
                    .populate(&wanted)
                    .await
                    .map_err(|e| self.engine_error("create proxies", &e))?;
                Ok(made
                    .into_iter()
                    .map(|p| ProxyAddress {
                        name: p.name,
                        listen: p.listen,
                    })
                    .collect())
            }
            ProxyControl::Remote(remote) => remote.populate(wanted).await,
        }
    }

    /// Enables or disables a proxy (disabled = down: connections closed, nothing accepted).
    ///
    /// # Errors
    /// [`ToxiproxyError`] for an unknown proxy or an unreachable server.
    pub async fn set_enabled(&self, proxy: &str, enabled: bool) -> Result<(), ToxiproxyError> {
        match self {
            ProxyControl::Embedded(registry) => registry
                .update(proxy, Some(enabled), None, None)
                .await
                .map(drop)
                .map_err(|e| self.engine_error("enable or disable a proxy", &e)),
            ProxyControl::Remote(remote) => remote.set_enabled(proxy, enabled).await,
        }
    }

    /// Adds a toxic named `<type>_<stream>` (Toxiproxy's default); returns its name.
    ///
    /// # Errors
    /// [`ToxiproxyError`] when it is refused (a toxic of that name already exists).
    pub async fn add_toxic(
        &self,
        proxy: &str,
        kind: ToxicKind,
        stream: Stream,
        toxicity: f64,
    ) -> Result<String, ToxiproxyError> {
        let name = format!("{}_{}", kind.type_name(), stream.as_str());
        match self {
            ProxyControl::Embedded(registry) => {
                let toxic = Toxic {
                    name: name.clone(),
                    kind,
                    stream,
                    toxicity,
                };
                registry
                    .add_toxic(proxy, toxic)
                    .await
                    .map_err(|e| self.engine_error("add a toxic", &e))?;
            }
            ProxyControl::Remote(remote) => {
                remote
                    .add_toxic(proxy, &name, &kind, stream, toxicity)
                    .await?;
            }
        }
        Ok(name)
    }

    /// Removes one toxic (one already gone is fine).
    ///
    /// # Errors
    /// [`ToxiproxyError`] for an unknown proxy or an unreachable server.
    pub async fn remove_toxic(&self, proxy: &str, toxic: &str) -> Result<(), ToxiproxyError> {
        match self {
            ProxyControl::Embedded(registry) => match registry.remove_toxic(proxy, toxic).await {
                Ok(()) | Err(EngineError::ToxicNotFound) => Ok(()),
                Err(e) => Err(self.engine_error("remove a toxic", &e)),
            },
            ProxyControl::Remote(remote) => remote.remove_toxic(proxy, toxic).await,
        }
    }

    /// Deletes a proxy (one already gone is fine).
    ///
    /// # Errors
    /// [`ToxiproxyError`] when a remote server does not answer.
    pub async fn delete(&self, proxy: &str) -> Result<(), ToxiproxyError> {
        match self {
            ProxyControl::Embedded(registry) => match registry.delete(proxy).await {
                Ok(()) | Err(EngineError::ProxyNotFound) => Ok(()),
                Err(e) => Err(self.engine_error("delete a proxy", &e)),
            },
            ProxyControl::Remote(remote) => remote.delete(proxy).await,
        }
    }

    /// Removes every toxic of `proxy` and enables it.
    ///
    /// # Errors
    /// [`ToxiproxyError`] for an unknown proxy or an unreachable server.
    pub async fn heal(&self, proxy: &str) -> Result<(), ToxiproxyError> {
        match self {
            ProxyControl::Embedded(registry) => {
                let toxics = registry
                    .toxics(proxy)
                    .await
                    .map_err(|e| self.engine_error("heal a proxy", &e))?;
                for toxic in toxics {
                    self.remove_toxic(proxy, &toxic.name).await?;
                }
                self.set_enabled(proxy, true).await
            }
            ProxyControl::Remote(remote) => remote.heal(proxy).await,
        }
    }

    /// The toxic names on each proxy.
    ///
    /// # Errors
    /// [`ToxiproxyError`] when a remote server does not answer.
    pub async fn toxics(&self) -> Result<HashMap<String, Vec<String>>, ToxiproxyError> {
        match self {
            ProxyControl::Embedded(registry) => Ok(registry
                .list()
                .await
                .into_iter()
                .map(|p| (p.name, p.toxics.into_iter().map(|t| t.name).collect()))
                .collect()),
            ProxyControl::Remote(remote) => remote.toxics().await,
        }
    }
}
