//! `X-Request-Id`: keep a caller's well-formed id, otherwise make one.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::hex::write_hex;

/// The longest incoming id pulse keeps.
pub const MAX_LEN: usize = 128;

/// Whether an incoming id may be echoed back and logged.
///
/// SECURITY: only 1 to 128 visible ASCII characters pass. An id is copied into
/// every log line and response, so an overlong one would inflate both, and a
/// control or non-ASCII byte could forge log lines in text format.
pub fn is_acceptable(id: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&id.len()) && id.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// Makes ids that are unique within a process and unlikely to collide across
/// processes: a random 64-bit prefix per process, then a counter scrambled by
/// a bijection, so ids neither repeat nor reveal the request count.
pub struct IdGenerator {
    prefix: u64,
    /// The prefix in hex: the first half of every request id.
    prefix_hex: [u8; 16],
    key: u64,
    counter: AtomicU64,
}

impl Default for IdGenerator {
    fn default() -> Self {
        // RandomState is seeded from the OS, which saves a dependency on rand.
        let random = RandomState::new();
        let prefix = random.hash_one(0x70756c7365_u64);
        let mut prefix_hex = [0; 16];
        write_hex(&mut prefix_hex, &prefix.to_be_bytes());
        IdGenerator {
            prefix,
            prefix_hex,
            key: random.hash_one(0x6b6579_u64),
            counter: AtomicU64::new(0),
        }
    }
}

impl IdGenerator {
    /// 64 bits for trace and span ids: the next count, scrambled by a
    /// bijection keyed per process, so values do not repeat within a
    /// process, differ between processes, and every bit varies (trace-id
    /// ratio samplers read the low bits).
    pub fn random_u64(&self) -> u64 {
        let count = self.counter.fetch_add(1, Ordering::Relaxed);
        splitmix64(count ^ self.key) ^ self.prefix
    }

    /// A new 32-character lowercase hex id.
    pub fn next(&self) -> [u8; 32] {
        let count = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut text = [0u8; 32];
        text[..16].copy_from_slice(&self.prefix_hex);
        write_hex(&mut text[16..], &splitmix64(count ^ self.key).to_be_bytes());
        text
    }
}

/// A bijective mixer (SplitMix64's finaliser): distinct inputs, distinct outputs.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn accepts_printable_ids_up_to_the_limit() {
        assert!(is_acceptable(b"abc-123_DEF.456:x/y"));
        assert!(is_acceptable(&[b'a'; MAX_LEN]));
        assert!(!is_acceptable(&[b'a'; MAX_LEN + 1]));
        assert!(!is_acceptable(b""));
        assert!(!is_acceptable(b"has space"));
        assert!(!is_acceptable(b"tab\there"));
        assert!(!is_acceptable("caf\u{e9}".as_bytes()));
    }

    #[test]
    fn generated_ids_are_unique_hex_and_acceptable() {
        let ids = IdGenerator::default();
        let made: HashSet<_> = (0..10_000).map(|_| ids.next()).collect();
        assert_eq!(made.len(), 10_000);
        for id in made.iter().take(10) {
            assert!(id.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
            assert!(is_acceptable(id));
        }
    }
}
