//! Lowering: the scenario file as written becomes a [`Plan`], with defaults applied and
//! every cross-field rule checked (cluster sizes, external mode, gates that can be met).

use std::path::Path;
use std::time::Duration;

use super::Overrides;
use super::checks::{nonzero, only_with, positive, whole};
use super::clients::{consumers, publishers};
use super::diagnostic::Checker;
use super::faults::{RunLength, chaos, faults};
use super::file::{
    BrokerSection, GatesSection, ProxySection, ReportSection, ScenarioFile, SweepSection,
};
use super::plan::*;
use super::short_strings::short_strings;
use super::topology::{clients_and_routes, stream_consumers, topology};
use crate::broker_uri::BrokerUri;

const DEFAULT_DURATION: Duration = Duration::from_secs(60);
/// The most client threads a run takes.
pub const MAX_THREADS: u32 = 256;
/// How long the final read of the queue may take unless the scenario says.
const DEFAULT_FINAL_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Turns a parsed file into a plan, recording every problem in `c`. The plan returned
/// is only meaningful when `c` stays clean.
pub(super) fn lower(
    file: ScenarioFile,
    path: &Path,
    overrides: Overrides,
    c: &mut Checker<'_>,
) -> Plan {
    if let Some(version) = file.version.filter(|v| *v != 1) {
        c.error(
            "version",
            format!(" = {version}: this warren reads scenario format version 1"),
        );
    }
    let name = scenario_name(c, file.name);
    let mut stop = stop_condition(c, file.duration.map(|d| d.0), file.messages, overrides);
    let after_faults = nonzero(c, "after_faults", file.after_faults);
    let seed = file.seed.map_or(1, |s| {
        u64::try_from(s).unwrap_or_else(|_| {
            c.error("seed", format!(" = {s}: expected a whole number >= 0"));
            1
        })
    });
    let drain_timeout = file.drain_timeout.map_or(Duration::from_secs(30), |d| d.0);
    let final_read_timeout = nonzero(c, "final_read_timeout", file.final_read_timeout)
        .unwrap_or(DEFAULT_FINAL_READ_TIMEOUT);
    let threads = match overrides.threads {
        Some(threads) => threads,
        None => whole(
            c,
            "threads",
            file.threads,
            1,
            1,
            u64::from(MAX_THREADS),
            "a number of client threads",
        ) as u32,
    };
    let broker = broker(c, file.broker, path);
    let topology = topology(c, file.topology);
    short_strings(c, &topology);
    // A kept queue is left as the run left it unless the scenario asks for the read.
    let final_read = file
        .final_read
        .unwrap_or(!topology.keep)
        .then_some(final_read_timeout);
    let publishers = publishers(c, file.publishers);
    let consumers = consumers(c, file.consumers);
    stream_consumers(c, &topology, &consumers);
    clients_and_routes(c, &topology, &publishers, &consumers);
    let length = RunLength {
        duration: stop.duration,
        from_cli: overrides.duration.is_some(),
    };
    let faults = faults(c, file.faults, &broker, length);
    let chaos = file
        .chaos
        .and_then(|section| chaos(c, section, &broker, length));
    stop.after_faults = outlasting(c, after_faults, &stop, faults.is_empty() && chaos.is_none());
    let gates = gates(c, file.gates, &publishers, &topology);
    let sweep = file.sweep.and_then(|section| sweep(c, section));
    let report = report(c, file.report);
    let proxy = proxy(c, file.proxy, &broker);
    super::warnings::dropping_toxics(c, &faults, chaos.as_ref(), &publishers, &consumers);
    Plan {
        source: path.to_path_buf(),
        name,
        description: file.description.unwrap_or_default(),
        seed,
        stop,
        drain_timeout,
        final_read,
        threads,
        broker,
        topology,
        publishers,
        consumers,
        faults,
        chaos,
        gates,
        sweep,
        report,
        proxy,
        warnings: Vec::new(),
    }
}

