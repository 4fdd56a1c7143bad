//! The workload and the verdict against a real broker: a clean run is exactly once; the
//! checker finds exactly what a sabotaged consumer dropped or doubled; crashes, dropped
//! connections and broker restarts give the losses and duplicates RabbitMQ's documented
//! guarantees predict.

use std::path::Path;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use warren::broker::ManagedCluster;
use warren::broker_uri::BrokerUri;
use warren::events::EventKind;
use warren::exit::Exit;
use warren::ledger::Counts;
use warren::report::{RunContext, RunReport};
use warren::scenario::{Overrides, Plan, parse};
use warren::toxiproxy::Registry;
use warren::toxiproxy::toxics::{Stream, Toxic, ToxicKind};
use warren::workload::DrainEnd;
use warren::workload::{self, ProgressLine, Sabotage, WorkloadOptions, WorkloadOutcome};

use crate::helpers::Scratch;

async fn node(scratch: &Scratch) -> ManagedCluster {
    crate::helpers::started_cluster(scratch, 1).await
}

fn plan(text: &str) -> Plan {
    parse(Path::new("test.toml"), text, Overrides::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs the workload in the background; the returned watch shows its live totals.
fn start(
    plan: &Plan,
    cluster: &ManagedCluster,
    sabotage: Sabotage,
) -> (
    tokio::task::JoinHandle<WorkloadOutcome>,
    watch::Receiver<ProgressLine>,
) {
    start_with(
        plan,
        cluster,
        WorkloadOptions {
            sabotage,
            ..WorkloadOptions::default()
        },
    )
}

fn start_with(
    plan: &Plan,
    cluster: &ManagedCluster,
    mut options: WorkloadOptions,
) -> (
    tokio::task::JoinHandle<WorkloadOutcome>,
    watch::Receiver<ProgressLine>,
) {
    let (tx, rx) = watch::channel(ProgressLine {
        elapsed: Duration::ZERO,
        phase: "starting",
        totals: Default::default(),
        last_second: None,
    });
    options.on_progress = Some(Box::new(move |line: &ProgressLine| {
        let _ = tx.send(*line);
    }));
    let plan = plan.clone();
    let uris = cluster.uris();
    let handle = tokio::spawn(async move {
        workload::run(&plan, &uris, options, &CancellationToken::new())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    });
    (handle, rx)
}

/// Waits until consumers have seen at least `deliveries` messages.
async fn until_delivered(progress: &mut watch::Receiver<ProgressLine>, deliveries: u64) {
    let waited = tokio::time::timeout(
        Duration::from_secs(60),
        progress.wait_for(|line| line.totals.fresh >= deliveries),
    )
    .await;
    assert!(
        waited.is_ok_and(|r| r.is_ok()),
        "fewer than {deliveries} deliveries within 60 s"
    );
}

/// Runs `text` on a fresh node, restarts the node gracefully once `after` messages were
/// delivered, and returns the plan and what the workload measured (the node is stopped).
async fn restarted_mid_run(scratch: &Scratch, text: &str, after: u64) -> (Plan, WorkloadOutcome) {
    let mut cluster = node(scratch).await;
    let plan = plan(text);
    let (handle, mut progress) = start(&plan, &cluster, Sabotage::default());
    until_delivered(&mut progress, after).await;
    cluster.restart(0, &CancellationToken::new()).await.unwrap();
    let outcome = handle.await.unwrap();
    cluster.shutdown().await;
    (plan, outcome)
}

/// Runs `text` to its end on a fresh node (stopped afterwards); returns what was measured.
async fn run_on_a_fresh_node(scratch: &Scratch, text: &str) -> WorkloadOutcome {
    let cluster = node(scratch).await;
    let (handle, _) = start(&plan(text), &cluster, Sabotage::default());
    let outcome = handle.await.unwrap();
    eprintln!("{}: {:?}", module_path!(), outcome.verdict.totals);
    cluster.shutdown().await;
    outcome
}

/// All `count` messages confirmed and delivered exactly once, in order where checked.
fn assert_exactly_once(t: &Counts, count: u64) {
    assert_eq!(
        (t.attempted, t.confirmed, t.delivered),
        (count, count, count),
        "{t:?}"
    );
    assert_eq!(
        (t.lost_confirmed, t.duplicated, t.reordered),
        (0, 0, 0),
        "{t:?}"
    );
}

/// A proxy named "path" to `broker`; returns the URI that goes through it.
async fn proxied(proxies: &Registry, broker: &BrokerUri) -> BrokerUri {
    let upstream = format!("127.0.0.1:{}", broker.port());
    let listen = proxies
        .create("path", "127.0.0.1:0", &upstream, true)
        .await
        .unwrap()
        .listen;
    format!("amqp://guest:guest@{listen}/%2f").parse().unwrap()
}

/// Turns a blackhole (Toxiproxy's timeout 0, both ways) on the "path" proxy on or off.
async fn blackhole(proxies: &Registry, on: bool) {
    for stream in [Stream::Upstream, Stream::Downstream] {
        let name = format!("blackhole_{}", stream.as_str());
        if on {
            let toxic = Toxic {
                name,
                kind: ToxicKind::Timeout { timeout_ms: 0 },
                stream,
                toxicity: 1.0,
            };
            proxies.add_toxic("path", toxic).await.unwrap();
        } else {
            proxies.remove_toxic("path", &name).await.unwrap();
        }
    }
}

fn report(plan: &Plan, outcome: WorkloadOutcome) -> RunReport {
    RunReport::build(
        RunContext {
            plan,
            started_at: String::new(),
            nodes: Vec::new(),
            faults: Vec::new(),
        },
        &outcome,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_run_delivers_every_message_exactly_once() {
    let scratch = Scratch::new("clean");
    let cluster = node(&scratch).await;
    let plan = plan(
        "name = \"clean\"\nmessages = 25_000\n[publishers]\ncount = 4\nsize = 100\n[consumers]\ncount = 2\nprefetch = 200\nmultiple_ack_every = 50\n[gates]\nmax_duplicates = 0\n",
    );
    let (handle, _) = start(&plan, &cluster, Sabotage::default());
    let outcome = handle.await.unwrap();
    let t = &outcome.verdict.totals;
    eprintln!("{}: {:?}", module_path!(), t);
    assert_eq!(
        (
            t.attempted,
            t.confirmed,
            t.delivered,
            outcome.verdict.deliveries
        ),
        (100_000, 100_000, 100_000, 100_000)
    );
    assert_eq!(
        (
            t.lost_confirmed,
            t.lost_unconfirmed,
            t.duplicated,
            t.unexpected
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(outcome.queue_left, Some(0), "the queue was deleted empty");
    assert!(
        outcome.ledger_bytes < 1_000_000,
        "{} bytes of ledger",
        outcome.ledger_bytes
    );
    let report = report(&plan, outcome);
    assert_eq!(report.exit(), Exit::Success, "{:?}", report.gates);
    assert_eq!(report.latency.e2e_intended.count, 100_000);
    assert_eq!(report.latency.confirm.count, 100_000);
    cluster.shutdown().await;
    scratch.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_reports_exactly_what_a_consumer_dropped_or_doubled() {
    let scratch = Scratch::new("self-test");
    let cluster = node(&scratch).await;
    let plan = plan(
        "name = \"self-test\"\nmessages = 5_000\ndrain_timeout = \"20s\"\n[publishers]\nsize = 100\n[consumers]\nprefetch = 100\n",
    );
    let sabotage = Sabotage {
        drop_every: Some(97),
        double_every: Some(89),
        ..Sabotage::default()
    };
    let (handle, _) = start(&plan, &cluster, sabotage);
    let outcome = handle.await.unwrap();
    let dropped: Vec<u32> = outcome
        .sabotaged_dropped
        .iter()
        .map(|(_, seq)| *seq as u32)
        .collect();
    let doubled: Vec<(u32, u32)> = outcome
        .sabotaged_doubled
        .iter()
        .map(|(_, seq)| (*seq as u32, 2))
        .collect();
    assert!(
        dropped.len() >= 50 && doubled.len() >= 50,
        "{} dropped, {} doubled",
        dropped.len(),
        doubled.len()
    );
    let sets = &outcome.verdict.sets[0];
    assert_eq!(
        sets.lost_confirmed.iter().collect::<Vec<_>>(),
        dropped,
        "exactly the dropped ones are lost"
    );
    let mut found_doubled = sets.duplicated.clone();
    found_doubled.sort_unstable();
    assert_eq!(
        found_doubled, doubled,
        "exactly the doubled ones are duplicated"
    );
    let t = &outcome.verdict.totals;
    eprintln!("{}: {:?}", module_path!(), t);
    assert_eq!(
        (t.lost_unconfirmed, t.reordered, t.duplicated_redelivered),
        (0, 0, 0)
    );
    let report = report(&plan, outcome);
    assert_eq!(report.exit(), Exit::GateFailed);
    cluster.shutdown().await;
    scratch.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_crashing_without_acks_causes_redeliveries_and_no_loss() {
    let scratch = Scratch::new("crash");
    let cluster = node(&scratch).await;
    let plan = plan(
        "name = \"crash\"\nduration = \"4s\"\n[publishers]\ncount = 2\nrate = 1000\nsize = 100\n[consumers]\ncount = 2\nprefetch = 50\nmultiple_ack_every = 10\ncrash_every = 300\n",
    );
    let (handle, _) = start(&plan, &cluster, Sabotage::default());
    let outcome = handle.await.unwrap();
    let t = &outcome.verdict.totals;
    eprintln!("{}: {:?}", module_path!(), t);
    assert!(
        outcome
            .events
            .iter()
            .any(|e| e.kind == EventKind::ConsumerCrash)
    );
    assert_eq!((t.lost_confirmed, t.lost_unconfirmed), (0, 0), "{t:?}");
    assert!(t.duplicated_redelivered > 0, "{t:?}");
    assert_eq!(t.duplicated_republished, 0, "{t:?}");
    assert_eq!(t.delivered, t.attempted);
    cluster.shutdown().await;
    scratch.assert_clean();
}

/// A processing delay under a millisecond is applied to every message, and the messages are
/// delivered exactly once. That it is not rounded up to tokio's millisecond tick is
/// `precise_timer`'s unit test (the timerfd is armed to the microsecond): a bound on the
/// run's time here would measure the machine's load, not the delay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sub_millisecond_processing_delay_is_applied_to_every_message() {
    let scratch = Scratch::new("processing-delay");
    let outcome = run_on_a_fresh_node(
        &scratch,
        "name = \"processing-delay\"\nmessages = 4000\n[publishers]\nsize = 100\n[consumers]\ncount = 1\nprefetch = 100\nmultiple_ack_every = 10\nprocessing_delay = \"100us\"\n",
    )
    .await;
    assert_exactly_once(&outcome.verdict.totals, 4000);
    eprintln!(
        "4,000 deliveries with 100 µs each: {:?}",
        outcome.delivering
    );
    // One consumer: the last delivery waited for the 3,999 delays before it.
    assert!(
        outcome.delivering >= Duration::from_micros(100) * 3999,
        "4,000 deliveries at 100 µs each took only {:?}",
        outcome.delivering
    );
    scratch.assert_clean();
}

/// A graceful close by the broker loses at most what its queue had handed the closing
/// channel, all at that one instant, and warren counts exactly that. RabbitMQ counts an
/// auto-ack delivery as delivered when its queue passes it to the channel process; one that
/// arrives after the channel began terminating dies with it, unwritten. Packet captures of
/// runs of this test (lapin and amqprs alike) showed 1 to 3 such sequence numbers that never
/// reached the socket, between the last delivery on the closed connection and the first on
/// the new one; every byte the broker did write was delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_ack_loses_only_what_the_broker_held_when_it_closed_the_consumer_connection() {
    let scratch = Scratch::new("auto-ack-close");
    let mut cluster = node(&scratch).await;
    // Bound by messages (10 s at 2,000 msg/s, 20 s to consume at 1 ms each): the close
    // normally comes while publishing goes on, so the broker has deliveries in flight,
    // and the consumer is still there to close while rabbitmqctl lists connections on a
    // loaded machine (with both cores busy, 8 s of consuming once ended first).
    let plan = plan(
        "name = \"auto-ack-close\"\nmessages = 20000\ndrain_timeout = \"300s\"\n[publishers]\nrate = 2000\nsize = 100\n[consumers]\nack = \"auto\"\nprocessing_delay = \"1ms\"\n",
    );
    let (handle, mut progress) = start(&plan, &cluster, Sabotage::default());
    until_delivered(&mut progress, 500).await;
    let closed = cluster
        .close_client_connections("auto-ack-close consumers", "warren test: drop the consumer")
        .await
        .unwrap();
    assert_eq!(closed, 1);
    let outcome = handle.await.unwrap();
    let t = &outcome.verdict.totals;
    eprintln!("{}: {:?}", module_path!(), t);
    assert!(
        outcome
            .events
            .iter()
            .any(|e| e.kind == EventKind::ConnectionLost && e.source.contains("consumer"))
    );
    assert_eq!(
        (t.confirmed, t.lost_unconfirmed, t.duplicated),
        (t.attempted, 0, 0),
        "{t:?}"
    );
    assert_eq!(
        t.delivered + t.lost_confirmed,
        t.confirmed,
        "every confirmed message is delivered or lost: {t:?}"
    );
    assert_eq!(
        outcome.queue_left,
        Some(0),
        "the broker handed every message out"
    );
    // What a channel can hold in the moment it terminates: 50 ms of this rate would be 100.
    assert!(t.lost_confirmed <= 100, "{t:?}");
    let lost = &outcome.verdict.sets[0].lost_confirmed;
    if let (Some(first), Some(last)) = (lost.min(), lost.max()) {
        assert_eq!(
            u64::from(last - first) + 1,
            lost.len(),
            "the losses are one run of sequence numbers, at the close: {lost:?}"
        );
    }
    cluster.shutdown().await;
    scratch.assert_clean();
}

/// A connection that dies silently (the network drops its bytes) loses every message the
/// broker pushed to an auto-ack consumer meanwhile, and the verdict counts exactly those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_ack_loses_what_was_in_flight_when_the_consumer_connection_dropped() {
    let scratch = Scratch::new("auto-ack-drop");
    let cluster = node(&scratch).await;
    let proxies = Registry::new();
    let through_proxy = proxied(&proxies, &cluster.uris()[0]).await;
    // Bound by messages (6 s at 2,000 msg/s): the run goes on past the silence, however
    // late on a loaded machine it begins.
    let plan = plan(
        "name = \"auto-ack-drop\"\nmessages = 12000\ndrain_timeout = \"60s\"\n[publishers]\nrate = 2000\nsize = 100\n[consumers]\nack = \"auto\"\nheartbeat = \"1s\"\n",
    );
    let options = WorkloadOptions {
        consumer_uris: Some(vec![through_proxy]),
        ..WorkloadOptions::default()
    };
    let (handle, mut progress) = start_with(&plan, &cluster, options);
    until_delivered(&mut progress, 2_000).await;
    // The fault: 4 s of silence, longer than two 1 s heartbeats, so both sides give up.
    blackhole(&proxies, true).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    blackhole(&proxies, false).await;
    let outcome = handle.await.unwrap();
    let t = &outcome.verdict.totals;
    eprintln!("{}: {:?}", module_path!(), t);
    assert!(
        t.lost_confirmed > 0,
        "messages pushed to an auto-ack consumer die with its connection: {t:?}"
    );
    assert_eq!(
        t.delivered + t.lost_confirmed,
        t.confirmed,
        "every confirmed message is delivered or lost: {t:?}"
    );
    assert_eq!((t.duplicated, t.lost_unconfirmed), (0, 0), "{t:?}");
    assert_eq!(
        outcome.queue_left,
        Some(0),
        "the broker handed every message out"
    );
    assert!(
        outcome
            .events
            .iter()
            .any(|e| e.kind == EventKind::ConnectionLost && e.source.contains("consumer"))
    );
    let report = report(&plan, outcome);
    assert_eq!(
        report.exit(),
        Exit::GateFailed,
        "max_lost_confirmed = 0 by default"
    );
    cluster.shutdown().await;
    scratch.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_messages_on_a_non_durable_queue_are_lost_in_a_broker_restart() {
    let scratch = Scratch::new("naive-restart");
    // The drain outlasts a slow restart (13 s once on a loaded machine): it sees the
    // queue gone with the node's memory, not a drain that timed out first.
    let text = "name = \"naive-restart\"\nduration = \"6s\"\ndrain_timeout = \"60s\"\n[topology]\nqueue = { durable = false }\n[publishers]\nconfirm = false\npersistent = false\nrate = 1000\nsize = 100\n[consumers]\nack = \"auto\"\nprocessing_delay = \"5ms\"\n[gates]\nmax_lost_unconfirmed = 0\n";
    let (plan, outcome) = restarted_mid_run(&scratch, text, 200).await;
    let t = outcome.verdict.totals.clone();
    eprintln!("{}: {:?}", module_path!(), t);
    assert!(t.lost_unconfirmed > 0, "{t:?}");
    assert_eq!(t.lost_confirmed, 0, "nothing is confirmed without confirms");
    assert_eq!(t.delivered + t.lost_unconfirmed, t.attempted, "{t:?}");
    // The coordinator's channel died in the restart too: opened again, it saw the queue
    // empty (no wait for the drain timeout) and deleted the queue.
    assert_eq!(
        outcome.drain.end,
        DrainEnd::QueueEmpty,
        "{:?}",
        outcome.drain
    );
    assert_eq!(outcome.queue_left, Some(0), "{:#?}", outcome.events);
    let report = report(&plan, outcome);
    assert_eq!(report.exit(), Exit::GateFailed);
    let gate = report
        .gates
        .iter()
        .find(|g| g.name == "max_lost_unconfirmed")
        .unwrap();
    assert!(!gate.passed && gate.actual == t.lost_unconfirmed.to_string());
    scratch.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reliable_recipe_loses_no_confirmed_message_in_a_broker_restart() {
    let scratch = Scratch::new("reliable-restart");
    // Bound by messages, not time: however long the node takes to come back (13 s on a
    // loaded machine once, longer than the run's 15 s), every message is published.
    let text = "name = \"reliable-restart\"\nmessages = 7500\n[publishers]\ncount = 2\nrate = 1000\nsize = 200\nmax_in_flight = 128\nheartbeat = \"2s\"\n[consumers]\ncount = 2\nprefetch = 100\nmultiple_ack_every = 10\nheartbeat = \"2s\"\n";
    let (plan, outcome) = restarted_mid_run(&scratch, text, 1_000).await;
    let t = outcome.verdict.totals.clone();
    eprintln!("{}: {:?}", module_path!(), t);
    assert_eq!(t.lost_confirmed, 0, "{t:?}");
    assert_eq!(
        t.lost_unconfirmed, 0,
        "unconfirmed messages were republished: {t:?}"
    );
    assert!(
        outcome
            .events
            .iter()
            .any(|e| e.kind == EventKind::Reconnected),
        "{:#?}",
        outcome.events
    );
    assert_eq!(
        (t.attempted, t.delivered),
        (15_000, 15_000),
        "{t:?}\n{:#?}",
        outcome.events
    );
    assert_eq!(outcome.drain.end, DrainEnd::Complete, "{:?}", outcome.drain);
    assert_eq!(
        outcome.queue_left,
        Some(0),
        "the queue is deleted after the restart too"
    );
    let report = report(&plan, outcome);
    assert_eq!(report.exit(), Exit::Success, "{:?}", report.gates);
    scratch.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_queue_with_uneven_bodies_delivers_exactly_once() {
    let scratch = Scratch::new("quorum");
    let outcome = run_on_a_fresh_node(
        &scratch,
        "name = \"quorum\"\nmessages = 3_000\nseed = 7\n[topology]\nqueue = { type = \"quorum\", arguments = { \"x-delivery-limit\" = 5 } }\n[publishers]\ncount = 2\nsize = { min = 60, max = \"2KiB\" }\n[consumers]\nmultiple_ack_every = 20\n",
    )
    .await;
    assert_exactly_once(&outcome.verdict.totals, 6_000);
    assert!(outcome.verdict.order_checked);
    assert_eq!(outcome.verdict.corrupted, 0);
    scratch.assert_clean();
}

/// A stream never redelivers: a consumer that closes its channel without acknowledging
/// resumes from the offset after the last message it read, so nothing is lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_consumer_resumes_from_its_offset_after_a_crash() {
    let scratch = Scratch::new("stream");
    let outcome = run_on_a_fresh_node(
        &scratch,
        "name = \"stream\"\nmessages = 2_000\n[topology]\nqueue = { type = \"stream\" }\n[publishers]\ncount = 2\nrate = 1000\nsize = 100\n[consumers]\nprefetch = 100\nmultiple_ack_every = 10\ncrash_every = 300\n",
    )
    .await;
    assert_exactly_once(&outcome.verdict.totals, 4_000);
    let crashes = outcome
        .events
        .iter()
        .filter(|e| e.kind == EventKind::ConsumerCrash)
        .map(|e| e.occurrences())
        .sum::<u64>();
    assert!(
        crashes >= 10,
        "the consumer crashed every 300 deliveries: {crashes}"
    );
    assert_eq!(outcome.drain.end, DrainEnd::Complete);
    assert!(outcome.queue_left.is_some(), "the stream is deleted");
    scratch.assert_clean();
}

/// A full queue that rejects publishes nacks them; a republishing publisher backs off
/// instead of sending the same messages again at once, and still loses none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nacked_messages_are_republished_with_a_backoff() {
    let scratch = Scratch::new("nack");
    let outcome = run_on_a_fresh_node(
        &scratch,
        "name = \"nack\"\nduration = \"3s\"\ndrain_timeout = \"30s\"\n[topology]\nqueue = { arguments = { \"x-max-length\" = 100, \"x-overflow\" = \"reject-publish\" } }\n[publishers]\nrate = 1000\nsize = 100\nmax_in_flight = 64\n[consumers]\nprefetch = 10\nprocessing_delay = \"2ms\"\n",
    )
    .await;
    let t = &outcome.verdict.totals;
    assert!(t.nacked > 0, "the full queue rejected publishes: {t:?}");
    assert_eq!((t.lost_confirmed, t.lost_unconfirmed), (0, 0), "{t:?}");
    assert_eq!(t.delivered, t.attempted, "{t:?}");
    // Without a backoff every nack is answered by an immediate republish, itself nacked:
    // tens of thousands of copies for 3,000 messages.
    assert!(
        t.republished < 3 * t.attempted,
        "republished {} copies of {} messages",
        t.republished,
        t.attempted
    );
    scratch.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unroutable_mandatory_messages_are_returned_not_lost() {
    let scratch = Scratch::new("returned");
    let cluster = node(&scratch).await;
    let plan = plan(
        "name = \"returned\"\nmessages = 500\n[topology]\nexchange = { routing_key = \"no-such-queue\" }\n",
    );
    let (handle, _) = start(&plan, &cluster, Sabotage::default());
    let outcome = handle.await.unwrap();
    let t = &outcome.verdict.totals;
    eprintln!("{}: {:?}", module_path!(), t);
    assert_eq!(
        (t.attempted, t.returned, t.confirmed, t.delivered),
        (500, 500, 500, 0),
        "{t:?}"
    );
    assert_eq!(
        (t.lost_confirmed, t.lost_unconfirmed),
        (0, 0),
        "acked + returned means never enqueued: {t:?}"
    );
    assert_eq!(report(&plan, outcome).exit(), Exit::Success);
    cluster.shutdown().await;
    scratch.assert_clean();
}

/// Without heartbeats only the confirm timeout notices a broker that went silent; the
/// unconfirmed messages are then republished and nothing confirmed is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirm_timeout_treats_silent_messages_as_indeterminate_and_republishes_them() {
    let scratch = Scratch::new("confirm-timeout");
    let cluster = node(&scratch).await;
    let proxies = Registry::new();
    let through_proxy = proxied(&proxies, &cluster.uris()[0]).await;
    // Bound by messages (8 s at 500 msg/s): the run goes on past the silence, however
    // late on a loaded machine it begins.
    let plan = plan(
        "name = \"confirm-timeout\"\nmessages = 4000\n[publishers]\nrate = 500\nsize = 100\nheartbeat = \"0s\"\nconfirm_timeout = \"1s\"\n",
    );
    let options = WorkloadOptions {
        publisher_uris: Some(vec![through_proxy]),
        ..WorkloadOptions::default()
    };
    let (handle, mut progress) = start_with(&plan, &cluster, options);
    until_delivered(&mut progress, 500).await;
    // The fault: the publishers' path goes silent for 3 s; nothing else notices.
    blackhole(&proxies, true).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    blackhole(&proxies, false).await;
    let outcome = handle.await.unwrap();
    let t = &outcome.verdict.totals;
    eprintln!("{}: {:?}", module_path!(), t);
    assert!(
        outcome
            .events
            .iter()
            .any(|e| e.kind == EventKind::ConfirmTimeout),
        "{:#?}",
        outcome.events
    );
    assert!(t.indeterminate > 0 && t.republished > 0, "{t:?}");
    assert_eq!((t.lost_confirmed, t.lost_unconfirmed), (0, 0), "{t:?}");
    cluster.shutdown().await;
    scratch.assert_clean();
}

/// A memory alarm blocks publishing connections (connection.blocked) until it clears; the
/// event log shows both, and publishing resumes with nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_blocked_and_unblocked_are_recorded() {
    let scratch = Scratch::new("blocked");
    let cluster = node(&scratch).await;
    let name = cluster.specs()[0].name.clone();
    // The alarm is raised before the run starts, so publishing cannot end before it
    // (with both cores busy, setting it once took longer than the 12 s of messages).
    let timeout = Duration::from_secs(30);
    cluster
        .ctl()
        .run(
            &name,
            &["set_vm_memory_high_watermark", "0.000001"],
            timeout,
        )
        .await
        .unwrap();
    let plan = plan("name = \"blocked\"\nmessages = 6000\n[publishers]\nrate = 500\nsize = 100\n");
    let (handle, progress) = start(&plan, &cluster, Sabotage::default());
    // The broker blocks a connection when it publishes under the alarm, and says so with
    // connection.blocked: the alarm is cleared once the broker lists one as blocked.
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        let listing = cluster
            .ctl()
            .run(
                &name,
                &[
                    "list_connections",
                    "client_properties",
                    "state",
                    "-q",
                    "--no-table-headers",
                ],
                timeout,
            )
            .await
            .unwrap();
        if listing
            .lines()
            .any(|l| l.contains("publishers") && l.trim_end().ends_with("blocked"))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no publishing connection was blocked: {listing}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let blocked_at = progress.borrow().totals.fresh;
    cluster
        .ctl()
        .run(&name, &["set_vm_memory_high_watermark", "0.4"], timeout)
        .await
        .unwrap();
    let outcome = handle.await.unwrap();
    let kinds: Vec<EventKind> = outcome.events.iter().map(|e| e.kind).collect();
    let at = |kind| kinds.iter().position(|k| *k == kind);
    let (blocked, unblocked, ended) = (
        at(EventKind::Blocked),
        at(EventKind::Unblocked),
        at(EventKind::PublishEnd),
    );
    assert!(
        blocked < unblocked && unblocked < ended && blocked.is_some(),
        "blocked, then unblocked, then publishing ended: {:#?}",
        outcome.events
    );
    let t = &outcome.verdict.totals;
    eprintln!("{}: {:?}", module_path!(), t);
    assert!(
        t.delivered >= blocked_at + 5000,
        "publishing resumed after the alarm: {t:?}"
    );
    assert_eq!(t.delivered, 6000, "{t:?}");
    assert_eq!((t.lost_confirmed, t.lost_unconfirmed), (0, 0), "{t:?}");
    cluster.shutdown().await;
    scratch.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_a_refusal_not_an_unreachable_broker() {
    let scratch = Scratch::new("refused");
    let cluster = node(&scratch).await;
    let uri = cluster.uris()[0].expose().to_string();
    assert!(uri.contains("guest:guest@"), "{uri}");
    let wrong: BrokerUri = uri.replace("guest:guest@", "guest:wrong@").parse().unwrap();
    let error = warren::amqp::connect(&wrong, None, "refused", Duration::from_secs(10))
        .await
        .err()
        .expect("a wrong password is refused");
    cluster.shutdown().await;
    // The broker explains a refused login only to clients that announce
    // authentication_failure_close; without it, this looks like a broker that hung up.
    assert!(
        matches!(error, warren::amqp::AmqpError::Refused { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("ACCESS_REFUSED"), "{error}");
    assert!(!error.to_string().contains("wrong"), "{error}");
    scratch.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_hung_consumer_held_is_stranded_and_found_by_the_final_read() {
    let scratch = Scratch::new("stranded");
    let cluster = node(&scratch).await;
    let text = "name = \"stranded\"\nmessages = 3_000\ndrain_timeout = \"2s\"\n[publishers]\nsize = 100\n[consumers]\nprefetch = 50\n";
    let sabotage = Sabotage {
        stop_after: Some(1_000),
        ..Sabotage::default()
    };
    let (handle, _) = start(&plan(text), &cluster, sabotage);
    let outcome = handle.await.unwrap();
    let t = &outcome.verdict.totals;
    eprintln!("{}: {:?} {:?}", module_path!(), t, outcome.final_read);
    assert_eq!(
        (t.attempted, t.confirmed, t.delivered, t.stranded),
        (3_000, 3_000, 1_000, 2_000)
    );
    assert_eq!((t.lost_confirmed, t.lost_unconfirmed), (0, 0));
    // One publisher, one consumer: it recorded the first 1,000 and hung.
    assert_eq!(
        outcome.verdict.sets[0].stranded.iter().collect::<Vec<_>>(),
        (1_000..3_000).collect::<Vec<u32>>()
    );
    assert!(outcome.final_read.ran && outcome.final_read.emptied);
    assert!(outcome.final_read.deliveries >= 2_000);
    assert_eq!(outcome.queue_left, Some(0));
    assert!(
        outcome
            .events
            .iter()
            .any(|e| e.kind == EventKind::FinalRead),
        "{:#?}",
        outcome.events
    );

    // Without the final read, the same messages can only be called lost, and stay queued.
    let (handle, _) = start(
        &plan(&format!("final_read = false\n{text}")),
        &cluster,
        sabotage,
    );
    let outcome = handle.await.unwrap();
    let t = &outcome.verdict.totals;
    eprintln!("{}: {:?} {:?}", module_path!(), t, outcome.final_read);
    assert_eq!(
        (t.delivered, t.stranded, t.lost_confirmed),
        (1_000, 0, 2_000)
    );
    assert!(!outcome.final_read.ran);
    assert_eq!(outcome.queue_left, Some(2_000));
    cluster.shutdown().await;
    scratch.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_panics_fails_the_run_naming_the_task() {
    let scratch = Scratch::new("panic");
    let cluster = node(&scratch).await;
    let plan = plan("name = \"panic\"\nmessages = 500\n[publishers]\nsize = 100\n");
    let options = WorkloadOptions {
        sabotage: Sabotage {
            panic_at: Some(10),
            ..Sabotage::default()
        },
        ..WorkloadOptions::default()
    };
    let result = workload::run(&plan, &cluster.uris(), options, &CancellationToken::new()).await;
    let error = match result {
        Ok(outcome) => panic!("a verdict with a hole: {:?}", outcome.verdict.totals),
        Err(error) => error.to_string(),
    };
    assert!(
        error.contains("consumer 0") && error.contains("panics at delivery 10"),
        "{error}"
    );
    cluster.shutdown().await;
    scratch.assert_clean();
}

/// Runs `text` to its end on `cluster` with `sabotage`; returns what was measured.
async fn run_with(cluster: &ManagedCluster, text: &str, sabotage: Sabotage) -> WorkloadOutcome {
    let (handle, _) = start(&plan(text), cluster, sabotage);
    let outcome = handle.await.unwrap();
    eprintln!(
        "{}: {:?} {:?}",
        module_path!(),
        outcome.verdict.totals,
        outcome.final_read
    );
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_finds_exactly_what_a_consumer_rejected_in_the_dead_letters() {
    let scratch = Scratch::new("rejected");
    let cluster = node(&scratch).await;
    let text = "name = \"rejected\"\nmessages = 2_000\n[publishers]\nsize = 100\n";
    let sabotage = Sabotage {
        reject_every: Some(37),
        ..Sabotage::default()
    };
    let outcome = run_with(&cluster, text, sabotage).await;
    let mut rejected: Vec<u32> = outcome
        .sabotaged_rejected
        .iter()
        .map(|(_, seq)| *seq as u32)
        .collect();
    rejected.sort_unstable();
    assert!(rejected.len() >= 50, "{} rejected", rejected.len());
    let t = &outcome.verdict.totals;
    assert_eq!(
        outcome.verdict.sets[0]
            .dead_lettered
            .iter()
            .collect::<Vec<_>>(),
        rejected,
        "exactly the rejected ones are dead-lettered"
    );
    assert_eq!(t.dead_lettered_rejected, rejected.len() as u64);
    assert_eq!((t.lost_confirmed, t.stranded), (0, 0));
    assert_eq!(t.delivered + t.dead_lettered, 2_000, "{t:?}");
    let report = report(&plan(text), outcome);
    let gate = report
        .gates
        .iter()
        .find(|g| g.name == "max_dead_lettered")
        .expect("checked by default");
    assert!(!gate.passed, "{gate:?}");
    cluster.shutdown().await;
    scratch.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_dead_letters_its_oldest_messages_and_without_a_dead_letter_queue_they_are_lost()
 {
    let scratch = Scratch::new("maxlen");
    let cluster = node(&scratch).await;
    let text = "name = \"maxlen\"\nmessages = 2_000\ndrain_timeout = \"5s\"\n[topology]\nqueue = { arguments = { \"x-max-length\" = 100 } }\n[publishers]\nrate = 1000\nsize = 100\n[consumers]\nprefetch = 10\nprocessing_delay = \"5ms\"\n";
    let outcome = run_with(&cluster, text, Sabotage::default()).await;
    let t = outcome.verdict.totals.clone();
    assert!(t.dead_lettered_maxlen > 100, "{t:?}");
    assert_eq!(t.dead_lettered, t.dead_lettered_maxlen, "{t:?}");
    assert_eq!((t.lost_confirmed, t.lost_unconfirmed), (0, 0), "{t:?}");
    assert_eq!(t.delivered + t.dead_lettered, t.attempted, "{t:?}");

    let off = text.replace("[topology]\n", "[topology]\ndead_letter = false\n");
    let outcome = run_with(&cluster, &off, Sabotage::default()).await;
    let t = outcome.verdict.totals.clone();
    assert_eq!(t.dead_lettered, 0);
    assert!(t.lost_confirmed > 100, "dropped with nowhere to go: {t:?}");
    let report = report(&plan(&off), outcome);
    assert!(
        report
            .loss_explanations
            .iter()
            .any(|e| e.starts_with("x-max-length = 100 (overflow drop-head)")),
        "{:?}",
        report.loss_explanations
    );
    assert!(
        warren::report::console::render(&report).contains("could explain the losses: x-max-length"),
    );
    cluster.shutdown().await;
    scratch.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_queue_dead_letters_what_crashing_consumers_never_finish() {
    let scratch = Scratch::new("delivery-limit");
    let cluster = node(&scratch).await;
    let text = "name = \"delivery-limit\"\nmessages = 200\ndrain_timeout = \"20s\"\n[topology]\nqueue = { type = \"quorum\", arguments = { \"x-delivery-limit\" = 2 } }\n[publishers]\nsize = 100\n[consumers]\nprefetch = 10\ncrash_every = 1\n";
    let outcome = run_with(&cluster, text, Sabotage::default()).await;
    let t = &outcome.verdict.totals;
    assert_eq!(
        (t.dead_lettered, t.dead_lettered_delivery_limit),
        (200, 200),
        "{t:?}"
    );
    assert_eq!((t.lost_confirmed, t.lost_unconfirmed), (0, 0), "{t:?}");
    cluster.shutdown().await;
    scratch.assert_clean();
}

/// RabbitMQ 4.0 gave quorum queues a delivery limit of 20 when `x-delivery-limit` is
/// unset; 3.x had none. A consumer that crashes on every delivery (returning the prefetched
/// ones with it) makes 4.x dead-letter every message (or, with no dead-letter queue, drop
/// it, and the report names the default as the cause); on 3.x the messages come back
/// until the run ends, far more than 21 times, and nothing is dead-lettered or lost. Checked on whichever release the test run's
/// nodes are (`scripts/test.sh --rabbitmq 4.0` is the 4.x leg).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_queue_without_a_delivery_limit_has_its_releases_default() {
    let scratch = Scratch::new("default-delivery-limit");
    let mut cluster = node(&scratch).await;
    let status = cluster.status().await.unwrap();
    let announced = status
        .versions
        .values()
        .next()
        .unwrap()
        .rabbitmq_version
        .clone();
    assert_eq!(announced, crate::helpers::installed_rabbitmq_version());
    let release = warren::broker::ReleaseVersion::parse(&announced).unwrap();
    let has_default_limit = release.major >= 4;
    let messages = 30u64;
    let text = format!(
        "name = \"default-delivery-limit\"\nmessages = {messages}\ndrain_timeout = \"20s\"\n[topology]\nqueue = {{ type = \"quorum\" }}\n[publishers]\nsize = 100\n[consumers]\nprefetch = 10\ncrash_every = 1\n"
    );
    let outcome = run_with(&cluster, &text, Sabotage::default()).await;
    let t = outcome.verdict.totals.clone();
    assert_eq!((t.lost_confirmed, t.lost_unconfirmed), (0, 0), "{t:?}");
    if has_default_limit {
        assert_eq!(
            (t.dead_lettered, t.dead_lettered_delivery_limit),
            (messages, messages),
            "{announced}: {t:?}"
        );
    } else {
        assert_eq!(t.dead_lettered, 0, "{announced}: {t:?}");
        assert!(
            outcome.verdict.deliveries > 21 * messages,
            "{announced}: redelivered past 4.x's limit: {} deliveries",
            outcome.verdict.deliveries
        );
    }
    // Without a dead-letter queue, 4.x drops them: lost, and the report says why.
    let off = text.replace("[topology]\n", "[topology]\ndead_letter = false\n");
    let plan = plan(&off);
    let outcome = run_with(&cluster, &off, Sabotage::default()).await;
    let t = outcome.verdict.totals.clone();
    let report = RunReport::build(
        RunContext {
            plan: &plan,
            started_at: String::new(),
            nodes: vec![warren::broker::NodeInfo {
                name: status.running_nodes[0].clone(),
                uri: cluster.uris()[0].redacted(),
                product: Some("RabbitMQ".into()),
                version: Some(announced.clone()),
                platform: None,
                answering: true,
            }],
            faults: Vec::new(),
        },
        &outcome,
    );
    let named = format!("RabbitMQ {announced} gives quorum queues a default of 20");
    if has_default_limit {
        // Those the crashing consumer received before it crashed count as delivered.
        assert!(t.lost_confirmed > 0, "{announced}: {t:?}");
        assert_eq!(
            t.lost_confirmed + t.delivered,
            messages,
            "{announced}: {t:?}"
        );
        assert!(
            report.loss_explanations.iter().any(|e| e.contains(&named)),
            "{:?}",
            report.loss_explanations
        );
    } else {
        assert_eq!(
            (t.lost_confirmed, t.dead_lettered),
            (0, 0),
            "{announced}: {t:?}"
        );
        assert!(report.loss_explanations.is_empty());
    }
    cluster.shutdown().await;
    scratch.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_transient_messages_are_lost_in_a_restart_and_the_report_says_why() {
    let scratch = Scratch::new("transient-restart");
    let text = "name = \"transient-restart\"\nduration = \"6s\"\ndrain_timeout = \"10s\"\n[publishers]\npersistent = false\nrate = 1000\nsize = 100\nheartbeat = \"2s\"\n[consumers]\nprocessing_delay = \"3ms\"\nheartbeat = \"2s\"\n";
    let (plan, outcome) = restarted_mid_run(&scratch, text, 500).await;
    let t = outcome.verdict.totals.clone();
    eprintln!("{}: {:?}", module_path!(), t);
    assert!(t.lost_confirmed > 0, "{t:?}");
    let report = report(&plan, outcome);
    assert!(
        report
            .loss_explanations
            .iter()
            .any(|e| e.starts_with("the messages were transient")),
        "{:?}",
        report.loss_explanations
    );
    scratch.assert_clean();
}
