//! Micro-benchmarks of what warren does per message besides talking AMQP: recording a
//! message in the ledgers (publisher side: confirmed; consumer side: delivered), deciding
//! the verdict over 10M and 100M messages (in order, 1% reordered, 1% duplicated),
//! recording and merging latency histograms, and encoding and decoding the message header.
//!
//! `cargo bench --bench ledger`; `cargo bench --bench ledger -- verdict/100M` for one
//! group. The ledgers' memory per message is printed once per pattern before the verdict
//! benchmarks. Targets (issue 8): at most 30 ns per recorded message, at most 1 byte per
//! message for 100M in-order messages, a verdict over 100M messages in under 2 s.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use warren::ledger::{DeliveryShard, Evidence, PublishLedger, decide};
use warren::message::{self, HEADER_LEN, Header};
use warren::metrics::latency::Latencies;
use warren::seeded::splitmix;

/// How messages arrive at the consumer.
#[derive(Clone, Copy)]
enum Pattern {
    InOrder,
    /// Every 100th message swapped with the one after it.
    Reordered,
    /// Every 100th message delivered twice.
    Duplicated,
}

impl Pattern {
    fn name(self) -> &'static str {
        match self {
            Pattern::InOrder => "in_order",
            Pattern::Reordered => "reordered_1pct",
            Pattern::Duplicated => "duplicated_1pct",
        }
    }

    /// The delivery order of messages `0..count`.
    fn deliveries(self, count: u32) -> impl Iterator<Item = u32> {
        (0..count).flat_map(move |seq| {
            let (first, second) = match self {
                Pattern::InOrder => (seq, None),
                Pattern::Reordered if seq % 100 == 0 && seq + 1 < count => (seq + 1, None),
                Pattern::Reordered if seq % 100 == 1 => (seq - 1, None),
                Pattern::Reordered => (seq, None),
                Pattern::Duplicated if seq % 100 == 0 => (seq, Some(seq)),
                Pattern::Duplicated => (seq, None),
            };
            std::iter::once(first).chain(second)
        })
    }
}

const PATTERNS: [Pattern; 3] = [Pattern::InOrder, Pattern::Reordered, Pattern::Duplicated];

/// One producer's publish ledger (all confirmed) and one consumer's shard, as a run of
/// `count` messages leaves them.
fn ledgers(count: u32, pattern: Pattern) -> (PublishLedger, DeliveryShard) {
    let mut published = PublishLedger::new(0);
    for seq in 0..count {
        published.confirmed.insert(seq);
    }
    published.attempted = count;
    let mut shard = DeliveryShard::new(1);
    for seq in pattern.deliveries(count) {
        shard.record(0, u64::from(seq), false, 0, true);
    }
    (published, shard)
}

fn record(c: &mut Criterion) {
    const COUNT: u32 = 1_000_000;
    let mut group = c.benchmark_group("record");
    group.throughput(Throughput::Elements(u64::from(COUNT)));
    for pattern in PATTERNS {
        let order: Vec<u32> = pattern.deliveries(COUNT).collect();
        group.bench_with_input(
            BenchmarkId::new("confirm_and_delivery", pattern.name()),
            &order,
            |b, order| {
                b.iter_batched_ref(
                    || (PublishLedger::new(0), DeliveryShard::new(1)),
                    |(published, shard)| {
                        for &seq in order {
                            published.confirmed.insert(seq);
                            black_box(shard.record(0, u64::from(seq), false, 0, true));
                        }
                    },
                    BatchSize::LargeInput,
                );
            },
        );
    }
    group.finish();
}

fn verdict(c: &mut Criterion, count: u32, label: &str) {
    let mut group = c.benchmark_group(format!("verdict/{label}"));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(u64::from(count)));
    for pattern in PATTERNS {
        let (published, shard) = ledgers(count, pattern);
        let bytes = published.memory_bytes() + shard.memory_bytes();
        eprintln!(
            "ledgers for {label} messages, {}: {bytes} bytes ({:.4} bytes per message)",
            pattern.name(),
            bytes as f64 / f64::from(count)
        );
        let publishers = [published];
        let shards = [shard];
        group.bench_function(pattern.name(), |b| {
            b.iter(|| {
                black_box(decide(
                    Evidence {
                        publishers: &publishers.iter().collect::<Vec<_>>(),
                        consumers: &shards.iter().collect::<Vec<_>>(),
                        ..Evidence::default()
                    },
                    true,
                    true,
                ))
            });
        });
    }
    group.finish();
}

fn verdict_10m(c: &mut Criterion) {
    verdict(c, 10_000_000, "10M");
}

fn verdict_100m(c: &mut Criterion) {
    verdict(c, 100_000_000, "100M");
}