fn proxy(c: &mut Checker<'_>, section: ProxySection, broker: &BrokerPlan) -> ProxyPlan {
    let host_port = |c: &mut Checker<'_>, path: &str, text: &str| {
        if text
            .rsplit_once(':')
            .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
        {
            c.error(
                path,
                format!(" = {text:?}: expected host:port, like \"127.0.0.1:8474\""),
            );
        }
    };
    if let Some(address) = &section.toxiproxy {
        host_port(c, "proxy.toxiproxy", address);
    }
    if let Some(upstreams) = &section.upstreams {
        for (i, upstream) in upstreams.iter().enumerate() {
            host_port(c, &format!("proxy.upstreams[{i}]"), upstream);
        }
        if upstreams.len() != broker.node_count() {
            c.error(
                "proxy.upstreams",
                format!(
                    "lists {} address(es); expected one per broker node ({})",
                    upstreams.len(),
                    broker.node_count()
                ),
            );
        }
    }
    let first_port = section.first_port.and_then(|port| {
        let needed = 2 * broker.node_count().max(1) as i64;
        if (1024..=65536 - needed).contains(&port) {
            Some(port as u16)
        } else {
            c.error("proxy.first_port", format!(" = {port}: expected a TCP port from 1024 to {} (two proxies per broker node take consecutive ports)", 65536 - needed));
            None
        }
    });
    for (field, value) in [
        ("proxy.listen_host", &section.listen_host),
        ("proxy.client_host", &section.client_host),
    ] {
        if let Some(host) = value.as_deref().filter(|h| !crate::broker_uri::is_host(h)) {
            c.error(
                field,
                format!(
                    " = {host:?}: expected an address like \"127.0.0.1\" or \"::1\", or a host name"
                ),
            );
        }
    }
    ProxyPlan {
        toxiproxy: section.toxiproxy,
        listen_host: section.listen_host.unwrap_or_else(|| "127.0.0.1".into()),
        first_port,
        client_host: section.client_host.unwrap_or_else(|| "127.0.0.1".into()),
        upstreams: section.upstreams,
    }
}

fn scenario_name(c: &mut Checker<'_>, name: Option<String>) -> String {
    let Some(name) = name else {
        c.missing(
            "name",
            "every scenario needs a name, like name = \"reliable-restart\"",
        );
        return String::new();
    };
    let allowed = |ch: char| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.');
    if name.is_empty() || name.len() > 100 || !name.chars().all(allowed) || name.starts_with('.') {
        c.error(
            "name",
            format!(" = {name:?}: expected 1 to 100 letters, digits, '-', '_' or '.' (it names the report folder)"),
        );
    }
    name
}

fn stop_condition(
    c: &mut Checker<'_>,
    duration: Option<Duration>,
    messages: Option<i64>,
    overrides: Overrides,
) -> StopCondition {
    if duration.is_some_and(|d| d.is_zero()) && overrides.duration.is_none() {
        c.error(
            "duration",
            " = \"0s\": expected a duration longer than zero",
        );
    }
    let messages_per_publisher = messages.map(|m| {
        whole(
            c,
            "messages",
            Some(m),
            1,
            1,
            u64::MAX,
            "messages per publisher",
        )
    });
    let duration = match (overrides.duration.or(duration), messages_per_publisher) {
        (None, None) => Some(DEFAULT_DURATION),
        (d, _) => d,
    };
    StopCondition {
        duration,
        messages_per_publisher,
        after_faults: None,
    }
}

/// `after_faults`: only for a run bounded by time, and with faults to outlast.
fn outlasting(
    c: &mut Checker<'_>,
    after_faults: Option<Duration>,
    stop: &StopCondition,
    no_faults: bool,
) -> Option<Duration> {
    let after = after_faults?;
    let given = format!(" = {}", super::checks::quoted(after));
    if stop.duration.is_none() {
        c.error(
            "after_faults",
            format!("{given}: the run has no duration (only messages); only a run bounded by time can go on past its faults"),
        );
        return None;
    }
    if no_faults {
        c.error(
            "after_faults",
            format!("{given}: the scenario has no faults to outlast; add [[faults]] or [chaos], or remove it"),
        );
        return None;
    }
    Some(after)
}

