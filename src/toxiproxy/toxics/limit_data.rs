//! limit_data: the connection closes once `bytes` bytes went through in the toxic's
//! direction since the toxic took effect on it.

/// How much of a chunk of `len` bytes may still pass, and whether the limit is then reached.
pub fn allowance(limit: u64, passed: u64, len: usize) -> (usize, bool) {
    let left = limit.saturating_sub(passed);
    if (len as u64) < left {
        (len, false)
    } else {
        (left as usize, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_chunk_is_cut_at_the_limit() {
        assert_eq!(allowance(100, 0, 40), (40, false));
        assert_eq!(allowance(100, 80, 40), (20, true));
        assert_eq!(allowance(100, 100, 40), (0, true));
        assert_eq!(allowance(100, 60, 40), (40, true));
    }
}
