//! The figures `--metrics-listen` serves, read when Prometheus scrapes: the counters come
//! from the tasks' live counters (the numbers the progress line already reads), the
//! latency histograms from the seconds the coordinator receives, the fault gauges from the
//! fault timeline, and the verdict gauges from the end of the run. Nothing here is on the
//! publish, confirm or deliver path.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;
use tokio::sync::Notify;

use super::buckets::LatencyBuckets;
use crate::faults::runner::Announce;
use crate::metrics::latency::Latencies;
use crate::workload::link::Link;
use crate::workload::live::{LiveSink, Tasks};

/// The live figures of a run (or of every step of a sweep), shared by the workload, the
/// fault runner and the HTTP server.
#[derive(Debug, Default)]
pub struct LiveMetrics {
    state: Mutex<State>,
    /// Woken when a scrape has read the final figures.
    final_scraped: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// The tasks of the run going on.
    tasks: Option<Tasks>,
    /// What the tasks of earlier runs (sweep steps) counted, by queue label.
    carried: BTreeMap<String, Figures>,
    /// Reconnections of earlier runs: publishers, consumers.
    carried_reconnects: [u64; 2],
    confirm: LatencyBuckets,
    e2e: LatencyBuckets,
    /// Every fault seen so far, by label: whether it is in effect.
    faults: BTreeMap<String, bool>,
    end: Option<EndFigures>,
    end_scraped: bool,
}

/// What the run concluded, served once it is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndFigures {
    pub lost_confirmed: u64,
    pub duplicated: u64,
    pub passed: bool,
}

/// The counters of one queue label (or of every queue).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Figures {
    published: u64,
    confirmed: u64,
    nacked: u64,
    returned: u64,
    republished: u64,
    in_flight: u64,
    deliveries: u64,
    fresh: u64,
    redelivered: u64,
}

impl Figures {
    fn add(&mut self, other: &Figures) {
        self.published += other.published;
        self.confirmed += other.confirmed;
        self.nacked += other.nacked;
        self.returned += other.returned;
        self.republished += other.republished;
        self.in_flight += other.in_flight;
        self.deliveries += other.deliveries;
        self.fresh += other.fresh;
        self.redelivered += other.redelivered;
    }
}

impl Tasks {
    /// The tasks' counters now, by queue label.
    fn figures(&self) -> BTreeMap<String, Figures> {
        let mut by_queue: BTreeMap<String, Figures> = BTreeMap::new();
        for (queue, p) in &self.publishers {
            by_queue.entry(queue.clone()).or_default().add(&Figures {
                published: p.sent.get(),
                confirmed: p.confirmed.get(),
                nacked: p.nacked.get(),
                returned: p.returned.get(),
                republished: p.republished.get(),
                in_flight: p.in_flight.get(),
                ..Figures::default()
            });
        }
        for (queue, c) in &self.consumers {
            by_queue.entry(queue.clone()).or_default().add(&Figures {
                deliveries: c.deliveries.get(),
                fresh: c.fresh.get(),
                redelivered: c.redelivered.get(),
                ..Figures::default()
            });
        }
        by_queue
    }

    fn reconnects(&self) -> [u64; 2] {
        let sum = |links: &[Arc<Link>]| links.iter().map(|l| l.reconnects()).sum();
        [sum(&self.publisher_links), sum(&self.consumer_links)]
    }
}

/// The workload's live figures, read at every scrape.
impl LiveSink for LiveMetrics {
    /// A run's tasks start: their counters are read at every scrape from now on.
    fn attach(&self, tasks: Tasks) {
        let mut state = self.state();
        state.carry_over();
        state.tasks = Some(tasks);
    }

    /// A run's tasks ended: what they counted stays, and the next run adds to it.
    fn detach(&self) {
        self.state().carry_over();
    }

    /// Adds one second of latencies (the coordinator calls this as seconds arrive).
    fn observe(&self, latencies: &Latencies) {
        let mut state = self.state();
        state.confirm.add(&latencies.confirm_us);
        state.e2e.add(&latencies.e2e_intended_us);
    }
}

