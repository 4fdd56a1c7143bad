//! Gates: the scenario's thresholds checked against what the run measured. Any breach
//! fails the run (exit code 1). Deliveries that were never published, and corrupted
//! bodies, always fail it.

use serde::{Deserialize, Serialize};

use crate::ledger::Verdict;
use crate::scenario::Gates;

/// One gate, checked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GateResult {
    pub name: String,
    /// The threshold, as the scenario gives it.
    pub limit: String,
    /// What the run measured.
    pub actual: String,
    pub passed: bool,
}

/// What the gates are checked against.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub verdict: &'a Verdict,
    /// Distinct messages delivered per second, from the first due message to the last delivery.
    pub delivered_per_s: f64,
    /// p99 end-to-end latency from the intended send time, ms.
    pub p99_e2e_ms: Option<f64>,
    /// p99 publish→confirm latency, ms.
    pub p99_confirm_ms: Option<f64>,
    /// Longest recovery after a fault, if faults were injected and measured.
    pub max_recovery_s: Option<f64>,
    /// Applied faults that ended after publishing, whose recovery nothing could show.
    pub unobserved_faults: usize,
}

/// Checks every gate the scenario sets, plus the ones that always hold.
pub fn evaluate(gates: &Gates, facts: &Facts<'_>) -> Vec<GateResult> {
    let totals = &facts.verdict.totals;
    let mut results = Vec::new();
    let verified = facts.verdict.verified;
    let mut at_most = |name: &str, limit: Option<u64>, actual: u64| {
        if let Some(limit) = limit {
            results.push(if verified || name == "corrupted (always)" {
                GateResult {
                    name: name.into(),
                    limit: format!("<= {limit}"),
                    actual: actual.to_string(),
                    passed: actual <= limit,
                }
            } else {
                GateResult {
                    name: name.into(),
                    limit: format!("<= {limit}"),
                    actual: "not checked (--no-verify)".into(),
                    passed: true,
                }
            });
        }
    };
    at_most(
        "max_lost_confirmed",
        gates.max_lost_confirmed,
        totals.lost_confirmed,
    );
    at_most(
        "max_lost_unconfirmed",
        gates.max_lost_unconfirmed,
        totals.lost_unconfirmed,
    );
    at_most(
        "max_dead_lettered",
        gates.max_dead_lettered,
        totals.dead_lettered,
    );
    at_most("max_duplicates", gates.max_duplicates, totals.duplicated);
    at_most("max_reordered", gates.max_reordered, totals.reordered);
    at_most(
        "unexpected (always)",
        Some(0),
        totals.unexpected + facts.verdict.foreign,
    );
    at_most("corrupted (always)", Some(0), facts.verdict.corrupted);
    let latency = |name: &str, limit: Option<f64>, actual: Option<f64>| {
        limit.map(|limit| match actual {
            Some(actual) => GateResult {
                name: name.into(),
                limit: format!("<= {limit} ms"),
                actual: format!("{actual:.3} ms"),
                passed: actual <= limit,
            },
            None => GateResult {
                name: name.into(),
                limit: format!("<= {limit} ms"),
                actual: "nothing measured".into(),
                passed: false,
            },
        })
    };
    results.extend(latency("p99_e2e_ms", gates.p99_e2e_ms, facts.p99_e2e_ms));
    results.extend(latency(
        "p99_confirm_ms",
        gates.p99_confirm_ms,
        facts.p99_confirm_ms,
    ));
    if let Some(min) = gates.min_throughput {
        let actual = facts.delivered_per_s;
        results.push(GateResult {
            name: "min_throughput".into(),
            limit: format!(">= {min} msg/s"),
            actual: format!("{actual:.1} msg/s"),
            passed: actual >= min,
        });
    }
    if let Some(max) = gates.max_recovery {
        results.push(match facts.max_recovery_s {
            Some(actual) if actual.is_infinite() => GateResult {
                name: "max_recovery".into(),
                limit: format!("<= {:.1} s", max.as_secs_f64()),
                actual: "never recovered".into(),
                passed: false,
            },
            Some(actual) => GateResult {
                name: "max_recovery".into(),
                limit: format!("<= {:.1} s", max.as_secs_f64()),
                actual: format!("{actual:.1} s"),
                passed: actual <= max.as_secs_f64(),
            },
            None if facts.unobserved_faults > 0 => GateResult {
                name: "max_recovery".into(),
                limit: format!("<= {:.1} s", max.as_secs_f64()),
                actual: format!(
                    "not observed: {} fault(s) ended after publishing did; lengthen the run",
                    facts.unobserved_faults
                ),
                passed: false,
            },
            None => GateResult {
                name: "max_recovery".into(),
                limit: format!("<= {:.1} s", max.as_secs_f64()),
                actual: "no fault injected".into(),
                passed: true,
            },
        });
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{DeliveryShard, Evidence, PublishLedger, decide};

    fn verdict(lost: u32) -> Verdict {
        let mut ledger = PublishLedger::new(0);
        ledger.attempted = 10;
        for seq in 0..10 {
            ledger.confirmed.insert(seq);
        }
        let mut shard = DeliveryShard::new(1);
        for seq in lost..10 {
            shard.record(0, u64::from(seq), false, 0, false);
        }
        decide(
            Evidence {
                publishers: &[&ledger],
                consumers: &[&shard],
                ..Evidence::default()
            },
            true,
            false,
        )
    }

    fn gates() -> Gates {
        Gates {
            max_lost_confirmed: Some(0),
            max_lost_unconfirmed: None,
            max_dead_lettered: Some(0),
            max_duplicates: Some(0),
            max_reordered: None,
            p99_e2e_ms: Some(10.0),
            p99_confirm_ms: None,
            min_throughput: Some(100.0),
            max_recovery: None,
        }
    }

    #[test]
    fn a_clean_run_passes_every_gate() {
        let verdict = verdict(0);
        let facts = Facts {
            verdict: &verdict,
            delivered_per_s: 150.0,
            p99_e2e_ms: Some(2.0),
            p99_confirm_ms: None,
            max_recovery_s: None,
            unobserved_faults: 0,
        };
        let results = evaluate(&gates(), &facts);
        assert!(results.iter().all(|r| r.passed), "{results:?}");
        assert_eq!(results.len(), 7);
    }

    #[test]
    fn without_verification_the_ledger_gates_say_they_were_not_checked() {
        let counts = crate::ledger::Counts {
            attempted: 10,
            confirmed: 10,
            delivered: 10,
            ..Default::default()
        };
        let verdict = Verdict::unverified(counts, 10, true);
        let facts = Facts {
            verdict: &verdict,
            delivered_per_s: 150.0,
            p99_e2e_ms: Some(20.0),
            p99_confirm_ms: None,
            max_recovery_s: None,
            unobserved_faults: 0,
        };
        let results = evaluate(&gates(), &facts);
        let by_name = |name: &str| results.iter().find(|r| r.name == name).unwrap();
        assert_eq!(
            by_name("max_lost_confirmed").actual,
            "not checked (--no-verify)"
        );
        assert_eq!(by_name("corrupted (always)").actual, "0");
        assert!(
            !by_name("p99_e2e_ms").passed,
            "latency gates still judge: histograms stay on"
        );
    }

    #[test]
    fn a_lost_confirmed_message_fails_its_gate_with_the_numbers() {
        let verdict = verdict(2);
        let facts = Facts {
            verdict: &verdict,
            delivered_per_s: 50.0,
            p99_e2e_ms: None,
            p99_confirm_ms: None,
            max_recovery_s: None,
            unobserved_faults: 0,
        };
        let results = evaluate(&gates(), &facts);
        let failed: Vec<_> = results
            .iter()
            .filter(|r| !r.passed)
            .map(|r| (r.name.as_str(), r.actual.as_str()))
            .collect();
        assert_eq!(
            failed,
            vec![
                ("max_lost_confirmed", "2"),
                ("p99_e2e_ms", "nothing measured"),
                ("min_throughput", "50.0 msg/s")
            ]
        );
    }
}
