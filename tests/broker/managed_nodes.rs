//! Managed nodes through the library: a node restarts, survives kill -9, pauses and
//! resumes; three nodes form a cluster; an external broker is checked and described.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use warren::amqp::{connect, probe};
use warren::broker::{Broker, ClusterOptions, ManagedCluster, StartOptions};
use warren::broker_uri::BrokerUri;
use warren::scenario::{BrokerPlan, ExternalBrokerPlan, NodeCommands};

use crate::helpers::{Scratch, processes_mentioning};

fn options(scratch: &Scratch, nodes: usize) -> ClusterOptions {
    crate::helpers::cluster_options(scratch, nodes)
}

/// Opens an AMQP connection and a channel, then closes them.
async fn accepts_connections(uri: &BrokerUri) {
    let connection = connect(uri, None, "warren test", Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    connection.check_channel().await.unwrap();
    connection.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarts_survives_kill_9_and_pauses() {
    let scratch = Scratch::new("node-ops");
    let cancel = CancellationToken::new();
    let mut cluster = ManagedCluster::start(options(&scratch, 1), &cancel)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let uri = cluster.uris()[0].clone();
    accepts_connections(&uri).await;
    assert!(
        processes_mentioning(&scratch.tmp())
            .iter()
            .any(|(_, cmd)| cmd.contains("beam"))
    );

    cluster.restart(0, &cancel).await.unwrap();
    accepts_connections(&uri).await;

    cluster
        .kill_and_start(0, Duration::from_millis(500), &cancel)
        .await
        .unwrap();
    accepts_connections(&uri).await;

    cluster.pause(0).unwrap();
    assert!(
        probe("127.0.0.1", uri.port(), Duration::from_secs(1))
            .await
            .is_err(),
        "a paused node does not answer"
    );
    cluster.resume(0).unwrap();
    let info = probe("127.0.0.1", uri.port(), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(info.product, "RabbitMQ");

    // The same node, seen as an external broker: checked at start and described.
    let plan = BrokerPlan::External(ExternalBrokerPlan {
        uris: vec![uri.clone()],
        allow_destructive: false,
        commands: NodeCommands::default(),
        tls: None,
    });
    let external = Broker::start(&plan, StartOptions::default(), &cancel)
        .await
        .unwrap();
    let nodes = external.describe().await;
    assert_eq!(nodes[0].version.as_deref(), Some(info.version.as_str()));
    external.shutdown().await;
    assert!(
        !scratch.tmp_entries().is_empty(),
        "an external broker leaves a managed one alone"
    );

    cluster.shutdown().await;
    scratch.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_a_cluster_and_a_killed_node_rejoins() {
    let scratch = Scratch::cluster("cluster");
    let cancel = CancellationToken::new();
    let mut cluster = ManagedCluster::start(options(&scratch, 3), &cancel)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = cluster.status().await.unwrap();
    assert_eq!(status.running_nodes.len(), 3, "{status:?}");
    assert_eq!(status.disk_nodes.len(), 3, "{status:?}");
    for uri in cluster.uris() {
        accepts_connections(&uri).await;
    }
    let text = cluster
        .ctl()
        .run(
            &cluster.specs()[0].name,
            &["cluster_status"],
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    for spec in cluster.specs() {
        assert!(text.contains(&spec.name), "{text}");
    }

    cluster.kill(2).await.unwrap();
    let status = cluster.status().await.unwrap();
    assert_eq!(status.running_nodes.len(), 2, "{status:?}");
    cluster.start_node(2, &cancel).await.unwrap();
    let status = cluster.status().await.unwrap();
    assert_eq!(status.running_nodes.len(), 3, "{status:?}");

    cluster.shutdown().await;
    scratch.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_cluster_is_killed_and_removed() {
    let scratch = Scratch::new("drop");
    let cancel = CancellationToken::new();
    let cluster = ManagedCluster::start(options(&scratch, 1), &cancel)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!scratch.tmp_entries().is_empty());
    drop(cluster);
    scratch.assert_clean();
}

/// Cancelled once the node's Erlang VM runs (an event, not a time: a loaded machine takes
/// longer to get there), the start stops it and leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_start_leaves_nothing_behind() {
    let scratch = Scratch::new("cancelled");
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let node_folder = scratch.tmp();
    let watcher = tokio::spawn(async move {
        while !processes_mentioning(&node_folder)
            .iter()
            .any(|(_, cmd)| cmd.contains("beam"))
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        trigger.cancel();
    });
    let result = ManagedCluster::start(options(&scratch, 1), &cancel).await;
    assert!(
        matches!(result, Err(warren::broker::BrokerError::Interrupted)),
        "{:?}",
        result.err()
    );
    watcher.await.unwrap();
    scratch.assert_clean();
}
