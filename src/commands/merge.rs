//! `warren merge`: the workers' folders of one run in, the run folder of the whole run out
//! (see [`crate::workers::merge`]); the exit code is the merged run's gates'.

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::cli::MergeArgs;
use crate::exit::Exit;
use crate::output::Console;
use crate::report::{RunContext, RunReport, console, files};
use crate::scenario::ReportFormat;
use crate::scenario::units::format_duration;
use crate::workers::folders;
use crate::workers::merge::{self, E2E_CLOCK_BOUND};

/// Merges the workers' run folders into `--out`.
///
/// # Errors
/// A worker folder missing, incomplete or of another run (exit 3), or the merged folder
/// could not be written.
pub async fn merge(args: &MergeArgs, cancel: &CancellationToken) -> anyhow::Result<Exit> {
    let console = Console { quiet: args.quiet };
    let wait = args.wait.unwrap_or_default();
    let folders = folders::collect(&args.workers, wait, cancel, |awaited| {
        let names: Vec<_> = awaited.iter().map(|p| p.display().to_string()).collect();
        console.line(format!(
            "waiting up to {} for the results of {}",
            format_duration(wait),
            names.join(", ")
        ));
    })
    .await;
    let Some(folders) = folders else {
        console.line("interrupted while waiting for the workers' results; nothing was merged");
        return Ok(Exit::Interrupted);
    };
    let workers = merge::gather(&folders).context("the workers' results cannot be merged")?;
    let plan = &workers.plan;
    let leader = &workers.results[0];
    console.line(format!(
        "run {} of scenario {}: {} worker(s)",
        leader.run_id,
        plan.name,
        workers.results.len()
    ));
    for r in &workers.results {
        console.line(format!(
            "  worker {}: {} publisher(s), clock offset {:+.3} ms (within {:.3} ms)",
            r.worker,
            r.ledgers.len(),
            r.clock_sync.offset_ns as f64 / 1e6,
            r.clock_sync.bound_ns as f64 / 1e6
        ));
    }
    if !merge::clocks_agree(&workers.results) {
        console.line(format!(
            "warning: a worker's clock is not known to be within {} ms of worker 0's: end-to-end latency across workers is not reported",
            E2E_CLOCK_BOUND.as_secs_f64() * 1e3
        ));
    }
    let outcome = workers.outcome();
    let report = RunReport::build(
        RunContext {
            plan,
            started_at: leader.started_at.clone(),
            nodes: leader.nodes.clone(),
            faults: leader.faults.clone(),
        },
        &outcome,
    );
    if plan.report.formats.contains(&ReportFormat::Console) {
        console.line(console::render(&report));
    }
    let measured = files::Measured {
        series: &outcome.series,
        latencies: &outcome.latencies,
        origin_unix_ns: outcome.clock.origin_unix_ns(),
    };
    let warnings = files::write(&args.out, &report, &plan.report.formats, Some(&measured))
        .with_context(|| format!("writing results to {}", args.out.display()))?;
    for warning in warnings {
        console.line(format!("warning: {warning}"));
    }
    let offsets: Vec<_> = workers
        .results
        .iter()
        .map(|r| {
            serde_json::json!({
                "worker": r.worker,
                "clock_offset_ns": r.clock_sync.offset_ns,
                "clock_bound_ns": r.clock_sync.bound_ns,
                "publishers": r.ledgers.iter().map(|l| l.producer).collect::<Vec<_>>(),
            })
        })
        .collect();
    std::fs::write(
        args.out.join("workers.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "run_id": leader.run_id,
            "workers": offsets,
            "e2e_clock_bound_ns": E2E_CLOCK_BOUND.as_nanos() as u64,
            "e2e_reported": merge::clocks_agree(&workers.results),
        }))? + "\n",
    )
    .with_context(|| format!("writing {}", args.out.join("workers.json").display()))?;
    console.line(format!("results: {}", args.out.display()));
    Ok(report.exit())
}
