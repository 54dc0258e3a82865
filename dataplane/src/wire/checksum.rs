//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! All values are host-order `u16`s that hold the big-endian 16-bit words of the packet
//! (what `u16::from_be_bytes` gives), so they compare directly with header fields read
//! through a view. Nothing here panics.
//!
//! - [`sum`] is the folded ones' complement sum, not complemented: a partial sum that
//!   [`combine`] can add to others (a pseudo-header, a header split across buffers).
//! - [`checksum`] is the complemented sum: the value to store in a checksum field that was
//!   zero while summing.
//! - [`update_u16`] and [`update_u32`] patch a stored checksum after a field changed
//!   (RFC 1624 equation 3), for TTL decrement and ECN marking without a full pass.

/// Folds a 64-bit ones' complement accumulator (a sum of 16-bit words, say) to 16 bits
/// with end-around carry.
#[inline]
pub const fn fold(acc: u64) -> u16 {
    // Each half added to the other with its carry put back: an add and an add-with-carry
    // per step. When the add carries, its sum is at most 2^32 - 2 (or 2^16 - 2), so
    // putting the carry back cannot carry again.
    let (lo, carry) = (acc as u32).overflowing_add((acc >> 32) as u32);
    let acc = lo + carry as u32;
    let (lo, carry) = (acc as u16).overflowing_add((acc >> 16) as u16);
    lo + carry as u16
}

/// Ones' complement addition of one 64-bit lane group into the accumulator.
#[inline]
const fn add(acc: u64, word: u64) -> u64 {
    let (sum, carry) = acc.overflowing_add(word);
    // `sum <= u64::MAX - 1` whenever `carry` is set, so this cannot overflow.
    sum + carry as u64
}

/// Folded ones' complement sum of `data` as big-endian 16-bit words, not complemented.
///
/// An odd trailing byte is padded with a zero byte (RFC 1071). A region that holds a
/// correct checksum sums to `0xFFFF`.
#[inline]
pub fn sum(data: &[u8]) -> u16 {
    // RFC 1071 section 2(B): the sum is byte-order independent, so add native-endian 64-bit
    // words (four 16-bit lanes at once, end-around carry) and swap once at the end.
    let mut acc = 0u64;
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        acc = add(acc, u64::from_ne_bytes(word));
    }
    // Lane position inside the accumulator does not matter to the folded sum, so the tail
    // goes in as 4-, 2- and 1-byte pieces (no variable-length copy for short headers).
    let mut rest = chunks.remainder();
    if let [a, b, c, d, tail @ ..] = rest {
        acc = add(acc, u64::from(u32::from_ne_bytes([*a, *b, *c, *d])));
        rest = tail;
    }
    if let [a, b, tail @ ..] = rest {
        acc = add(acc, u64::from(u16::from_ne_bytes([*a, *b])));
        rest = tail;
    }
    if let [a] = rest {
        // RFC 1071: an odd last byte is padded with a zero byte.
        acc = add(acc, u64::from(u16::from_ne_bytes([*a, 0])));
    }
    u16::from_be(fold(acc))
}

/// The checksum of `data`: the complement of [`sum`]. Store it in a field that was zero
/// while summing.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !sum(data)
}

/// Whether `data`, which includes its checksum field, verifies (sums to `0xFFFF`).
#[inline]
pub fn verify(data: &[u8]) -> bool {
    sum(data) == 0xFFFF
}

/// Ones' complement sum of partial sums from [`sum`] (or of single words), folded.
///
/// `!combine(&[sum(a), sum(b)]) == checksum(a ++ b)` when `a` has even length.
#[inline]
pub fn combine(sums: &[u16]) -> u16 {
    let acc = sums.iter().fold(0u64, |acc, &s| acc + u64::from(s));
    fold(acc)
}

/// The checksum after one 16-bit word covered by it changed from `old_word` to
/// `new_word` (RFC 1624 equation 3: `HC' = ~(~HC + ~m + m')`).
///
/// The result verifies whenever `old_checksum` did. It equals a full recomputation
/// except when the covered data is now all zero (then both encodings of zero verify).
#[inline]
pub fn update_u16(old_checksum: u16, old_word: u16, new_word: u16) -> u16 {
    let acc = u64::from(!old_checksum) + u64::from(!old_word) + u64::from(new_word);
    !fold(acc)
}