fn broker(c: &mut Checker<'_>, section: BrokerSection, path: &Path) -> BrokerPlan {
    let mode = section.mode.unwrap_or(BrokerMode::Managed);
    let managed = mode == BrokerMode::Managed;
    let external = "mode = \"external\"";
    only_with(c, "broker.uris", &section.uris, !managed, external);
    only_with(
        c,
        "broker.allow_destructive",
        &section.allow_destructive,
        !managed,
        external,
    );
    for (name, value) in [
        ("restart_command", &section.restart_command),
        ("kill_command", &section.kill_command),
        ("start_command", &section.start_command),
        ("pause_command", &section.pause_command),
        ("resume_command", &section.resume_command),
        ("rabbitmqctl_command", &section.rabbitmqctl_command),
    ] {
        only_with(
            c,
            &format!("broker.{name}"),
            value,
            !managed,
            "mode = \"external\" (warren runs its own nodes itself)",
        );
    }
    let managed_only = "mode = \"managed\"";
    only_with(c, "broker.port", &section.port, managed, managed_only);
    only_with(c, "broker.keep", &section.keep, managed, managed_only);
    only_with(c, "broker.root", &section.root, managed, managed_only);
    if managed {
        let nodes = match section.nodes {
            None => 1,
            Some(n @ (1 | 3 | 5)) => n as usize,
            Some(n) => {
                c.error("broker.nodes", format!(" = {n}: expected 1, or a cluster of 3 or 5 nodes (an even-sized cluster has no majority to spare)"));
                1
            }
        };
        let first_port = section.port.and_then(|p| {
            let last = p + nodes as i64 - 1;
            if (1024..=65535).contains(&p) && last <= 65535 {
                Some(p as u16)
            } else {
                c.error("broker.port", format!(" = {p}: expected a TCP port from 1024 to {} (the nodes take consecutive ports)", 65536 - nodes as i64));
                None
            }
        });
        let root = section.root.and_then(|text| {
            let path = std::path::PathBuf::from(&text);
            if !path.is_absolute() {
                c.error("broker.root", format!(" = {text:?}: expected an absolute path to a root file system holding RabbitMQ (made by scripts/rabbitmq.sh)"));
                None
            } else if !path.join("usr/lib/rabbitmq").is_dir() {
                c.error("broker.root", format!(" = {text:?}: no RabbitMQ there (no usr/lib/rabbitmq); make one with `sudo scripts/rabbitmq.sh 4.0`"));
                None
            } else {
                Some(path)
            }
        });
        let tls = super::tls::managed(c, section.tls, section.tls_client_auth);
        return BrokerPlan::Managed(ManagedBrokerPlan {
            nodes,
            first_port,
            keep: section.keep.unwrap_or(false),
            root,
            tls,
        });
    }
    let mut uris = Vec::new();
    match section.uris {
        None => c.missing("broker.uris", "mode = \"external\" needs the broker's AMQP URIs, like uris = [\"amqp://guest:guest@127.0.0.1:5672/%2f\"]"),
        Some(list) if list.is_empty() => c.error("broker.uris", " = []: expected at least one AMQP URI"),
        Some(list) => {
            for (i, text) in list.iter().enumerate() {
                match text.parse::<BrokerUri>() {
                    Ok(uri) => uris.push(uri),
                    Err(e) => c.error(&format!("broker.uris[{i}]"), format!(" = {:?}: {}", e.uri, e.reason)),
                }
            }
        }
    }
    if let Some(n) = section.nodes {
        if n != uris.len() as i64 && !uris.is_empty() {
            c.error(
                "broker.nodes",
                format!(
                    " = {n}: an external broker has one URI per node, and broker.uris lists {}",
                    uris.len()
                ),
            );
        }
    }
    let tls = super::tls::external(c, section.tls, section.tls_client_auth, &uris, path);
    BrokerPlan::External(ExternalBrokerPlan {
        tls,
        uris,
        allow_destructive: section.allow_destructive.unwrap_or(false),
        commands: NodeCommands {
            restart: section.restart_command,
            kill: section.kill_command,
            start: section.start_command,
            pause: section.pause_command,
            resume: section.resume_command,
            rabbitmqctl: section.rabbitmqctl_command,
        },
    })
}

fn gates(
    c: &mut Checker<'_>,
    section: GatesSection,
    publishers: &PublisherPlan,
    topology: &TopologyPlan,
) -> Gates {
    let limit = |c: &mut Checker<'_>, name: &str, value: Option<i64>| {
        value.map(|v| {
            whole(
                c,
                &format!("gates.{name}"),
                Some(v),
                0,
                0,
                u64::MAX,
                "a message count",
            )
        })
    };
    let max_lost_confirmed = limit(c, "max_lost_confirmed", section.max_lost_confirmed).or(Some(0));
    let max_lost_unconfirmed = limit(c, "max_lost_unconfirmed", section.max_lost_unconfirmed);
    // Checked by default wherever warren reads the dead letters.
    let max_dead_lettered = limit(c, "max_dead_lettered", section.max_dead_lettered)
        .or(topology.dead_letter.then_some(0));
    if section.max_dead_lettered.is_some() && !topology.dead_letter {
        c.error("gates.max_dead_lettered", "can never be checked: warren reads no dead-letter queue in this run (topology.dead_letter is off for a stream, a named queue, or a queue with its own x-dead-letter-exchange)");
    }
    let max_duplicates = limit(c, "max_duplicates", section.max_duplicates);
    let max_reordered = limit(c, "max_reordered", section.max_reordered);
    let p99_e2e_ms = positive(c, "gates.p99_e2e_ms", section.p99_e2e_ms, "milliseconds");
    let p99_confirm_ms = positive(
        c,
        "gates.p99_confirm_ms",
        section.p99_confirm_ms,
        "milliseconds",
    );
    if p99_confirm_ms.is_some() && !publishers.confirm {
        c.error(
            "gates.p99_confirm_ms",
            "can never be checked: publishers.confirm = false, so no confirm is measured",
        );
    }
    let min_throughput = positive(
        c,
        "gates.min_throughput",
        section.min_throughput,
        "messages per second",
    );
    if let (Some(min), Some(rate)) = (min_throughput, publishers.rate) {
        if min > rate {
            c.error("gates.min_throughput", format!(" = {min}: can never be met, publishers.rate = {rate} msg/s and consumers cannot receive more than is published"));
        }
    }
    let max_recovery = nonzero(c, "gates.max_recovery", section.max_recovery);
    Gates {
        max_lost_confirmed,
        max_lost_unconfirmed,
        max_dead_lettered,
        max_duplicates,
        max_reordered,
        p99_e2e_ms,
        p99_confirm_ms,
        min_throughput,
        max_recovery,
    }
}

