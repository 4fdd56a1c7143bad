//! What `--metrics-listen` costs the process: adding one second of a client thread's
//! latencies (20,000 confirms and deliveries, spread like a loaded run's) to the
//! Prometheus histograms, which the coordinator does once a second per client thread, and
//! answering one scrape of a run with 64 publishers and 64 consumers on 8 queues. Neither
//! is on the publish, confirm or deliver path; the figures say what share of a core they
//! take at one scrape a second.
//!
//! `cargo bench --bench exporter`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use prometheus_client::registry::Registry;
use warren::exporter::LiveMetrics;
use warren::metrics::latency::Latencies;
use warren::seeded::SplitMix;
use warren::workload::live::{LiveSink, Tasks};
use warren::workload::progress::{ConsumerCounters, PublisherCounters};

/// One second of one client thread at 20,000 msg/s: latencies from 300 µs to about
/// 300 ms, most near a millisecond.
fn busy_second() -> Latencies {
    let mut latencies = Latencies::default();
    let mut random = SplitMix::new(7);
    for _ in 0..20_000 {
        let spread = random.next() % 1_000;
        let us = 300 + spread * spread * spread / 3_000_000 + random.next() % 1_500;
        latencies.record_confirm(0, us * 1_000);
        latencies.record_delivery(0, 0, us * 1_300);
    }
    latencies
}

fn run_of(queues: usize, clients: usize) -> Tasks {
    let label = |i: usize| format!("warren-bench-{}", i % queues);
    Tasks {
        publishers: (0..clients)
            .map(|i| {
                let counters = Arc::new(PublisherCounters::default());
                counters.sent.set(1_000_000 + i as u64);
                counters.confirmed.set(999_000 + i as u64);
                (label(i), counters)
            })
            .collect(),
        consumers: (0..clients)
            .map(|i| {
                let counters = Arc::new(ConsumerCounters::default());
                counters.deliveries.set(998_000 + i as u64);
                counters.fresh.set(998_000 + i as u64);
                (label(i), counters)
            })
            .collect(),
        ..Tasks::default()
    }
}

fn exporter(c: &mut Criterion) {
    let second = busy_second();
    let live = Arc::new(LiveMetrics::default());
    c.bench_function("exporter/observe one thread's second (20k msg)", |b| {
        b.iter(|| live.observe(black_box(&second)));
    });

    let live = Arc::new(LiveMetrics::default());
    live.attach(run_of(8, 64));
    live.observe(&second);
    for i in 0..10 {
        live.fault(&format!("fault {i}"), i % 2 == 0);
    }
    let mut registry = Registry::default();
    registry.register_collector(Box::new(live.clone()));
    let mut text = String::with_capacity(16 * 1024);
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
    println!(
        "one scrape of 64+64 clients on 8 queues: {} bytes",
        text.len()
    );
    c.bench_function("exporter/scrape (64+64 clients, 8 queues)", |b| {
        b.iter(|| {
            text.clear();
            prometheus_client::encoding::text::encode(&mut text, black_box(&registry))
                .expect("encodes");
            black_box(text.len())
        });
    });
}

criterion_group!(benches, exporter);
criterion_main!(benches);
