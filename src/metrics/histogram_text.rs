//! A histogram as text in serialized files: HdrHistogram's V2 compressed encoding (the
//! one its Java, C, Go and Python ports read), in base64.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{
    Deserializer as HdrDeserializer, Serializer as _, V2DeflateSerializer,
};
use serde::{Deserialize, Deserializer, Serializer};

/// Writes `histogram` as base64 of its V2 compressed encoding.
///
/// # Errors
/// When the histogram cannot be encoded (it always can, for warren's bounds).
pub fn serialize<S: Serializer>(
    histogram: &Histogram<u64>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(histogram, &mut bytes)
        .map_err(|e| serde::ser::Error::custom(format!("encoding a histogram: {e:?}")))?;
    serializer.serialize_str(&STANDARD.encode(bytes))
}

/// Reads what [`serialize`] wrote.
///
/// # Errors
/// Text that is not base64 of an encoded histogram.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Histogram<u64>, D::Error> {
    let text = String::deserialize(deserializer)?;
    let bytes = STANDARD
        .decode(text.as_bytes())
        .map_err(|e| serde::de::Error::custom(format!("a histogram that is not base64: {e}")))?;
    let mut histogram: Histogram<u64> = HdrDeserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| {
        serde::de::Error::custom(format!("a histogram that does not decode: {e:?}"))
    })?;
    // Histograms add only with the same bounds: widen what was read to warren's own.
    if histogram.high() < super::MAX_US {
        let mut wide = Histogram::new_with_bounds(1, super::MAX_US, histogram.sigfig())
            .map_err(|e| serde::de::Error::custom(format!("{e:?}")))?;
        wide.add(&histogram)
            .map_err(|e| serde::de::Error::custom(format!("{e:?}")))?;
        histogram = wide;
    }
    Ok(histogram)
}

#[cfg(test)]
mod tests {
    use crate::metrics::Latencies;

    #[test]
    fn histograms_come_back_exactly() {
        let mut latencies = Latencies::default();
        for us in [1u64, 250, 1_000, 3_000_000, 90_000_000] {
            latencies.record_delivery(0, us * 1_000, us * 1_000 + us * 1_000);
            latencies.record_confirm(0, us * 1_000);
        }
        let text = serde_json::to_string(&latencies).unwrap();
        let back: Latencies = serde_json::from_str(&text).unwrap();
        assert_eq!(back.e2e_intended_us, latencies.e2e_intended_us);
        assert_eq!(back.confirm_us, latencies.confirm_us);
        let mut sum = back.clone();
        sum.add(&latencies);
        assert_eq!(sum.confirm_us.len(), 10);
    }
}
