//! What one publisher knows about its own messages: how far it got, and which sequence
//! numbers the broker acknowledged, refused, returned, or left undecided.

use super::seqset::SeqSet;

/// The publish side of the ledger for one producer. Owned by its publisher task; merged
/// into the verdict at the end, so nothing on the hot path is shared.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct PublishLedger {
    /// Producer id (the publisher's index).
    pub producer: u32,
    /// Every sequence number below this one was published at least once.
    pub attempted: u32,
    /// Acknowledged by the broker (basic.ack), possibly after a republish.
    pub confirmed: SeqSet,
    /// Refused by the broker (basic.nack).
    pub nacked: SeqSet,
    /// Came back with basic.return (unroutable with mandatory).
    pub returned: SeqSet,
    /// Published, and the connection or channel failed (or the confirm timed out) before
    /// the broker's answer arrived: the broker may or may not have it.
    pub indeterminate: SeqSet,
    /// Messages published again with the same sequence number after a failure or nack.
    pub republished: u64,
    /// Unconfirmed messages given up under `on_failure = "drop"` or at the end of the run.
    pub abandoned: u64,
}

impl PublishLedger {
    /// An empty ledger for producer `producer`.
    pub fn new(producer: u32) -> Self {
        Self {
            producer,
            ..Self::default()
        }
    }

    /// Approximate memory held, in bytes.
    pub fn memory_bytes(&self) -> u64 {
        [
            &self.confirmed,
            &self.nacked,
            &self.returned,
            &self.indeterminate,
        ]
        .iter()
        .map(|s| s.memory_bytes())
        .sum()
    }
}
