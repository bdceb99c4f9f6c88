//! The hasher of the compile-time and index maps (rule texts, literal prefixes).

use std::hash::{BuildHasherDefault, Hasher};

/// The hasher of the compile-time maps (rule texts, literal prefixes): a multiply-fold over
/// 8-byte words, several times faster than SipHash on these short keys. Not randomly seeded:
/// the keys are the operator's own rules, not attacker-chosen input.
#[derive(Clone, Copy)]
pub(crate) struct FastHasher(u64);

/// `BuildHasher` for [`FastHasher`].
pub(crate) type FastBuild = BuildHasherDefault<FastHasher>;

impl Default for FastHasher {
    fn default() -> FastHasher {
        FastHasher(0x243F_6A88_85A3_08D3)
    }
}

impl FastHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        let full = u128::from(self.0 ^ word) * u128::from(0x2D35_8DCC_AA6C_78A5u64);
        self.0 = (full as u64) ^ ((full >> 64) as u64);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
        let tail = chunks.remainder();
        if !tail.is_empty() {
            let mut word = [0u8; 8];
            word[..tail.len()].copy_from_slice(tail);
            // The tail's length goes into the top byte, so `ab` and `ab\0` differ.
            self.mix(u64::from_le_bytes(word) ^ ((tail.len() as u64) << 56));
        }
    }

    #[inline]
    fn write_u8(&mut self, value: u8) {
        self.mix(u64::from(value));
    }

    #[inline]
    fn write_u32(&mut self, value: u32) {
        self.mix(u64::from(value));
    }

    #[inline]
    fn write_u64(&mut self, value: u64) {
        self.mix(value);
    }

    #[inline]
    fn write_usize(&mut self, value: usize) {
        self.mix(value as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}
