//! Network faults of a run: one proxy per broker node on each client path (publishers,
//! consumers), made in warren's embedded proxy engine (in process) or on a real
//! Toxiproxy, and the faults applied to them and taken back.

use crate::broker_uri::BrokerUri;
use crate::scenario::{FaultAction, Plan, StreamDirection, Toxic, TrafficPath};
use crate::toxiproxy::client::{RemoteToxiproxy, ToxiproxyError};
use crate::toxiproxy::control::ProxyControl;
use crate::toxiproxy::proxy::Registry;
use crate::toxiproxy::toxics::{Stream, ToxicKind};

/// The proxies of a run and the server that holds them.
pub struct NetworkFaults {
    client: ProxyControl,
    /// Per node: the proxy names of the publishers' and the consumers' path.
    proxies: Vec<(String, String)>,
    publisher_uris: Vec<BrokerUri>,
    consumer_uris: Vec<BrokerUri>,
}

/// Something a fault did, to be taken back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Disabled(String),
    Toxic { proxy: String, name: String },
}

impl NetworkFaults {
    /// Starts the embedded server (unless the plan names a Toxiproxy) and makes the proxies.
    ///
    /// # Errors
    /// [`ToxiproxyError`] when the Toxiproxy does not answer or refuses the proxies.
    pub async fn start(
        plan: &Plan,
        brokers: &[BrokerUri],
        tag: &str,
    ) -> Result<Self, ToxiproxyError> {
        let client = match &plan.proxy.toxiproxy {
            Some(address) => ProxyControl::Remote(RemoteToxiproxy::new(address)),
            None => ProxyControl::Embedded(Registry::new()),
        };
        client.check().await?;
        let mut wanted = Vec::new();
        let mut proxies = Vec::new();
        for (node, broker) in brokers.iter().enumerate() {
            let upstream = plan
                .proxy
                .upstreams
                .as_ref()
                .map_or_else(|| broker.address(), |u| u[node].clone());
            let mut names = Vec::new();
            for (offset, path) in ["publishers", "consumers"].iter().enumerate() {
                let name = format!("{tag}-{path}-{node}");
                let port = plan
                    .proxy
                    .first_port
                    .map_or(0, |first| first + (2 * node + offset) as u16);
                wanted.push((
                    name.clone(),
                    format!("{}:{port}", plan.proxy.listen_host),
                    upstream.clone(),
                ));
                names.push(name);
            }
            proxies.push((names[0].clone(), names[1].clone()));
        }
        let made = client.populate(&wanted).await?;
        let port_of = |name: &str| -> Result<u16, ToxiproxyError> {
            made.iter()
                .find(|p| p.name == name)
                .and_then(|p| p.listen.rsplit_once(':')?.1.parse().ok())
                .ok_or_else(|| ToxiproxyError {
                    address: client.address().into(),
                    what: "create proxies".into(),
                    reason: format!("no port for {name}"),
                })
        };
        let mut publisher_uris = Vec::new();
        let mut consumer_uris = Vec::new();
        for ((publishers, consumers), broker) in proxies.iter().zip(brokers) {
            let through = |port: u16| {
                broker
                    .with_address(&plan.proxy.client_host, port)
                    .map_err(|e| ToxiproxyError {
                        address: client.address().into(),
                        what: "point clients at the proxies".into(),
                        reason: e.to_string(),
                    })
            };
            publisher_uris.push(through(port_of(publishers)?)?);
            consumer_uris.push(through(port_of(consumers)?)?);
        }
        Ok(Self {
            client,
            proxies,
            publisher_uris,
            consumer_uris,
        })
    }

    /// URIs through the publishers' proxies, one per node.
    pub fn publisher_uris(&self) -> Vec<BrokerUri> {
        self.publisher_uris.clone()
    }

    /// URIs through the consumers' proxies, one per node.
    pub fn consumer_uris(&self) -> Vec<BrokerUri> {
        self.consumer_uris.clone()
    }

    /// The proxies on `path`, on every node.
    fn on_path(&self, path: TrafficPath) -> Vec<&str> {
        self.proxies
            .iter()
            .flat_map(|(publishers, consumers)| match path {
                TrafficPath::Publishers => vec![publishers.as_str()],
                TrafficPath::Consumers => vec![consumers.as_str()],
                TrafficPath::All => vec![publishers.as_str(), consumers.as_str()],
            })
            .collect()
    }

    /// Applies a network fault; on a partial failure, what was done is taken back.
    ///
    /// # Errors
    /// [`ToxiproxyError`] from the server.
    pub async fn apply(&self, action: &FaultAction) -> Result<Vec<Applied>, ToxiproxyError> {
        let mut applied = Vec::new();
        let result = self.apply_into(action, &mut applied).await;
        if let Err(error) = result {
            self.revert(&applied).await;
            return Err(error);
        }
        Ok(applied)
    }

