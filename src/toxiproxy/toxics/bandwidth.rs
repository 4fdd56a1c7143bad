//! bandwidth: at most `rate` KB/s (1 KB = 1000 bytes, as Toxiproxy counts), sent in pieces
//! of a tenth of a second so a removed toxic takes effect promptly.

use std::time::Duration;

/// How long a piece of `bytes` bytes takes at `rate_kbps`.
pub fn time_for(bytes: usize, rate_kbps: u64) -> Duration {
    if rate_kbps == 0 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(bytes as f64 / (rate_kbps as f64 * 1000.0))
}

/// The size of one piece: a tenth of a second's worth, at least one byte.
pub fn piece(rate_kbps: u64) -> usize {
    ((rate_kbps * 100) as usize).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_take_a_tenth_of_a_second() {
        assert_eq!(piece(10), 1000);
        assert_eq!(time_for(piece(10), 10), Duration::from_millis(100));
        assert_eq!(
            time_for(5000, 0),
            Duration::ZERO,
            "rate 0 means unlimited, as in Toxiproxy"
        );
    }

    #[test]
    fn a_small_piece_takes_its_own_time_to_the_microsecond() {
        assert_eq!(time_for(100, 1000), Duration::from_micros(100));
        assert_eq!(time_for(1, 1000), Duration::from_micros(1));
    }
}
