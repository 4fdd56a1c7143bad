//! The wire format of every message body: a fixed header (magic, version, run id, producer
//! id, sequence number, publish attempt, intended and actual send time, length, checksum)
//! followed by payload bytes up to the configured size.
//!
//! Layout (little endian):
//! ```text
//!  0  magic "WRN" + version (u8)     4  flags (u8), worker attempt (u8), attempt (u16)
//!  8  run id (u64)                  16  producer id (u32)   20  body length (u32)
//! 24  sequence number (u64)         32  intended send time (u64, ns since the Unix epoch)
//! 40  actual send time (u64, ns)    48  CRC-32 of every other byte of the body (u32)
//! 52  payload
//! ```

use crate::seeded::SplitMix;

/// Bytes before the payload.
pub const HEADER_LEN: usize = 52;
const MAGIC: [u8; 3] = *b"WRN";
/// Version 2 added the worker attempt (byte 5, 0 before).
const VERSION: u8 = 2;
const CHECKSUM_AT: usize = 48;

/// What the header of one message says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Identifies the run: bodies of other runs are foreign.
    pub run_id: u64,
    pub producer: u32,
    pub seq: u64,
    /// 0 for the first publish of a sequence number, then 1, 2... for republished copies.
    pub attempt: u16,
    /// The attempt of the worker that published it (0 in a run of one process): a
    /// retried worker's messages are told apart from an earlier attempt's.
    pub worker_attempt: u8,
    /// When the message was due under the target rate (ns since the Unix epoch).
    pub intended_ns: u64,
    /// When it was actually handed to the client (ns since the Unix epoch).
    pub sent_ns: u64,
}

/// Why a body could not be read as one of this run's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Not a warren message at all, or another format version.
    Foreign,
    /// A warren message of another run.
    OtherRun,
    /// A warren message whose bytes were changed or cut (checksum or length mismatch).
    Corrupted,
}

/// Writes a header into `body` (which already holds the payload after [`HEADER_LEN`]) and
/// seals it with the checksum. The body's length is the message size.
pub fn encode(body: &mut [u8], header: &Header) {
    debug_assert!(body.len() >= HEADER_LEN);
    body[0..3].copy_from_slice(&MAGIC);
    body[3] = VERSION;
    body[4] = 0;
    body[5] = header.worker_attempt;
    body[6..8].copy_from_slice(&header.attempt.to_le_bytes());
    body[8..16].copy_from_slice(&header.run_id.to_le_bytes());
    body[16..20].copy_from_slice(&header.producer.to_le_bytes());
    let length = body.len() as u32;
    body[20..24].copy_from_slice(&length.to_le_bytes());
    body[24..32].copy_from_slice(&header.seq.to_le_bytes());
    body[32..40].copy_from_slice(&header.intended_ns.to_le_bytes());
    body[40..48].copy_from_slice(&header.sent_ns.to_le_bytes());
    let checksum = checksum(body);
    body[CHECKSUM_AT..CHECKSUM_AT + 4].copy_from_slice(&checksum.to_le_bytes());
}

/// Reads and checks a body of run `run_id`.
///
/// # Errors
/// [`DecodeError`] saying whether the body is foreign, of another run, or corrupted.
pub fn decode(body: &[u8], run_id: u64) -> Result<Header, DecodeError> {
    if body.len() < 4 || body[0..3] != MAGIC || body[3] != VERSION {
        return Err(DecodeError::Foreign);
    }
    if body.len() < HEADER_LEN {
        return Err(DecodeError::Corrupted);
    }
    let u64_at = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().expect("8 bytes"));
    let u32_at = |at: usize| u32::from_le_bytes(body[at..at + 4].try_into().expect("4 bytes"));
    let stored = u32_at(CHECKSUM_AT);
    if u32_at(20) as usize != body.len() || checksum(body) != stored {
        return Err(DecodeError::Corrupted);
    }
    if u64_at(8) != run_id {
        return Err(DecodeError::OtherRun);
    }
    Ok(Header {
        run_id,
        producer: u32_at(16),
        seq: u64_at(24),
        attempt: u16::from_le_bytes([body[6], body[7]]),
        worker_attempt: body[5],
        intended_ns: u64_at(32),
        sent_ns: u64_at(40),
    })
}

/// CRC-32 of the body without its checksum field.
fn checksum(body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&body[..CHECKSUM_AT]);
    hasher.update(&body[CHECKSUM_AT + 4..]);
    hasher.finalize()
}

/// Fills a payload region with a fixed, non-repeating-looking pattern (made once per
/// buffer; only the header changes from message to message).
pub fn fill_payload(payload: &mut [u8], seed: u64) {
    let mut generator = SplitMix::new(seed);
    for chunk in payload.chunks_mut(8) {
        let bytes = generator.next().to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            run_id: 0xDEAD_BEEF,
            producer: 3,
            seq: 123_456,
            attempt: 2,
            worker_attempt: 1,
            intended_ns: 1_000,
            sent_ns: 2_000,
        }
    }

    fn body(len: usize) -> Vec<u8> {
        let mut body = vec![0u8; len];
        fill_payload(&mut body[HEADER_LEN..], 7);
        encode(&mut body, &header());
        body
    }

    #[test]
    fn a_header_round_trips() {
        assert_eq!(decode(&body(100), 0xDEAD_BEEF), Ok(header()));
        assert_eq!(decode(&body(HEADER_LEN), 0xDEAD_BEEF), Ok(header()));
    }

    #[test]
    fn any_changed_byte_is_corruption() {
        let original = body(100);
        for at in 4..original.len() {
            let mut changed = original.clone();
            changed[at] ^= 0x40;
            assert_eq!(
                decode(&changed, 0xDEAD_BEEF),
                Err(DecodeError::Corrupted),
                "byte {at}"
            );
        }
        assert_eq!(
            decode(&original[..99], 0xDEAD_BEEF),
            Err(DecodeError::Corrupted),
            "cut short"
        );
    }

    #[test]
    fn other_runs_and_other_bodies_are_told_apart() {
        assert_eq!(decode(&body(100), 1), Err(DecodeError::OtherRun));
        assert_eq!(decode(b"hello world", 1), Err(DecodeError::Foreign));
        assert_eq!(decode(b"", 1), Err(DecodeError::Foreign));
    }
}
