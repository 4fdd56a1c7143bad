//! Toxics, as Toxiproxy defines them: what each does to one direction of a connection, its
//! attributes, and the JSON shape Toxiproxy's API uses for it. One file per toxic for the
//! arithmetic; the proxy's link applies them.

pub mod bandwidth;
pub mod latency;
pub mod limit_data;
pub mod slicer;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::seeded::SplitMix;

/// Which direction of a connection a toxic acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Client to server.
    Upstream,
    /// Server to client (Toxiproxy's default).
    Downstream,
}

impl Stream {
    /// Toxiproxy's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Upstream => "upstream",
            Stream::Downstream => "downstream",
        }
    }
}

/// The toxic types Toxiproxy 2.x has, with their attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToxicKind {
    /// Delay each chunk by `latency` ± `jitter` milliseconds.
    Latency { latency_ms: u64, jitter_ms: u64 },
    /// At most `rate` KB/s.
    Bandwidth { rate_kbps: u64 },
    /// Delay the close by `delay` milliseconds.
    SlowClose { delay_ms: u64 },
    /// Drop all data; close after `timeout` ms (0: never, until removed).
    Timeout { timeout_ms: u64 },
    /// Reset the connection (TCP RST) after `timeout` ms.
    ResetPeer { timeout_ms: u64 },
    /// Cut data into pieces of `average_size` ± `size_variation` bytes, `delay` µs apart.
    Slicer {
        average_size: u64,
        size_variation: u64,
        delay_us: u64,
    },
    /// Close the connection after `bytes` bytes.
    LimitData { bytes: u64 },
}

/// Why a toxic description was refused (HTTP 400 in the API).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToxicError {
    #[error("unknown toxic type: {0}")]
    UnknownType(String),
    #[error("invalid toxic attribute {attribute}: {reason}")]
    BadAttribute { attribute: String, reason: String },
}

impl ToxicKind {
    /// Toxiproxy's type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            ToxicKind::Latency { .. } => "latency",
            ToxicKind::Bandwidth { .. } => "bandwidth",
            ToxicKind::SlowClose { .. } => "slow_close",
            ToxicKind::Timeout { .. } => "timeout",
            ToxicKind::ResetPeer { .. } => "reset_peer",
            ToxicKind::Slicer { .. } => "slicer",
            ToxicKind::LimitData { .. } => "limit_data",
        }
    }

    /// Builds a toxic from Toxiproxy's type name and attributes (missing ones are 0).
    ///
    /// # Errors
    /// [`ToxicError`] for an unknown type or an attribute that is not a whole number >= 0.
    pub fn from_parts(
        type_name: &str,
        attributes: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, ToxicError> {
        let get = |name: &str| -> Result<u64, ToxicError> {
            match attributes.get(name) {
                None | Some(serde_json::Value::Null) => Ok(0),
                Some(value) => value
                    .as_u64()
                    .or_else(|| value.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                    .ok_or_else(|| ToxicError::BadAttribute {
                        attribute: name.to_string(),
                        reason: format!("expected a number >= 0, got {value}"),
                    }),
            }
        };
        Ok(match type_name {
            "latency" => ToxicKind::Latency {
                latency_ms: get("latency")?,
                jitter_ms: get("jitter")?,
            },
            "bandwidth" => ToxicKind::Bandwidth {
                rate_kbps: get("rate")?,
            },
            "slow_close" => ToxicKind::SlowClose {
                delay_ms: get("delay")?,
            },
            "timeout" => ToxicKind::Timeout {
                timeout_ms: get("timeout")?,
            },
            "reset_peer" => ToxicKind::ResetPeer {
                timeout_ms: get("timeout")?,
            },
            "slicer" => ToxicKind::Slicer {
                average_size: get("average_size")?,
                size_variation: get("size_variation")?,
                delay_us: get("delay")?,
            },
            "limit_data" => ToxicKind::LimitData {
                bytes: get("bytes")?,
            },
            other => return Err(ToxicError::UnknownType(other.to_string())),
        })
    }

    /// The attributes in Toxiproxy's JSON shape.
    pub fn attributes(&self) -> BTreeMap<&'static str, u64> {
        match *self {
            ToxicKind::Latency {
                latency_ms,
                jitter_ms,
            } => BTreeMap::from([("latency", latency_ms), ("jitter", jitter_ms)]),
            ToxicKind::Bandwidth { rate_kbps } => BTreeMap::from([("rate", rate_kbps)]),
            ToxicKind::SlowClose { delay_ms } => BTreeMap::from([("delay", delay_ms)]),
            ToxicKind::Timeout { timeout_ms } | ToxicKind::ResetPeer { timeout_ms } => {
                BTreeMap::from([("timeout", timeout_ms)])
            }
            ToxicKind::Slicer {
                average_size,
                size_variation,
                delay_us,
            } => BTreeMap::from([
                ("average_size", average_size),
                ("size_variation", size_variation),
                ("delay", delay_us),
            ]),
            ToxicKind::LimitData { bytes } => BTreeMap::from([("bytes", bytes)]),
        }
    }
}

/// A toxic on a proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct Toxic {
    /// Unique per proxy; Toxiproxy's default is `<type>_<stream>`.
    pub name: String,
    pub kind: ToxicKind,
    pub stream: Stream,
    /// Chance, 0 to 1, that a given connection is affected.
    pub toxicity: f64,
}

impl Toxic {
    /// Toxiproxy's JSON for this toxic.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "type": self.kind.type_name(),
            "stream": self.stream.as_str(),
            "toxicity": self.toxicity,
            "attributes": self.kind.attributes(),
        })
    }
}

/// A seeded generator for per-connection choices (toxicity draws, jitter, slice sizes):
/// splitmix64 from [`crate::seeded`], so one seed replays the same choices.
#[derive(Debug, Clone)]
pub struct Dice(SplitMix);

impl Dice {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(SplitMix::new(seed))
    }

    /// A uniform value in `0..1`.
    pub fn unit(&mut self) -> f64 {
        (self.0.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A uniform value in `-spread..=spread`.
    pub fn around(&mut self, spread: u64) -> i64 {
        if spread == 0 {
            return 0;
        }
        (self.0.next() % (2 * spread + 1)) as i64 - spread as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toxics_round_trip_through_toxiproxy_json() {
        let mut attributes = serde_json::Map::new();
        attributes.insert("average_size".into(), 64.into());
        attributes.insert("delay".into(), 10.into());
        let kind = ToxicKind::from_parts("slicer", &attributes).unwrap();
        assert_eq!(
            kind,
            ToxicKind::Slicer {
                average_size: 64,
                size_variation: 0,
                delay_us: 10
            }
        );
        let toxic = Toxic {
            name: "slicer_upstream".into(),
            kind,
            stream: Stream::Upstream,
            toxicity: 1.0,
        };
        let json = toxic.to_json();
        assert_eq!(json["attributes"]["average_size"], 64);
        assert_eq!(json["type"], "slicer");
        assert_eq!(
            ToxicKind::from_parts("explode", &serde_json::Map::new()),
            Err(ToxicError::UnknownType("explode".into()))
        );
    }

    #[test]
    fn dice_stay_in_range() {
        let mut dice = Dice::new(7);
        for _ in 0..10_000 {
            let u = dice.unit();
            assert!((0.0..1.0).contains(&u));
            assert!((-5..=5).contains(&dice.around(5)));
        }
    }
}
