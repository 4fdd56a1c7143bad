//! Sequence bookkeeping and the verdict: every publish and delivery of a run, per producer,
//! in compact sets owned by the task that records them, merged exactly at the end.

pub mod dead_letters;
pub mod delivery;
pub mod publish;
pub mod queues;
pub mod seqset;
pub mod verdict;

pub use dead_letters::{DeadLetterShard, DeathReason};
pub use delivery::DeliveryShard;
pub use publish::PublishLedger;
pub use queues::{QueueEvidence, QueueRecords, decide_queues};
pub use seqset::SeqSet;
pub use verdict::{Counts, Evidence, ProducerVerdict, QueueVerdict, Verdict, decide};