fn histograms(c: &mut Criterion) {
    const COUNT: u64 = 100_000;
    let mut group = c.benchmark_group("histogram");
    group.throughput(Throughput::Elements(COUNT));
    // Latencies spread from 0.1 ms to about 50 ms, as a loaded broker gives.
    let samples: Vec<u64> = (0..COUNT)
        .map(|i| 100_000 + (i * 7_919) % 50_000_000)
        .collect();
    group.bench_function("record_delivery", |b| {
        b.iter_batched_ref(
            Latencies::default,
            |latencies| {
                for &latency in &samples {
                    latencies.record_delivery(0, latency / 2, latency);
                }
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
    let mut one_second = Latencies::default();
    for &latency in &samples {
        one_second.record_confirm(0, latency);
        one_second.record_delivery(0, latency / 2, latency);
    }
    c.bench_function("histogram/merge_one_second", |b| {
        b.iter_batched_ref(
            Latencies::default,
            |total| total.add(black_box(&one_second)),
            BatchSize::SmallInput,
        );
    });
}

fn header(c: &mut Criterion) {
    let mut body = vec![0u8; 100];
    message::fill_payload(&mut body[HEADER_LEN..], 7);
    let header = Header {
        run_id: 0x5eed,
        producer: 3,
        seq: 123_456,
        attempt: 0,
        worker_attempt: 0,
        intended_ns: 1_000_000,
        sent_ns: 1_000_500,
    };
    let mut group = c.benchmark_group("header");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode_100B", |b| {
        b.iter(|| message::encode(black_box(&mut body), black_box(&header)));
    });
    message::encode(&mut body, &header);
    group.bench_function("decode_100B", |b| {
        b.iter(|| black_box(message::decode(black_box(&body), 0x5eed)));
    });
    group.finish();
}

/// Ledger memory for many clients (issue 17: at most 2 bytes per message for 1M in-order
/// messages over 500 publishers and 500 consumers): the publishers' ledgers plus either a
/// shard per consumer (each consumer's own, as before) or one shard per client thread
/// shared by its consumers (as now).
fn clients_memory(c: &mut Criterion) {
    const PRODUCERS: u32 = 500;
    const CONSUMERS: usize = 500;
    const MESSAGES: u64 = 1_000_000;
    let deliveries = || {
        (0..MESSAGES).map(|k| {
            let producer = (k % u64::from(PRODUCERS)) as u32;
            let seq = k / u64::from(PRODUCERS);
            let consumer = (splitmix(k) % CONSUMERS as u64) as usize;
            (producer, seq, consumer)
        })
    };
    let mut publishers: Vec<PublishLedger> = (0..PRODUCERS).map(PublishLedger::new).collect();
    for (producer, seq, _) in deliveries() {
        let ledger = &mut publishers[producer as usize];
        ledger.attempted = seq as u32 + 1;
        ledger.confirmed.insert(seq as u32);
    }
    let publisher_bytes: u64 = publishers.iter().map(|l| l.memory_bytes()).sum();
    let mut own: Vec<DeliveryShard> = (0..CONSUMERS)
        .map(|_| DeliveryShard::new(PRODUCERS))
        .collect();
    let mut shared = DeliveryShard::new(PRODUCERS);
    for (producer, seq, consumer) in deliveries() {
        own[consumer].record(producer, seq, false, 0, false);
        shared.record(producer, seq, false, 0, false);
    }
    let own_bytes: u64 = own.iter().map(DeliveryShard::memory_bytes).sum();
    let shared_bytes = shared.memory_bytes();
    let per = |bytes: u64| bytes as f64 / MESSAGES as f64;
    eprintln!(
        "ledgers for 1M messages over {PRODUCERS} publishers and {CONSUMERS} consumers: a shard per consumer {} bytes ({:.2} per message); one shard per thread {} bytes ({:.3} per message)",
        publisher_bytes + own_bytes,
        per(publisher_bytes + own_bytes),
        publisher_bytes + shared_bytes,
        per(publisher_bytes + shared_bytes)
    );
    let mut group = c.benchmark_group("clients");
    group.sample_size(10);
    group.throughput(Throughput::Elements(MESSAGES));
    group.bench_function("record_1M_500x500_shared", |b| {
        b.iter_batched(
            || DeliveryShard::new(PRODUCERS),
            |mut shard| {
                for (producer, seq, _) in deliveries() {
                    black_box(shard.record(producer, seq, false, 0, false));
                }
                shard
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

criterion_group!(
    benches,
    clients_memory,
    record,
    verdict_10m,
    verdict_100m,
    histograms,
    header
);
criterion_main!(benches);
