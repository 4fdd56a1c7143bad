//! A set of sequence numbers built for how they arrive: mostly in order. An in-order insert
//! extends a pending run in O(1); anything else goes to a roaring bitmap. Memory stays
//! about a bit per message or far less (runs compress), and the set converts to a bitmap
//! for the set algebra of the verdict.

use roaring::RoaringBitmap;

/// Sequence numbers of one producer, as a set.
#[derive(Debug, Clone, Default)]
pub struct SeqSet {
    /// Everything not in the pending run.
    bitmap: RoaringBitmap,
    /// The pending run `run_start..run_end`, not yet in the bitmap.
    run_start: u32,
    run_end: u32,
    /// The largest element of `bitmap`, if any: the O(1) path is valid only above it.
    bitmap_max: Option<u32>,
}

impl SeqSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `seq`; true when it was not in the set yet.
    #[inline]
    pub fn insert(&mut self, seq: u32) -> bool {
        if seq == self.run_end && self.bitmap_max.is_none_or(|max| seq > max) && seq != u32::MAX {
            self.run_end += 1;
            return true;
        }
        self.insert_slow(seq)
    }

    #[cold]
    fn insert_slow(&mut self, seq: u32) -> bool {
        if (self.run_start..self.run_end).contains(&seq) {
            return false;
        }
        self.flush();
        let fresh = self.bitmap.insert(seq);
        self.bitmap_max = Some(self.bitmap_max.map_or(seq, |max| max.max(seq)));
        let next = seq.saturating_add(1);
        self.run_start = next;
        self.run_end = next;
        fresh
    }

    fn flush(&mut self) {
        if self.run_start < self.run_end {
            self.bitmap.insert_range(self.run_start..self.run_end);
            let last = self.run_end - 1;
            self.bitmap_max = Some(self.bitmap_max.map_or(last, |max| max.max(last)));
        }
        self.run_start = self.run_end;
    }

    /// True when `seq` is in the set.
    pub fn contains(&self, seq: u32) -> bool {
        (self.run_start..self.run_end).contains(&seq) || self.bitmap.contains(seq)
    }

    /// Number of elements.
    pub fn len(&self) -> u64 {
        self.bitmap.len() + u64::from(self.run_end - self.run_start)
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The set as a roaring bitmap (run-compressed), for set algebra.
    pub fn to_bitmap(&self) -> RoaringBitmap {
        let mut bitmap = self.bitmap.clone();
        if self.run_start < self.run_end {
            bitmap.insert_range(self.run_start..self.run_end);
        }
        bitmap.optimize();
        bitmap
    }

    /// The set holding exactly `bitmap`'s elements.
    pub fn from_bitmap(bitmap: RoaringBitmap) -> Self {
        let bitmap_max = bitmap.max();
        let next = bitmap_max.map_or(0, |max| max.saturating_add(1));
        Self {
            bitmap,
            run_start: next,
            run_end: next,
            bitmap_max,
        }
    }

    /// Bytes of memory used, roughly (for the ledger's footprint).
    pub fn memory_bytes(&self) -> u64 {
        self.bitmap.serialized_size() as u64 + std::mem::size_of::<Self>() as u64
    }
}

/// A set is written as base64 of the Roaring bitmap portable format (the one every
/// Roaring implementation reads), so results files stay small for runs of messages.
impl serde::Serialize for SeqSet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use base64::Engine;
        let bitmap = self.to_bitmap();
        let mut bytes = Vec::with_capacity(bitmap.serialized_size());
        bitmap
            .serialize_into(&mut bytes)
            .map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }
}

impl<'de> serde::Deserialize<'de> for SeqSet {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use base64::Engine;
        let text = <String as serde::Deserialize>::deserialize(deserializer)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(|e| serde::de::Error::custom(format!("a set that is not base64: {e}")))?;
        let bitmap = RoaringBitmap::deserialize_from(bytes.as_slice())
            .map_err(|e| serde::de::Error::custom(format!("a set that does not decode: {e}")))?;
        Ok(Self::from_bitmap(bitmap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn sets_come_back_from_text_and_keep_growing() {
        let mut set = SeqSet::new();
        for seq in (0..1_000).chain([5_000, 7, 70_000]) {
            set.insert(seq);
        }
        let text = serde_json::to_string(&set).unwrap();
        let mut back: SeqSet = serde_json::from_str(&text).unwrap();
        assert_eq!(back.to_bitmap(), set.to_bitmap());
        assert!(back.insert(70_001) && !back.insert(70_000) && !back.insert(3));
        assert_eq!(back.len(), 1_003);
        assert!(serde_json::from_str::<SeqSet>("\"not base64!\"").is_err());
    }

    #[test]
    fn behaves_like_a_set_under_mixed_orders() {
        for seed in 0..20u64 {
            let mut state = crate::seeded::SplitMix::new(seed);
            let mut set = SeqSet::new();
            let mut model = BTreeSet::new();
            let mut cursor = 0u32;
            for _ in 0..5_000 {
                let seq = match state.next() % 10 {
                    0 => (state.next() % 4000) as u32, // anywhere (duplicates, late ones)
                    1 => cursor.saturating_sub(3),     // a little back
                    _ => {
                        cursor += 1;
                        cursor
                    }
                };
                assert_eq!(set.insert(seq), model.insert(seq), "seed {seed}, seq {seq}");
            }
            assert_eq!(set.len(), model.len() as u64);
            let bitmap = set.to_bitmap();
            assert!(bitmap.iter().eq(model.iter().copied()));
            for probe in 0..4100 {
                assert_eq!(set.contains(probe), model.contains(&probe));
            }
        }
    }

    #[test]
    fn ten_million_in_order_take_almost_no_memory() {
        let mut set = SeqSet::new();
        for seq in 0..10_000_000 {
            assert!(set.insert(seq));
        }
        assert_eq!(set.len(), 10_000_000);
        assert!(set.memory_bytes() < 1_000, "{} bytes", set.memory_bytes());
        assert!(set.to_bitmap().serialized_size() < 100_000);
    }

    #[test]
    fn a_gap_is_kept_and_filled_later() {
        let mut set = SeqSet::new();
        for seq in (0..10).chain(11..20) {
            assert!(set.insert(seq));
        }
        assert!(!set.contains(10));
        assert!(set.insert(10));
        assert!(!set.insert(10));
        assert!(!set.insert(19));
        assert_eq!(set.len(), 20);
        assert!(set.insert(20), "in order again after the gap");
    }
}