/// [`update_u16`] for a 32-bit field (an address), given as two big-endian words.
#[inline]
pub fn update_u32(old_checksum: u16, old_value: u32, new_value: u32) -> u16 {
    let acc = u64::from(!old_checksum)
        + u64::from(!(old_value >> 16) as u16)
        + u64::from(!(old_value as u16))
        + u64::from(new_value >> 16)
        + u64::from(new_value as u16);
    !fold(acc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The textbook RFC 1071 loop, as an oracle for the fast one.
    fn naive_sum(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for pair in data.chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            acc += u32::from(word);
            acc = (acc & 0xFFFF) + (acc >> 16);
        }
        acc as u16
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&data), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn known_ipv4_header() {
        // The classic header with checksum b861 (checked with scapy).
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert!(verify(&header));
        let mut zeroed = header;
        zeroed[10] = 0;
        zeroed[11] = 0;
        assert_eq!(checksum(&zeroed), 0xb861);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(&[0xab]), 0xab00);
        assert_eq!(sum(&[0x01, 0x02, 0x03]), 0x0402);
        assert_eq!(sum(&[]), 0);
        assert_eq!(checksum(&[]), 0xFFFF);
    }

    #[test]
    fn carries_fold_around() {
        let data = [0xFF; 64];
        assert_eq!(sum(&data), 0xFFFF);
        assert_eq!(sum(&[0xFF, 0xFF, 0x00, 0x01]), 0x0001);
    }

    #[test]
    fn ttl_decrement_matches_recompute() {
        let mut header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        let old = u16::from_be_bytes([header[8], header[9]]);
        header[8] -= 1;
        let new = u16::from_be_bytes([header[8], header[9]]);
        let updated = update_u16(0xb861, old, new);
        header[10] = 0;
        header[11] = 0;
        assert_eq!(updated, checksum(&header));
    }

    /// What folding with end-around carry must give for `acc`: since 2^16 = 1 modulo
    /// 0xFFFF, the same value modulo 0xFFFF, and 0 only for 0 (a non-zero sum never folds
    /// to 0, the ones' complement "minus zero").
    fn fold_is_right(acc: u64) -> bool {
        let r = fold(acc);
        if acc == 0 {
            r == 0
        } else {
            r != 0 && u64::from(r) % 0xFFFF == acc % 0xFFFF
        }
    }

    #[test]
    fn fold_carries_at_every_step() {
        for acc in [
            0,
            1,
            0xFFFF,
            0x1_0000,
            0x1_FFFE,
            0xFFFF_FFFF,
            0x1_0000_0000,
            0x1_FFFF_FFFF,
            0xFFFF_FFFF_0000_0000,
            0xFFFF_FFFF_FFFF_0000,
            0xFFFF_FFFE_0000_0001,
            u64::MAX - 1,
            u64::MAX,
        ] {
            assert!(fold_is_right(acc), "fold({acc:#x}) = {:#x}", fold(acc));
        }
        assert_eq!(fold(0x1_0000), 1);
        assert_eq!(fold(0xFFFF_FFFF), 0xFFFF);
        assert_eq!(fold(u64::MAX), 0xFFFF);
    }

    proptest! {
        #[test]
        fn fold_keeps_the_sum_modulo_ffff(acc in any::<u64>()) {
            prop_assert!(fold_is_right(acc));
        }

        #[test]
        fn fast_sum_equals_naive(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(sum(&data), naive_sum(&data));
        }

        #[test]
        fn combine_of_halves_equals_whole(
            data in proptest::collection::vec(any::<u8>(), 0..200),
            split in 0usize..100,
        ) {
            let split = (split * 2).min(data.len() & !1);
            let (a, b) = data.split_at(split);
            prop_assert_eq!(!combine(&[sum(a), sum(b)]), checksum(&data));
        }

        #[test]
        fn incremental_update_equals_recompute(
            words in proptest::collection::vec(any::<u16>(), 2..40),
            index in any::<prop::sample::Index>(),
            new_word in any::<u16>(),
        ) {
            // Word 0 holds the checksum; change any other word.
            let mut bytes: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
            bytes[0] = 0;
            bytes[1] = 0;
            let stored = checksum(&bytes);
            bytes[..2].copy_from_slice(&stored.to_be_bytes());

            let i = 1 + index.index(words.len() - 1);
            let old_word = u16::from_be_bytes([bytes[2 * i], bytes[2 * i + 1]]);
            bytes[2 * i..2 * i + 2].copy_from_slice(&new_word.to_be_bytes());
            let updated = update_u16(stored, old_word, new_word);

            bytes[..2].copy_from_slice(&updated.to_be_bytes());
            prop_assert!(verify(&bytes));
            bytes[0] = 0;
            bytes[1] = 0;
            if bytes.iter().any(|&b| b != 0) {
                prop_assert_eq!(updated, checksum(&bytes));
            }
        }

        #[test]
        fn incremental_u32_update_equals_recompute(
            prefix in any::<[u8; 6]>(),
            old_value in any::<u32>(),
            new_value in any::<u32>(),
        ) {
            let mut bytes = [0u8; 12];
            bytes[2..8].copy_from_slice(&prefix);
            bytes[8..12].copy_from_slice(&old_value.to_be_bytes());
            let stored = checksum(&bytes);
            bytes[8..12].copy_from_slice(&new_value.to_be_bytes());
            let updated = update_u32(stored, old_value, new_value);
            bytes[..2].copy_from_slice(&updated.to_be_bytes());
            prop_assert!(verify(&bytes));
        }
    }
}
