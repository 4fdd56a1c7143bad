//! Activity over time, kept as the gaps in it: each task notes every pause longer than
//! [`GAP`] between two events (confirms, deliveries). From the gaps of all tasks come
//! recovery times (the first event after a fault ended) and the longest window in which
//! no task saw anything.

use serde::{Deserialize, Serialize};

/// A pause shorter than this is not a gap (nanoseconds).
pub const GAP: u64 = 200_000_000;

/// One task's activity: first and last event, and the gaps between.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    /// How many events.
    pub events: u64,
    /// Clock readings (ns) of the first and last events.
    pub first_ns: u64,
    pub last_ns: u64,
    /// Pauses longer than [`GAP`]: (last event before, first event after).
    pub gaps: Vec<(u64, u64)>,
}

impl Activity {
    /// Notes an event at `now_ns` (readings never go back).
    #[inline]
    pub fn note(&mut self, now_ns: u64) {
        if self.events == 0 {
            self.first_ns = now_ns;
        } else if now_ns.saturating_sub(self.last_ns) > GAP {
            self.gaps.push((self.last_ns, now_ns));
        }
        self.last_ns = now_ns;
        self.events += 1;
    }

    /// The first event at or after `at_ns`, if any (within [`GAP`] when activity was going on).
    pub fn first_after(&self, at_ns: u64) -> Option<u64> {
        if self.events == 0 || at_ns > self.last_ns {
            return None;
        }
        if at_ns <= self.first_ns {
            return Some(self.first_ns);
        }
        match self
            .gaps
            .iter()
            .find(|(before, after)| *before < at_ns && at_ns < *after)
        {
            Some((_, after)) => Some(*after),
            None => Some(at_ns),
        }
    }
}

/// The first event of any task at or after `at_ns`.
pub fn first_after(tasks: &[Activity], at_ns: u64) -> Option<u64> {
    tasks.iter().filter_map(|a| a.first_after(at_ns)).min()
}

/// The longest interval in which no task had an event, between the earliest first event
/// and the latest last one: (start, end) in clock readings.
pub fn longest_silence(tasks: &[Activity]) -> Option<(u64, u64)> {
    let active: Vec<&Activity> = tasks.iter().filter(|a| a.events > 0).collect();
    let start = active.iter().map(|a| a.first_ns).min()?;
    let end = active.iter().map(|a| a.last_ns).max()?;
    // Busy intervals of every task, merged; the silences are what lies between.
    let mut busy: Vec<(u64, u64)> = Vec::new();
    for activity in &active {
        let mut from = activity.first_ns;
        for (before, after) in &activity.gaps {
            busy.push((from, *before));
            from = *after;
        }
        busy.push((from, activity.last_ns));
    }
    busy.sort_unstable();
    let mut longest: Option<(u64, u64)> = None;
    let mut covered = start;
    for (from, to) in busy {
        if from > covered && longest.is_none_or(|(a, b)| from - covered > b - a) {
            longest = Some((covered, from));
        }
        covered = covered.max(to);
    }
    debug_assert!(covered >= end);
    longest
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn activity(events: &[u64]) -> Activity {
        let mut a = Activity::default();
        for &t in events {
            a.note(t * MS);
        }
        a
    }

    #[test]
    fn gaps_are_kept_and_short_pauses_are_not() {
        let a = activity(&[1, 50, 100, 900, 950]);
        assert_eq!(a.gaps, vec![(100 * MS, 900 * MS)]);
        assert_eq!(
            a.first_after(500 * MS),
            Some(900 * MS),
            "inside a gap: the first event after it"
        );
        assert_eq!(
            a.first_after(60 * MS),
            Some(60 * MS),
            "while active: at once"
        );
        assert_eq!(
            a.first_after(960 * MS),
            None,
            "nothing after the last event"
        );
    }

    #[test]
    fn the_longest_silence_is_when_no_task_was_active() {
        let a = activity(&[0, 100, 1_000, 1_100]);
        let b = activity(&[0, 100, 600, 700, 1_500]);
        // a is silent 100..1000, b 100..600 and 700..1500: together silent 100..600 and 700..1000.
        assert_eq!(
            longest_silence(&[a.clone(), b.clone()]),
            Some((100 * MS, 600 * MS))
        );
        assert_eq!(first_after(&[a, b], 650 * MS), Some(650 * MS));
        assert_eq!(longest_silence(&[Activity::default()]), None);
    }
}
