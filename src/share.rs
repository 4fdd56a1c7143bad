//! The part of one scenario a warren process runs when several run it together (worker
//! I of N, from `--worker` or an Indexed Job's environment), and the run's name they
//! share. The workload splits its clients by it; `workers` gathers and merges the
//! workers' results.
//!
//! The split, the same on every worker:
//! - publisher `p` (producer id `p`, unchanged, so ids are unique across workers) runs on
//!   worker `p mod N`; consumer `c` runs on worker `c mod N`; each consumer reads the
//!   queue the scenario gives it, so every queue's consumers are spread over the workers;
//! - worker 0 declares and deletes the topology, reads the dead-letter queue, runs the
//!   final read and injects node faults (restarts, kills, pauses); every worker applies the
//!   scenario's network faults to its own clients' proxies at the same agreed instants.

use std::fmt;

/// Environment variable with the worker's index (set by an Indexed Job on every pod).
pub const INDEX_VAR: &str = "JOB_COMPLETION_INDEX";
/// Environment variable with the number of workers.
pub const COUNT_VAR: &str = "WARREN_WORKERS";
/// Environment variable with the worker's attempt (0 for the first; a retried worker
/// takes the next number so its messages never collide with an earlier attempt's).
pub const ATTEMPT_VAR: &str = "WARREN_WORKER_ATTEMPT";
/// Environment variable with the run id the workers share.
pub const RUN_ID_VAR: &str = "WARREN_RUN_ID";

/// Most workers one run may have.
pub const MAX_WORKERS: u32 = 1_000;

/// The worker's attempt from [`ATTEMPT_VAR`]: 0 when it is unset or empty (as Kubernetes
/// gives a missing `batch.kubernetes.io/job-index-failure-count` annotation).
///
/// # Errors
/// A value that is not a number from 0 to 255.
pub fn attempt_from_vars(get: impl Fn(&str) -> Option<String>) -> Result<u8, String> {
    match get(ATTEMPT_VAR) {
        Some(text) if !text.trim().is_empty() => text
            .trim()
            .parse::<u8>()
            .map_err(|_| format!("${ATTEMPT_VAR} is {text:?}: expected 0 to 255")),
        _ => Ok(0),
    }
}

/// Which share of the scenario this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Share {
    /// 0-based index of this worker.
    pub index: u32,
    /// How many workers run the scenario.
    pub count: u32,
    /// 0 for a worker's first attempt, then 1, 2... when it is retried.
    pub attempt: u8,
}

impl Share {
    /// The whole scenario in one process.
    pub const ALONE: Share = Share {
        index: 0,
        count: 1,
        attempt: 0,
    };

    /// Parses `I/N` (for example `0/3`).
    ///
    /// # Errors
    /// A message saying what is expected.
    pub fn parse(text: &str) -> Result<Self, String> {
        let expected =
            || format!("expected I/N with 0 <= I < N <= {MAX_WORKERS} (like 0/3), not {text:?}");
        let (index, count) = text.split_once('/').ok_or_else(expected)?;
        let index: u32 = index.trim().parse().map_err(|_| expected())?;
        let count: u32 = count.trim().parse().map_err(|_| expected())?;
        Self::new(index, count, 0).ok_or_else(expected)
    }

    /// A share, when `index < count <= MAX_WORKERS`.
    pub fn new(index: u32, count: u32, attempt: u8) -> Option<Self> {
        (index < count && count <= MAX_WORKERS).then_some(Self {
            index,
            count,
            attempt,
        })
    }

