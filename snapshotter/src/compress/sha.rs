//! SHA-256 with a state that can be saved and resumed ([`Midstate`]): the DiffID and blob
//! digest of a re-exported layer continue from the state saved after the last member that is
//! unchanged, instead of hashing the unchanged prefix again.
//!
//! The compression function is `sha2`'s (`compress256`, SHA-NI or AVX2 when the CPU has them,
//! chosen at run time as for `sha2::Sha256`); the block buffering and padding are `block-buffer`'s (through
//! `sha2::digest`), the same code `sha2::Sha256` uses, so both give the same digests at the same speed (tested
//! against `sha2::Sha256`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::digest::block_buffer::{BlockBuffer, Eager};
use sha2::digest::typenum::U64;

use crate::digest::Digest;

/// SHA-256's initial hash value (FIPS 180-4 §5.3.3).
const H0: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// The state of a SHA-256 computation after `len` bytes: the chaining value after the whole
/// 64-byte blocks, and the bytes of the partial block that follows them.
///
/// Serialized as `{"len":…,"state":"<64 hex>","tail":"<hex, up to 126 digits>"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Midstate {
    /// Bytes hashed so far.
    pub len: u64,
    state: [u32; 8],
    /// The partial block: `len % 64` bytes, then zeros.
    tail: [u8; 64],
}

impl Midstate {
    /// The state after no bytes at all.
    pub fn initial() -> Self {
        Self {
            len: 0,
            state: H0,
            tail: [0; 64],
        }
    }

    fn tail(&self) -> &[u8] {
        &self.tail[..(self.len % 64) as usize]
    }
}

#[derive(Serialize, Deserialize)]
struct MidstateText {
    len: u64,
    state: String,
    tail: String,
}

impl Serialize for Midstate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut state = [0u8; 32];
        for (out, word) in state.chunks_exact_mut(4).zip(self.state) {
            out.copy_from_slice(&word.to_be_bytes());
        }
        MidstateText {
            len: self.len,
            state: hex::encode(state),
            tail: hex::encode(self.tail()),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Midstate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let text = MidstateText::deserialize(d)?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(&text.state, &mut bytes).map_err(D::Error::custom)?;
        let mut state = [0u32; 8];
        for (word, b) in state.iter_mut().zip(bytes.chunks_exact(4)) {
            *word = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        }
        let bytes = hex::decode(&text.tail).map_err(D::Error::custom)?;
        if bytes.len() as u64 != text.len % 64 {
            return Err(D::Error::custom(
                "SHA-256 midstate: the tail is not the partial block of `len` bytes",
            ));
        }
        let mut tail = [0u8; 64];
        tail[..bytes.len()].copy_from_slice(&bytes);
        Ok(Self {
            len: text.len,
            state,
            tail,
        })
    }
}

/// A SHA-256 computation that can be saved ([`Hasher::midstate`]) and resumed
/// ([`Hasher::resume`]).
#[derive(Clone)]
pub(crate) struct Hasher {
    state: [u32; 8],
    buffer: BlockBuffer<U64, Eager>,
    len: u64,
}

impl Hasher {
    pub(crate) fn new() -> Self {
        Self::resume(&Midstate::initial())
    }

    /// Continue from a saved state.
    pub(crate) fn resume(midstate: &Midstate) -> Self {
        Self {
            state: midstate.state,
            buffer: BlockBuffer::new(midstate.tail()),
            len: midstate.len,
        }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        let state = &mut self.state;
        self.buffer
            .digest_blocks(bytes, |blocks| sha2::compress256(state, blocks));
        self.len += bytes.len() as u64;
    }

    /// Bytes hashed so far.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    pub(crate) fn midstate(&self) -> Midstate {
        let mut tail = [0u8; 64];
        let data = self.buffer.get_data();
        tail[..data.len()].copy_from_slice(data);
        Midstate {
            len: self.len,
            state: self.state,
            tail,
        }
    }

    pub(crate) fn finish(mut self) -> Digest {
        let state = &mut self.state;
        self.buffer.len64_padding_be(self.len * 8, |block| {
            sha2::compress256(state, std::slice::from_ref(block))
        });
        let mut out = [0u8; 32];
        for (bytes, word) in out.chunks_exact_mut(4).zip(self.state) {
            bytes.copy_from_slice(&word.to_be_bytes());
        }
        Digest::from_bytes(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn matches_sha2_for_every_split_and_length() {
        for len in [0usize, 1, 55, 56, 63, 64, 65, 127, 128, 1000, 4096 + 17] {
            let data = bytes(len);
            let want = Digest::of(&data);
            let mut whole = Hasher::new();
            whole.update(&data);
            assert_eq!(whole.len(), len as u64);
            assert_eq!(whole.finish(), want, "len {len}");
            for cut in [0, 1.min(len), len / 3, len / 2, len.saturating_sub(1), len] {
                let mut first = Hasher::new();
                first.update(&data[..cut]);
                // Through JSON, as a member index stores it.
                let json = serde_json::to_string(&first.midstate()).unwrap();
                let saved: Midstate = serde_json::from_str(&json).unwrap();
                assert_eq!(saved.len, cut as u64);
                let mut rest = Hasher::resume(&saved);
                rest.update(&data[cut..]);
                assert_eq!(rest.finish(), want, "len {len} cut {cut}");
            }
        }
    }

    #[test]
    fn refuses_a_tail_that_does_not_fit_the_length() {
        let bad = r#"{"len":70,"state":"6a09e667bb67ae853c6ef372a54ff53a510e527f9b05688c1f83d9ab5be0cd19","tail":"00"}"#;
        assert!(serde_json::from_str::<Midstate>(bad).is_err());
    }
}
