//! slicer: data is cut into pieces of `average_size` ± `size_variation` bytes, sent
//! `delay` µs apart.

use super::Dice;

/// The sizes of the pieces of a chunk of `len` bytes.
pub fn pieces(len: usize, average_size: u64, size_variation: u64, dice: &mut Dice) -> Vec<usize> {
    let mut out = Vec::new();
    let mut left = len;
    while left > 0 {
        let size = (average_size as i64 + dice.around(size_variation)).max(1) as usize;
        let size = size.min(left);
        out.push(size);
        left -= size;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_the_chunk_within_the_variation() {
        let mut dice = Dice::new(9);
        let sizes = pieces(1000, 64, 8, &mut dice);
        assert_eq!(sizes.iter().sum::<usize>(), 1000);
        assert!(
            sizes[..sizes.len() - 1]
                .iter()
                .all(|s| (56..=72).contains(s)),
            "{sizes:?}"
        );
        assert_eq!(pieces(0, 10, 0, &mut dice), Vec::<usize>::new());
        assert_eq!(
            pieces(3, 0, 0, &mut dice),
            vec![1, 1, 1],
            "at least one byte per piece"
        );
    }
}