impl LiveMetrics {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fault labelled `label` began (true) or ended (false).
    pub fn fault(&self, label: &str, active: bool) {
        self.state().faults.insert(label.to_string(), active);
    }

    /// The run's conclusion; the server lingers until a scrape has read it.
    pub fn finish(&self, end: EndFigures) {
        let mut state = self.state();
        state.carry_over();
        for active in state.faults.values_mut() {
            *active = false;
        }
        state.end = Some(end);
        state.end_scraped = false;
    }

    /// Whether the run's conclusion was given (a worker of a shared run has none).
    pub fn finished(&self) -> bool {
        self.state().end.is_some()
    }

    /// Returns once a scrape has read the figures given to [`finish`](Self::finish).
    pub async fn final_figures_scraped(&self) {
        loop {
            let notified = self.final_scraped.notified();
            if self.state().end_scraped {
                return;
            }
            notified.await;
        }
    }
}

impl Announce for LiveMetrics {
    fn began(&self, _elapsed_s: f64, label: &str, _action: &str) {
        self.fault(label, true);
    }

    fn ended(&self, _elapsed_s: f64, label: &str, _outcome: &crate::faults::outcome::FaultOutcome) {
        self.fault(label, false);
    }
}

impl State {
    /// Folds the tasks' counts into what is carried, and forgets the tasks.
    fn carry_over(&mut self) {
        if let Some(tasks) = self.tasks.take() {
            for (queue, mut figures) in tasks.figures() {
                figures.in_flight = 0;
                self.carried.entry(queue).or_default().add(&figures);
            }
            let [p, c] = tasks.reconnects();
            self.carried_reconnects[0] += p;
            self.carried_reconnects[1] += c;
        }
    }

    /// Everything counted so far, by queue label.
    fn figures(&self) -> BTreeMap<String, Figures> {
        // What is carried has no messages in flight: carry_over zeroes them.
        let mut all = self.carried.clone();
        if let Some(tasks) = &self.tasks {
            for (queue, figures) in tasks.figures() {
                all.entry(queue).or_default().add(&figures);
            }
        }
        all
    }

    fn reconnects(&self) -> [u64; 2] {
        let live = self.tasks.as_ref().map_or([0, 0], Tasks::reconnects);
        [
            self.carried_reconnects[0] + live[0],
            self.carried_reconnects[1] + live[1],
        ]
    }
}

/// A counter family: one sample per queue label, or one unlabelled when the run has one
/// queue (its label is "").
fn counter_family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[(&str, u64)],
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    match values {
        [] => ConstCounter::new(0u64).encode(metric),
        [("", value)] => ConstCounter::new(*value).encode(metric),
        labelled => {
            for (queue, value) in labelled {
                let labels = [("queue", *queue)];
                ConstCounter::new(*value).encode(metric.encode_family(&labels)?)?;
            }
            Ok(())
        }
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(metric)
}

fn histogram(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    buckets: &LatencyBuckets,
) -> Result<(), std::fmt::Error> {
    let mut metric =
        encoder.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
    metric.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
        buckets.sum_s(),
        buckets.count(),
        &buckets.buckets(),
        None,
    )
}

