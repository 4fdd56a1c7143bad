//! HdrHistogram's own formats: latency.hlog, the interval log (one histogram per second and
//! per latency, tagged) that HistogramLogProcessor and HistogramLogAnalyzer read, and the
//! percentile distributions (.hgrm) HdrHistogram prints.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use hdrhistogram::Histogram;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};

use crate::metrics::series::Series;

/// The tags of latency.hlog, with what they measure.
pub const TAGS: [(&str, &str); 3] = [
    ("confirm", "publish to confirm"),
    ("e2e", "end to end from the intended send time"),
    ("e2e_sent", "end to end from the actual send time"),
];

/// latency.hlog: every second's histograms, values in microseconds. `origin_unix_ns` is the
/// clock origin the seconds count from.
///
/// # Errors
/// A message when a histogram cannot be serialized.
pub fn interval_log(series: &Series, origin_unix_ns: u64) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    let start = UNIX_EPOCH + Duration::from_nanos(origin_unix_ns);
    {
        let mut builder = IntervalLogWriterBuilder::new();
        builder.add_comment("warren latency log: values in microseconds");
        for (tag, meaning) in TAGS {
            builder.add_comment(&format!("Tag={tag}: {meaning}"));
        }
        builder
            .with_start_time(start)
            .with_base_time(start)
            .with_max_value_divisor(1000.0);
        let mut writer = builder
            .begin_log_with(&mut out, &mut serializer)
            .map_err(|e| e.to_string())?;
        for (second, _, latencies) in series.seconds() {
            let at = Duration::from_secs(u64::from(second));
            for (histogram, (tag, _)) in [
                &latencies.confirm_us,
                &latencies.e2e_intended_us,
                &latencies.e2e_sent_us,
            ]
            .into_iter()
            .zip(TAGS)
            {
                if histogram.is_empty() {
                    continue;
                }
                writer
                    .write_histogram(histogram, at, Duration::from_secs(1), Tag::new(tag))
                    .map_err(|e| format!("{e:?}"))?;
            }
        }
    }
    Ok(out)
}

/// The percentile distribution HdrHistogram prints (`outputPercentileDistribution`), values
/// in milliseconds, for a histogram recorded in microseconds.
pub fn percentile_distribution(histogram: &Histogram<u64>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    if histogram.is_empty() {
        let _ = writeln!(
            out,
            "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
            0.0, 0.0
        );
        let _ = writeln!(
            out,
            "#[Max     = {:>12.3}, Total count    = {:>12}]",
            0.0, 0
        );
        return out;
    }
    let ms = |us: u64| us as f64 / 1000.0;
    let mut total = 0;
    for v in histogram.iter_quantiles(5) {
        let quantile = v.quantile_iterated_to();
        total += v.count_since_last_iteration();
        if quantile < 1.0 {
            let _ = writeln!(
                out,
                "{:>12.3} {:.12} {:>10} {:>14.2}",
                ms(v.value_iterated_to()),
                quantile,
                total,
                1.0 / (1.0 - quantile)
            );
        } else {
            let _ = writeln!(
                out,
                "{:>12.3} {:.12} {:>10}",
                ms(v.value_iterated_to()),
                quantile,
                total
            );
        }
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        histogram.mean() / 1000.0,
        histogram.stdev() / 1000.0
    );
    let _ = writeln!(
        out,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        ms(histogram.max()),
        histogram.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        histogram.buckets(),
        histogram.distinct_values()
    );
    out
}