fn sweep(c: &mut Checker<'_>, section: SweepSection) -> Option<SweepPlan> {
    let ranged = section.start.is_some() || section.step.is_some() || section.stop.is_some();
    let rates = match (section.rates, ranged) {
        (Some(_), true) => {
            c.error(
                "sweep.rates",
                "give either rates = [...] or start/step/stop, not both",
            );
            return None;
        }
        (Some(rates), false) => {
            if rates.is_empty() {
                c.error("sweep.rates", " = []: expected at least one target rate");
            }
            for (i, rate) in rates.iter().enumerate() {
                positive(
                    c,
                    &format!("sweep.rates[{i}]"),
                    Some(*rate),
                    "messages per second",
                );
            }
            rates
        }
        (None, true) => {
            let start = positive(c, "sweep.start", section.start, "messages per second");
            let step = positive(c, "sweep.step", section.step, "messages per second");
            let stop = positive(c, "sweep.stop", section.stop, "messages per second");
            match (start, step, stop) {
                (Some(start), Some(step), Some(stop)) if stop >= start => {
                    let steps = ((stop - start) / step).floor() as usize + 1;
                    if steps > 1000 {
                        c.error(
                            "sweep.step",
                            format!(" = {step}: gives {steps} steps; at most 1000"),
                        );
                        return None;
                    }
                    (0..steps).map(|i| start + step * i as f64).collect()
                }
                (Some(start), Some(_), Some(stop)) => {
                    c.error(
                        "sweep.stop",
                        format!(" = {stop}: expected a rate >= sweep.start = {start}"),
                    );
                    return None;
                }
                _ => {
                    for (name, value) in [("start", start), ("step", step), ("stop", stop)] {
                        if value.is_none() {
                            c.missing(
                                &format!("sweep.{name}"),
                                "a ranged sweep needs start, step and stop",
                            );
                        }
                    }
                    return None;
                }
            }
        }
        (None, false) => {
            c.error(
                "sweep",
                "expected target rates: rates = [1000, 5000] or start/step/stop",
            );
            return None;
        }
    };
    Some(SweepPlan {
        rates,
        step_duration: nonzero(c, "sweep.step_duration", section.step_duration)
            .unwrap_or(Duration::from_secs(30)),
        p99_e2e_ms: positive(c, "sweep.p99_e2e_ms", section.p99_e2e_ms, "milliseconds"),
    })
}

fn report(c: &mut Checker<'_>, section: ReportSection) -> ReportPlan {
    let formats = section.formats.unwrap_or_else(|| {
        vec![
            ReportFormat::Console,
            ReportFormat::Csv,
            ReportFormat::Json,
            ReportFormat::Hlog,
            ReportFormat::Html,
            ReportFormat::Junit,
        ]
    });
    for (i, format) in formats.iter().enumerate() {
        if formats[..i].contains(format) {
            c.error(&format!("report.formats[{i}]"), "listed twice");
        }
    }
    let dir = section.dir.unwrap_or_else(|| "reports".to_string());
    if dir.is_empty() {
        c.error(
            "report.dir",
            " = \"\": expected a folder path, like \"reports\"",
        );
    }
    let metrics_listen = section.metrics_listen.and_then(|text| {
        crate::listen::parse_listen(&text)
            .map_err(|expected| c.error("report.metrics_listen", format!(" = {expected}")))
            .ok()
    });
    ReportPlan {
        dir: dir.into(),
        formats,
        metrics_listen,
    }
}
