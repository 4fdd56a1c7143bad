//! latency: every chunk waits `latency` ± `jitter` ms after it arrived.

use std::time::Duration;

use super::Dice;

/// The delay of one chunk.
pub fn delay(latency_ms: u64, jitter_ms: u64, dice: &mut Dice) -> Duration {
    let millis = latency_ms as i64 + dice.around(jitter_ms);
    Duration::from_millis(millis.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_within_the_jitter() {
        let mut dice = Dice::new(3);
        assert_eq!(delay(100, 0, &mut dice), Duration::from_millis(100));
        for _ in 0..1000 {
            let d = delay(100, 10, &mut dice).as_millis();
            assert!((90..=110).contains(&d), "{d}");
        }
        assert_eq!(
            delay(5, 50, &mut Dice::new(1)).max(Duration::ZERO),
            delay(5, 50, &mut Dice::new(1))
        );
    }
}