    /// The share named by the environment ([`INDEX_VAR`], [`COUNT_VAR`], [`ATTEMPT_VAR`]),
    /// when both the index and the count are set.
    ///
    /// # Errors
    /// A variable that is set but not a number, or an index out of range.
    pub fn from_env() -> Result<Option<Self>, String> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// As [`Self::from_env`], reading variables through `get`.
    ///
    /// # Errors
    /// As [`Self::from_env`].
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        let number = |name: &str| -> Result<Option<u32>, String> {
            get(name)
                .filter(|v| !v.trim().is_empty())
                .map(|v| {
                    v.trim()
                        .parse::<u32>()
                        .map_err(|_| format!("${name} is {v:?}, not a whole number"))
                })
                .transpose()
        };
        let (Some(index), Some(count)) = (number(INDEX_VAR)?, number(COUNT_VAR)?) else {
            return Ok(None);
        };
        let attempt = attempt_from_vars(&get)?;
        Self::new(index, count, attempt).map(Some).ok_or_else(|| {
            format!("${INDEX_VAR}={index} and ${COUNT_VAR}={count}: expected 0 <= index < count <= {MAX_WORKERS}")
        })
    }

    /// True for the worker that declares the topology and injects node faults.
    pub fn is_leader(&self) -> bool {
        self.index == 0
    }

    /// True when there is more than one worker.
    pub fn is_shared(&self) -> bool {
        self.count > 1
    }

    /// The worker that runs client `client` (a publisher or a consumer index).
    pub fn owner_of(&self, client: u32) -> u32 {
        client % self.count
    }

    /// True when this worker runs client `client`.
    pub fn owns(&self, client: u32) -> bool {
        self.owner_of(client) == self.index
    }
}

impl fmt::Display for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)?;
        if self.attempt > 0 {
            write!(f, " (attempt {})", self.attempt)?;
        }
        Ok(())
    }
}

/// The id workers of one run share: text a user or Kubernetes gives (a Job's uid, a CI
/// build number), and the 64-bit id derived from it that message headers and queue names
/// carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunName {
    /// As given.
    pub text: String,
    /// 16 hex digits are taken as they are; anything else is hashed (FNV-1a).
    pub id: u64,
}

impl RunName {
    /// Checks and derives a run id: 1 to 100 characters of letters, digits, `.`, `_`, `-`.
    ///
    /// # Errors
    /// What is allowed.
    pub fn parse(text: &str) -> Result<Self, String> {
        let ok = !text.is_empty()
            && text.len() <= 100
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !ok {
            return Err(format!(
                "run id {text:?}: expected 1 to 100 letters, digits, '.', '_' or '-'"
            ));
        }
        let id = if text.len() == 16 && text.chars().all(|c| c.is_ascii_hexdigit()) {
            u64::from_str_radix(text, 16).expect("16 hex digits")
        } else {
            fnv1a(text.as_bytes())
        };
        Ok(Self {
            text: text.to_string(),
            id,
        })
    }
}

/// 64-bit FNV-1a.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_parse_and_check_their_range() {
        assert_eq!(Share::parse("1/3"), Ok(Share::new(1, 3, 0).unwrap()));
        for bad in ["3/3", "1", "a/3", "0/0", "-1/3", "0/1001"] {
            assert!(Share::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_environment_names_the_share_of_an_indexed_job() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(Share::from_vars(vars(&[])), Ok(None));
        assert_eq!(
            Share::from_vars(vars(&[
                (INDEX_VAR, "2"),
                (COUNT_VAR, "4"),
                (ATTEMPT_VAR, "1")
            ])),
            Ok(Share::new(2, 4, 1))
        );
        assert!(Share::from_vars(vars(&[(INDEX_VAR, "4"), (COUNT_VAR, "4")])).is_err());
        assert!(Share::from_vars(vars(&[(INDEX_VAR, "x"), (COUNT_VAR, "4")])).is_err());
    }

    #[test]
    fn every_client_has_exactly_one_owner() {
        let shares: Vec<Share> = (0..3).map(|i| Share::new(i, 3, 0).unwrap()).collect();
        for client in 0..100 {
            assert_eq!(shares.iter().filter(|s| s.owns(client)).count(), 1);
        }
        assert!(shares[0].is_leader() && !shares[1].is_leader());
    }

    #[test]
    fn run_ids_are_taken_or_hashed_and_checked() {
        assert_eq!(RunName::parse("00000000000000ff").unwrap().id, 255);
        let a = RunName::parse("build-41").unwrap();
        assert_ne!(a.id, RunName::parse("build-42").unwrap().id);
        assert_eq!(a.id, RunName::parse("build-41").unwrap().id);
        assert!(RunName::parse("a b").is_err());
        assert!(RunName::parse("").is_err());
    }
}
