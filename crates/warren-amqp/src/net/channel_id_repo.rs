use amqp_serde::types::{AmqpChannelId, ShortUint};

const INITIAL_BIT_MASK: u8 = 0b1000_0000;
/// warren: channel ids 1..=max, never one above it (the broker closes a connection that
/// opens one), and no panic on an id out of range or on a full set.
pub(crate) struct ChannelIdRepository {
    /// Each bit represent two states: 1: occupied, 0: free.
    /// Real id is calculated by byte postion in Vec + bit postion in byte.
    id_state: Vec<u8>,
    /// The highest id that may be handed out.
    max: AmqpChannelId,
}
impl ChannelIdRepository {
    pub fn new(channel_max: ShortUint) -> Self {
        // 0 means "no limit" in AMQP's tune
        let max = match channel_max {
            0 => u16::MAX,
            max => max,
        };
        Self {
            id_state: vec![0; 1 + (max as usize - 1) / 8],
            max,
        }
    }

    fn is_free(&self, pos: usize, mask: u8) -> bool {
        (mask & self.id_state[pos]) == 0
    }

    fn set_occupied(&mut self, pos: usize, mask: u8) {
        self.id_state[pos] |= mask;
    }

    fn set_free(&mut self, pos: usize, mask: u8) {
        self.id_state[pos] &= !mask;
    }

    /// Where `id` lives, or None when it is 0 or above the maximum.
    fn get_pos_mask(&self, id: AmqpChannelId) -> Option<(usize, u8)> {
        if id == 0 || id > self.max {
            return None;
        }
        let pos = (id as usize - 1) / 8;
        let mask = INITIAL_BIT_MASK >> ((id - 1) % 8);
        Some((pos, mask))
    }

    /// A free id, marked occupied; None when all of 1..=max are taken.
    pub fn allocate(&mut self) -> Option<AmqpChannelId> {
        for (pos, state) in self.id_state.iter().enumerate() {
            if *state == 0b1111_1111 {
                continue;
            }
            for i in 0..8u32 {
                let mask = INITIAL_BIT_MASK >> i;
                let id = pos as u32 * 8 + i + 1;
                if id > u32::from(self.max) {
                    return None;
                }
                if self.is_free(pos, mask) {
                    self.set_occupied(pos, mask);
                    return Some(id as AmqpChannelId);
                }
            }
        }
        None
    }
    /// true: OK, false: already released (or not an id of this repository)
    pub fn release(&mut self, id: AmqpChannelId) -> bool {
        let Some((pos, mask)) = self.get_pos_mask(id) else {
            return false;
        };
        if self.is_free(pos, mask) {
            // already released
            false
        } else {
            self.set_free(pos, mask);
            true
        }
    }

    /// true: OK, false: already reserved (or not an id of this repository)
    pub fn reserve(&mut self, id: AmqpChannelId) -> bool {
        let Some((pos, mask)) = self.get_pos_mask(id) else {
            return false;
        };
        if !self.is_free(pos, mask) {
            // already occupied
            false
        } else {
            self.set_occupied(pos, mask);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::ChannelIdRepository;

    #[test]
    fn test_id_allocate_and_release() {
        let channel_max = 2047;
        let mut id_repo = ChannelIdRepository::new(channel_max);

        let mut ids = HashSet::new();
        // allocate to max
        for _ in 0..channel_max {
            let id = id_repo.allocate().unwrap();
            // id should be unique
            assert!(ids.insert(id));
        }
        // free all
        for id in ids {
            assert!(id_repo.release(id));
        }
        //can allocte to max again
        let mut ids = HashSet::new();

        for _ in 0..channel_max {
            let id = id_repo.allocate().unwrap();
            // id should be unique
            assert!(ids.insert(id));
        }
    }

    #[test]
    fn test_id_reserve_and_release() {
        let channel_max = 2047;
        let mut id_repo = ChannelIdRepository::new(channel_max);

        let mut ids = vec![];
        // reserver all id: from '1' to max
        for i in 1..channel_max + 1 {
            assert!(id_repo.reserve(i));
            ids.push(i);
        }
        // free all
        for id in ids {
            assert!(id_repo.release(id));
        }
        // can allocte to max again
        for _ in 0..channel_max {
            id_repo.allocate().unwrap();
        }
    }

    #[test]
    fn test_cannot_reserve_occupied_id() {
        let channel_max = 2047;
        let mut id_repo = ChannelIdRepository::new(channel_max);

        let mut ids = HashSet::new();
        // allocate to max
        for _ in 0..channel_max {
            let id = id_repo.allocate().unwrap();
            // id should be unique
            assert!(ids.insert(id));
        }
        // failed to reserve
        for id in ids {
            assert!(!id_repo.reserve(id));
        }
    }

    #[test]
    fn test_id_allocate_and_release_with_channel_max_zero() {
        let channel_max = 0;
        let mut id_repo = ChannelIdRepository::new(channel_max);

        let mut ids = HashSet::new();
        // allocate to max
        for _ in 0..u16::MAX {
            let id = id_repo.allocate().unwrap();
            // id should be unique
            assert!(ids.insert(id));
        }
        // free all
        for id in ids {
            assert!(id_repo.release(id));
        }
        //can allocte to max again
        let mut ids = HashSet::new();

        for _ in 0..u16::MAX {
            let id = id_repo.allocate().unwrap();
            // id should be unique
            assert!(ids.insert(id));
        }
    }

    /// warren: a full repository, ids out of range and channel 0 give answers, not panics.
    #[test]
    fn test_full_and_out_of_range_ids() {
        let mut id_repo = ChannelIdRepository::new(10);
        for expected in 1..=10 {
            assert_eq!(Some(expected), id_repo.allocate());
        }
        assert_eq!(None, id_repo.allocate());
        assert!(!id_repo.reserve(11));
        assert!(!id_repo.reserve(0));
        assert!(!id_repo.release(0));
        assert!(!id_repo.release(u16::MAX));
        assert!(id_repo.release(10));
        assert_eq!(Some(10), id_repo.allocate());
        let mut unlimited = ChannelIdRepository::new(0);
        assert!(unlimited.reserve(u16::MAX));
        assert!(!unlimited.reserve(u16::MAX));
    }
}