    async fn apply_into(
        &self,
        action: &FaultAction,
        applied: &mut Vec<Applied>,
    ) -> Result<(), ToxiproxyError> {
        match action {
            FaultAction::Down { path } => {
                for proxy in self.on_path(*path) {
                    self.client.set_enabled(proxy, false).await?;
                    applied.push(Applied::Disabled(proxy.to_string()));
                }
            }
            FaultAction::Toxic {
                toxic,
                path,
                stream,
                toxicity,
            } => {
                let streams: &[Stream] = match stream {
                    StreamDirection::Upstream => &[Stream::Upstream],
                    StreamDirection::Downstream => &[Stream::Downstream],
                    StreamDirection::Both => &[Stream::Upstream, Stream::Downstream],
                };
                for proxy in self.on_path(*path) {
                    for stream in streams {
                        let name = self
                            .client
                            .add_toxic(proxy, engine_toxic(toxic), *stream, *toxicity)
                            .await?;
                        applied.push(Applied::Toxic {
                            proxy: proxy.to_string(),
                            name,
                        });
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Takes back what [`NetworkFaults::apply`] did; errors are logged, not returned.
    pub async fn revert(&self, applied: &[Applied]) {
        for step in applied.iter().rev() {
            let result = match step {
                Applied::Disabled(proxy) => self.client.set_enabled(proxy, true).await,
                Applied::Toxic { proxy, name } => self.client.remove_toxic(proxy, name).await,
            };
            if let Err(error) = result {
                tracing::warn!(%error, "could not take a network fault back");
            }
        }
    }

    /// Every proxy enabled and without toxics: the state after any exit path.
    pub async fn heal(&self) {
        for (publishers, consumers) in &self.proxies {
            for proxy in [publishers, consumers] {
                if let Err(error) = self.client.heal(proxy).await {
                    tracing::warn!(%error, "could not heal a proxy");
                }
            }
        }
    }

    /// The toxics left on this run's proxies (empty after a clean exit).
    ///
    /// # Errors
    /// [`ToxiproxyError`] when the server does not answer.
    pub async fn leftover_toxics(&self) -> Result<Vec<String>, ToxiproxyError> {
        let all = self.client.toxics().await?;
        Ok(self
            .proxies
            .iter()
            .flat_map(|(a, b)| [a, b])
            .flat_map(|p| all.get(p).cloned().unwrap_or_default())
            .collect())
    }

    /// Deletes the proxies (the embedded engine's connections close with them).
    pub async fn stop(self) {
        for (publishers, consumers) in &self.proxies {
            for proxy in [publishers, consumers] {
                let _ = self.client.delete(proxy).await;
            }
        }
        if let ProxyControl::Embedded(registry) = &self.client {
            registry.clear().await;
        }
    }

    /// Where the proxies live: "embedded" or the Toxiproxy's address.
    pub fn server(&self) -> &str {
        self.client.address()
    }
}

/// How much longer than its fault a blackhole's latency toxic holds bytes: it is removed
/// at the fault's end, long before.
const BLACKHOLE_MARGIN: std::time::Duration = std::time::Duration::from_secs(60);

/// A scenario toxic in the engine's (and Toxiproxy's) units.
pub fn engine_toxic(toxic: &Toxic) -> ToxicKind {
    let ms = |d: std::time::Duration| d.as_millis() as u64;
    match *toxic {
        Toxic::Latency { latency, jitter } => ToxicKind::Latency {
            latency_ms: ms(latency),
            jitter_ms: ms(jitter),
        },
        Toxic::Bandwidth { rate_kbps } => ToxicKind::Bandwidth { rate_kbps },
        Toxic::SlowClose { delay } => ToxicKind::SlowClose {
            delay_ms: ms(delay),
        },
        Toxic::Timeout { timeout } => ToxicKind::Timeout {
            timeout_ms: ms(timeout),
        },
        // A latency far longer than the fault holds every byte until the toxic is removed
        // at the fault's end, and removing a toxic never drops what it holds (Toxiproxy's
        // promise, and the embedded proxy's).
        Toxic::Blackhole { hold } => ToxicKind::Latency {
            latency_ms: ms(hold * 2 + BLACKHOLE_MARGIN),
            jitter_ms: 0,
        },
        Toxic::ResetPeer { timeout } => ToxicKind::ResetPeer {
            timeout_ms: ms(timeout),
        },
        Toxic::Slicer {
            average_size,
            size_variation,
            delay,
        } => ToxicKind::Slicer {
            average_size,
            size_variation,
            delay_us: delay.as_micros() as u64,
        },
        Toxic::LimitData { bytes } => ToxicKind::LimitData { bytes },
    }
}
