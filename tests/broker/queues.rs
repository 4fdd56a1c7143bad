//! Many queues against a real broker: each queue is judged on its own (a message routed to
//! k queues must come out of each), per-queue totals add up to the run's, and a cluster's
//! queues are spread over its nodes.

use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use warren::broker::ManagedCluster;
use warren::exit::Exit;
use warren::ledger::{Counts, Verdict};
use warren::report::{RunContext, RunReport};
use warren::scenario::{Overrides, Plan, parse};
use warren::workload::{self, ProgressLine, Sabotage, WorkloadOptions, WorkloadOutcome};

use crate::helpers::Scratch;

async fn cluster(scratch: &Scratch, nodes: usize) -> ManagedCluster {
    crate::helpers::started_cluster(scratch, nodes).await
}

fn plan(text: &str) -> Plan {
    parse(Path::new("test.toml"), text, Overrides::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs the workload in the background, naming the cluster's nodes; the watch shows live
/// totals.
fn start(
    plan: &Plan,
    cluster: &ManagedCluster,
) -> (
    tokio::task::JoinHandle<WorkloadOutcome>,
    tokio::sync::watch::Receiver<u64>,
) {
    start_sabotaged(plan, cluster, Sabotage::default())
}

/// As [`start`], with consumers that make the given mistakes.
fn start_sabotaged(
    plan: &Plan,
    cluster: &ManagedCluster,
    sabotage: Sabotage,
) -> (
    tokio::task::JoinHandle<WorkloadOutcome>,
    tokio::sync::watch::Receiver<u64>,
) {
    let (tx, rx) = tokio::sync::watch::channel(0);
    let options = WorkloadOptions {
        on_progress: Some(Box::new(move |line: &ProgressLine| {
            let _ = tx.send(line.totals.fresh);
        })),
        node_names: cluster.specs().into_iter().map(|s| s.name).collect(),
        sabotage,
        ..WorkloadOptions::default()
    };
    let plan = plan.clone();
    let uris = cluster.uris();
    let handle = tokio::spawn(async move {
        workload::run(&plan, &uris, options, &CancellationToken::new())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    });
    (handle, rx)
}

async fn until_delivered(progress: &mut tokio::sync::watch::Receiver<u64>, deliveries: u64) {
    let waited = tokio::time::timeout(
        Duration::from_secs(60),
        progress.wait_for(|fresh| *fresh >= deliveries),
    )
    .await;
    assert!(
        waited.is_ok_and(|r| r.is_ok()),
        "fewer than {deliveries} deliveries within 60 s"
    );
}

fn report(plan: &Plan, outcome: &WorkloadOutcome) -> RunReport {
    RunReport::build(
        RunContext {
            plan,
            started_at: "now".into(),
            nodes: Vec::new(),
            faults: Vec::new(),
        },
        outcome,
    )
}

/// Every count of the run is the sum of its queues'.
fn assert_queues_add_up(verdict: &Verdict) {
    let mut sum = Counts::default();
    for queue in &verdict.queues {
        let t = &queue.totals;
        sum.attempted += t.attempted;
        sum.confirmed += t.confirmed;
        sum.delivered += t.delivered;
        sum.lost_confirmed += t.lost_confirmed;
        sum.lost_unconfirmed += t.lost_unconfirmed;
        sum.duplicated += t.duplicated;
        sum.stranded += t.stranded;
    }
    let t = &verdict.totals;
    assert_eq!(
        (
            sum.attempted,
            sum.confirmed,
            sum.delivered,
            sum.lost_confirmed,
            sum.lost_unconfirmed,
            sum.duplicated,
            sum.stranded
        ),
        (
            t.attempted,
            t.confirmed,
            t.delivered,
            t.lost_confirmed,
            t.lost_unconfirmed,
            t.duplicated,
            t.stranded
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_queues_each_deliver_what_was_published_to_them() {
    let scratch = Scratch::new("eight-queues");
    let cluster = cluster(&scratch, 1).await;
    let plan = plan(
        "name = \"eight\"\nmessages = 400\n[topology]\nqueues = 8\n[publishers]\ncount = 4\n[consumers]\ncount = 8\n",
    );
    let (handle, _) = start(&plan, &cluster);
    let outcome = handle.await.unwrap();
    let verdict = &outcome.verdict;
    assert_eq!(verdict.queues.len(), 8);
    for (index, queue) in verdict.queues.iter().enumerate() {
        let t = &queue.totals;
        // Publisher i publishes to queue i mod 8: the last four get nothing.
        let published = if index < 4 { 400 } else { 0 };
        assert_eq!(
            (t.attempted, t.confirmed, t.delivered),
            (published, published, published),
            "{}: {t:?}",
            queue.name
        );
        assert_eq!(t.lost_confirmed + t.duplicated + t.unexpected, 0, "{t:?}");
        assert!(
            queue.name.ends_with(&format!("-{}", index + 1)),
            "{}",
            queue.name
        );
        assert_eq!(
            queue.node.as_deref(),
            Some(cluster.specs()[0].name.as_str())
        );
        assert!(
            queue.order_checked,
            "one consumer per queue: order is promised"
        );
        assert_eq!(outcome.queues[index].left, Some(0));
    }
    assert_eq!(verdict.totals.delivered, 1_600);
    assert_queues_add_up(verdict);
    let report = report(&plan, &outcome);
    assert_eq!(report.exit(), Exit::Success);
    assert_eq!(report.queues.len(), 8);
    let per_queue: u64 = report.queues.iter().map(|q| q.totals.delivered).sum();
    assert_eq!(per_queue, 1_600);
    let csv = warren::report::queues::csv(&report.queues);
    assert_eq!(csv.lines().count(), 9, "{csv}");
    cluster.shutdown().await;
    scratch.assert_clean();
}

/// A fanout delivers each message once from every bound queue; a binding removed from
/// outside mid-run shows as loss in that queue only, though every message was confirmed
/// and reached the other queues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fanout_is_judged_per_queue_and_a_removed_binding_loses_in_that_queue_only() {
    let scratch = Scratch::new("fanout");
    let cluster = cluster(&scratch, 1).await;
    let exchange = format!("fanout-{}", std::process::id());
    // Bound by messages (6 s at 400 msg/s a publisher): the binding goes while publishing
    // goes on, however loaded the machine.
    let plan = plan(&format!(
        "name = \"fanout\"\nmessages = 2400\ndrain_timeout = \"30s\"\n[topology]\nqueues = 4\nqueue = {{ name = \"{exchange}-q\" }}\nexchange = {{ name = \"{exchange}\", kind = \"fanout\", durable = false }}\n[publishers]\ncount = 2\nrate = 400\n[consumers]\ncount = 4\n"
    ));
    let (handle, mut progress) = start(&plan, &cluster);
    until_delivered(&mut progress, 2_000).await;
    let connection = warren::amqp::connect(
        &cluster.uris()[0],
        None,
        "unbinder",
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let channel = connection.open_channel().await.unwrap();
    channel
        .unbind_queue(&format!("{exchange}-q-3"), &exchange, "")
        .await
        .unwrap();
    connection.close().await;
    let outcome = handle.await.unwrap();
    let verdict = &outcome.verdict;
    assert_eq!(verdict.queues.len(), 4);
    let published = verdict.queues[0].totals.attempted;
    assert!(published > 2_000, "{published}");
    for (index, queue) in verdict.queues.iter().enumerate() {
        let t = &queue.totals;
        assert_eq!(t.attempted, published, "every queue is owed every message");
        assert_eq!(t.duplicated + t.unexpected, 0, "{}: {t:?}", queue.name);
        if index == 2 {
            assert!(
                t.lost_confirmed > 0 && t.delivered + t.lost_confirmed == t.confirmed,
                "the unbound queue lost what came after: {t:?}"
            );
        } else {
            assert_eq!(
                (t.delivered, t.lost_confirmed),
                (t.confirmed, 0),
                "{}: {t:?}",
                queue.name
            );
        }
    }
    assert_eq!(
        verdict.totals.returned, 0,
        "the other queues still took them"
    );
    assert_queues_add_up(verdict);
    assert_eq!(report(&plan, &outcome).exit(), Exit::GateFailed);
    cluster.shutdown().await;
    scratch.assert_clean();
}

/// Six quorum queues on three nodes: two leaders on each node (as rabbitmqctl lists
/// them), and killing the node that leads the first queue loses nothing confirmed in any
/// queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// The guard only keeps other cluster tests (on other test threads) out; nothing in this
// runtime ever takes it, so holding it across awaits cannot deadlock.
#[allow(clippy::await_holding_lock)]
async fn quorum_queues_are_spread_over_a_cluster_and_a_leader_kill_loses_nothing_confirmed() {
    let scratch = Scratch::cluster("spread");
    let mut cluster = cluster(&scratch, 3).await;
    let plan = plan(
        "name = \"spread\"\nduration = \"60s\"\ndrain_timeout = \"30s\"\n[topology]\nqueues = 6\nqueue = { type = \"quorum\" }\n[publishers]\ncount = 6\nrate = 600\n[consumers]\ncount = 6\n",
    );
    let (handle, mut progress) = start(&plan, &cluster);
    until_delivered(&mut progress, 1_000).await;
    // The queue names carry the run id; they are found by listing.
    let mut leaders = Vec::new();
    let listing = cluster
        .ctl()
        .run(
            &cluster.specs()[0].name,
            &["list_queues", "name", "leader", "-q", "--no-table-headers"],
            warren::broker::CTL_ANSWER_WITHIN,
        )
        .await
        .unwrap();
    for line in listing.lines() {
        let columns: Vec<&str> = line.split('\t').map(str::trim).collect();
        if columns.len() == 2
            && columns[0].starts_with("warren-spread-")
            && !columns[0].ends_with(".dead-letters")
        {
            leaders.push((columns[0].to_string(), columns[1].to_string()));
        }
    }
    leaders.sort();
    assert_eq!(leaders.len(), 6, "{listing}");
    for node in cluster.specs() {
        let led = leaders.iter().filter(|(_, l)| *l == node.name).count();
        assert_eq!(led, 2, "{} leads {led} of {leaders:?}", node.name);
    }
    // The listing's own leader: on a loaded machine each rabbitmqctl call starts an Erlang
    // VM for seconds, and a second lookup once outlasted the run (its queues were deleted,
    // so every listing came back empty).
    let first_leader = leaders[0].1.clone();
    let victim = cluster
        .specs()
        .iter()
        .position(|s| s.name == first_leader)
        .unwrap();
    assert!(
        !handle.is_finished(),
        "the run ended before the leader kill"
    );
    cluster.kill(victim).await.unwrap();
    let outcome = handle.await.unwrap();
    let verdict = &outcome.verdict;
    assert_eq!(verdict.queues.len(), 6);
    for queue in &verdict.queues {
        let t = &queue.totals;
        assert!(t.confirmed > 0, "{}: {t:?}", queue.name);
        assert_eq!(t.lost_confirmed, 0, "{}: {t:?}", queue.name);
        assert!(queue.node.is_some());
    }
    assert_queues_add_up(verdict);
    cluster.shutdown().await;
    scratch.assert_clean();
}

/// The same run on one client thread and on two: the same totals, exactly (the threads'
/// ledgers merge as the tasks' did).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_client_threads_give_the_same_totals_as_one() {
    let scratch = Scratch::new("threads");
    let cluster = cluster(&scratch, 1).await;
    let text = |threads: u32| {
        format!(
            "name = \"threads\"\nmessages = 1000\nthreads = {threads}\n[topology]\nqueues = 4\n[publishers]\ncount = 4\nrate = 2000\n[consumers]\ncount = 8\n"
        )
    };
    let mut totals = Vec::new();
    for threads in [1, 2] {
        let plan = plan(&text(threads));
        assert_eq!(plan.threads, threads);
        let (handle, _) = start(&plan, &cluster);
        let outcome = handle.await.unwrap();
        let t = outcome.verdict.totals.clone();
        assert_eq!(
            (t.attempted, t.delivered, t.lost_confirmed, t.duplicated),
            (4_000, 4_000, 0, 0),
            "{threads} thread(s): {t:?}"
        );
        assert_queues_add_up(&outcome.verdict);
        let per_queue: Vec<u64> = outcome
            .verdict
            .queues
            .iter()
            .map(|q| q.totals.delivered)
            .collect();
        totals.push((t, per_queue, outcome.series.total_counts().delivered));
    }
    assert_eq!(totals[0], totals[1]);
    cluster.shutdown().await;
    scratch.assert_clean();
}

/// Two thousand publishers and two thousand consumers (channels over 200 connections
/// each way) on 40 queues, 10 messages each (about 10 s): the run completes and loses
/// nothing. The full
/// 10,000-client figure belongs to the benchmark (benches/clients.sh).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_publishers_and_consumers_lose_nothing() {
    let scratch = Scratch::several("crowd");
    let cluster = cluster(&scratch, 1).await;
    let plan = plan(
        "name = \"crowd\"\nmessages = 10\ndrain_timeout = \"60s\"\n[topology]\nqueues = 40\n[publishers]\ncount = 2000\nconnections = 200\nrate = 2000\nsize = 100\n[consumers]\ncount = 2000\nconnections = 200\nprefetch = 10\n",
    );
    let (handle, _) = start(&plan, &cluster);
    let outcome = tokio::time::timeout(Duration::from_secs(300), handle)
        .await
        .expect("the run ends")
        .unwrap();
    let t = &outcome.verdict.totals;
    // Bound by messages (10 per publisher), not by time: a loaded machine once published
    // 14,768 in the 10 s this run used to last; the figure belongs to benches/clients.sh.
    assert_eq!(t.attempted, 20_000, "{t:?}");
    assert_eq!(
        (t.lost_confirmed, t.lost_unconfirmed, t.unexpected),
        (0, 0, 0),
        "{t:?}"
    );
    assert_eq!(t.delivered, t.confirmed, "{t:?}");
    assert_eq!(outcome.verdict.queues.len(), 40);
    assert_queues_add_up(&outcome.verdict);
    cluster.shutdown().await;
    scratch.assert_clean();
}

/// Two queues dead-lettering into the run's one dead-letter queue: each dead letter is
/// counted for the queue it came from (its `x-death` queue), exactly what that queue's
/// consumer rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_of_several_queues_are_counted_for_the_queue_they_came_from() {
    let scratch = Scratch::new("dead-queues");
    let cluster = cluster(&scratch, 1).await;
    let plan = plan(
        "name = \"dead-queues\"\nmessages = 1000\n[topology]\nqueues = 2\n[publishers]\ncount = 2\nsize = 100\n[consumers]\ncount = 2\n",
    );
    let sabotage = Sabotage {
        reject_every: Some(29),
        ..Sabotage::default()
    };
    let (handle, _) = start_sabotaged(&plan, &cluster, sabotage);
    let outcome = handle.await.unwrap();
    for (queue, verdict) in outcome.verdict.queues.iter().enumerate() {
        // Publisher q feeds queue q, which consumer q reads.
        let rejected = outcome
            .sabotaged_rejected
            .iter()
            .filter(|(producer, _)| *producer as usize == queue)
            .count() as u64;
        let t = &verdict.totals;
        assert!(rejected >= 30, "{rejected}");
        assert_eq!(
            t.dead_lettered_rejected, rejected,
            "{}: {t:?}",
            verdict.name
        );
        assert_eq!((t.lost_confirmed, t.unexpected), (0, 0), "{t:?}");
        assert_eq!(t.delivered + t.dead_lettered, 1_000, "{t:?}");
    }
    assert_queues_add_up(&outcome.verdict);
    cluster.shutdown().await;
    scratch.assert_clean();
}