impl Collector for LiveMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut state = self.state();
        let figures = state.figures();
        let column = |pick: fn(&Figures) -> u64| -> Vec<(&str, u64)> {
            figures.iter().map(|(q, f)| (q.as_str(), pick(f))).collect()
        };
        let e = &mut encoder;
        counter_family(
            e,
            "warren_published",
            "Messages published (first attempts and republished copies).",
            &column(|f| f.published),
        )?;
        counter_family(
            e,
            "warren_confirmed",
            "Publisher confirms received (basic.ack).",
            &column(|f| f.confirmed),
        )?;
        counter_family(
            e,
            "warren_nacked",
            "Messages the broker refused (basic.nack).",
            &column(|f| f.nacked),
        )?;
        counter_family(
            e,
            "warren_returned",
            "Mandatory messages the broker returned as unroutable.",
            &column(|f| f.returned),
        )?;
        counter_family(
            e,
            "warren_republished",
            "Copies of unconfirmed messages published again.",
            &column(|f| f.republished),
        )?;
        counter_family(
            e,
            "warren_delivered",
            "Deliveries to consumers, every one (PerfTest's consumed).",
            &column(|f| f.deliveries),
        )?;
        counter_family(
            e,
            "warren_redelivered",
            "Deliveries the broker flagged redelivered.",
            &column(|f| f.redelivered),
        )?;
        {
            let [publishers, consumers] = state.reconnects();
            let mut metric = e.encode_descriptor(
                "warren_reconnects",
                "Connections made again after one was lost.",
                None,
                MetricType::Counter,
            )?;
            for (role, value) in [("publisher", publishers), ("consumer", consumers)] {
                let labels = [("role", role)];
                ConstCounter::new(value).encode(metric.encode_family(&labels)?)?;
            }
        }
        let total = figures.values().fold(Figures::default(), |mut sum, f| {
            sum.add(f);
            sum
        });
        gauge(
            e,
            "warren_in_flight",
            "Messages published and not yet confirmed, nacked or returned.",
            total.in_flight as i64,
        )?;
        gauge(
            e,
            "warren_missing",
            "Confirmed messages not yet delivered (confirms minus first deliveries).",
            total.confirmed.saturating_sub(total.fresh) as i64,
        )?;
        {
            let mut metric = e.encode_descriptor(
                "warren_fault_active",
                "1 while the fault is in effect, 0 before and after.",
                None,
                MetricType::Gauge,
            )?;
            for (fault, active) in &state.faults {
                let labels = [("fault", fault.as_str())];
                ConstGauge::new(i64::from(*active)).encode(metric.encode_family(&labels)?)?;
            }
        }
        histogram(
            e,
            "warren_confirm_latency",
            "Publish to broker confirm.",
            &state.confirm,
        )?;
        histogram(
            e,
            "warren_e2e_latency",
            "Intended send time to delivery (free of coordinated omission).",
            &state.e2e,
        )?;
        if let Some(end) = state.end {
            gauge(
                e,
                "warren_lost_confirmed",
                "At the end: confirmed messages never delivered.",
                end.lost_confirmed as i64,
            )?;
            gauge(
                e,
                "warren_duplicated",
                "At the end: deliveries beyond the first of a message.",
                end.duplicated as i64,
            )?;
            gauge(
                e,
                "warren_verdict_passed",
                "At the end: 1 when every gate passed, 0 otherwise.",
                i64::from(end.passed),
            )?;
            if !state.end_scraped {
                state.end_scraped = true;
                self.final_scraped.notify_waiters();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::progress::{ConsumerCounters, PublisherCounters};
    use prometheus_client::registry::Registry;

    fn scrape(live: &Arc<LiveMetrics>) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(live.clone()));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        text
    }

    fn has(text: &str, line: &str) -> bool {
        text.lines().any(|l| l == line)
    }

    fn tasks(queues: &[&str], sent: u64) -> (Tasks, Vec<Arc<PublisherCounters>>) {
        let publishers: Vec<_> = queues
            .iter()
            .map(|q| {
                let counters = Arc::new(PublisherCounters::default());
                counters.sent.set(sent);
                counters.confirmed.set(sent - 1);
                (q.to_string(), counters)
            })
            .collect();
        let consumers = queues
            .iter()
            .map(|q| {
                let counters = Arc::new(ConsumerCounters::default());
                counters.deliveries.set(sent - 2);
                counters.fresh.set(sent - 3);
                (q.to_string(), counters)
            })
            .collect();
        let handles = publishers.iter().map(|(_, c)| c.clone()).collect();
        (
            Tasks {
                publishers,
                consumers,
                ..Tasks::default()
            },
            handles,
        )
    }

    #[test]
    fn one_queue_counts_unlabelled_and_the_gauges_follow_the_counters() {
        let live = Arc::new(LiveMetrics::default());
        let before = scrape(&live);
        assert!(has(&before, "warren_published_total 0"), "{before}");
        assert!(!before.contains("warren_verdict_passed"), "{before}");
        let (tasks, publishers) = tasks(&[""], 100);
        publishers[0].in_flight.set(7);
        publishers[0].nacked.bump();
        publishers[0].nacked.bump();
        live.attach(tasks);
        let text = scrape(&live);
        assert!(has(&text, "warren_published_total 100"), "{text}");
        assert!(has(&text, "warren_confirmed_total 99"), "{text}");
        assert!(has(&text, "warren_nacked_total 2"), "{text}");
        assert!(has(&text, "warren_delivered_total 98"), "{text}");
        assert!(has(&text, "warren_in_flight 7"), "{text}");
        assert!(
            has(&text, "warren_missing 2"),
            "99 confirmed, 97 first deliveries"
        );
        assert!(
            has(&text, "warren_reconnects_total{role=\"consumer\"} 0"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    }

    #[test]
    fn several_queues_are_labelled_and_later_runs_add_to_earlier_ones() {
        let live = Arc::new(LiveMetrics::default());
        let (first, _) = tasks(&["q-0", "q-1"], 10);
        live.attach(first);
        live.detach();
        let (second, publishers) = tasks(&["q-0", "q-1"], 5);
        publishers[0].in_flight.set(3);
        live.attach(second);
        let text = scrape(&live);
        assert!(
            has(&text, "warren_published_total{queue=\"q-0\"} 15"),
            "{text}"
        );
        assert!(
            has(&text, "warren_published_total{queue=\"q-1\"} 15"),
            "{text}"
        );
        assert!(
            has(&text, "warren_in_flight 3"),
            "only the live run's: {text}"
        );
    }

    #[test]
    fn faults_show_while_in_effect_and_the_end_is_served_once_known() {
        let live = Arc::new(LiveMetrics::default());
        live.fault("blackhole consumers 5s", true);
        let text = scrape(&live);
        assert!(
            has(
                &text,
                "warren_fault_active{fault=\"blackhole consumers 5s\"} 1"
            ),
            "{text}"
        );
        live.fault("blackhole consumers 5s", false);
        assert!(!live.finished());
        live.finish(EndFigures {
            lost_confirmed: 3,
            duplicated: 4,
            passed: false,
        });
        assert!(live.finished());
        let text = scrape(&live);
        assert!(
            has(
                &text,
                "warren_fault_active{fault=\"blackhole consumers 5s\"} 0"
            ),
            "{text}"
        );
        assert!(has(&text, "warren_lost_confirmed 3"), "{text}");
        assert!(has(&text, "warren_duplicated 4"), "{text}");
        assert!(has(&text, "warren_verdict_passed 0"), "{text}");
        // The scrape above read the end: waiting for it returns at once.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            tokio::time::timeout(
                std::time::Duration::from_secs(5),
                live.final_figures_scraped(),
            )
            .await
            .expect("already scraped");
        });
    }

    #[test]
    fn latencies_arrive_as_seconds() {
        let live = Arc::new(LiveMetrics::default());
        let mut second = Latencies::default();
        second.record_confirm(0, 2_000_000);
        second.record_delivery(0, 0, 30_000_000);
        live.observe(&second);
        let text = scrape(&live);
        assert!(
            has(
                &text,
                "warren_confirm_latency_seconds_bucket{le=\"0.0025\"} 1"
            ),
            "{text}"
        );
        assert!(
            has(&text, "warren_e2e_latency_seconds_bucket{le=\"0.025\"} 0"),
            "{text}"
        );
        assert!(
            has(&text, "warren_e2e_latency_seconds_bucket{le=\"0.05\"} 1"),
            "{text}"
        );
        assert!(has(&text, "warren_e2e_latency_seconds_count 1"), "{text}");
    }
}
