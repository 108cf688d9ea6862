//! Incremental Internet checksum updates (RFC 1624, eqn. 3: `HC' = ~(~HC + ~m + m')`).
//!
//! Values are 16- or 32-bit fields exactly as they sit in memory (wire order): the one's
//! complement sum does not depend on byte order as long as every word is read the same way.

#[inline(always)]
#[expect(clippy::cast_possible_truncation, reason = "folded to 16 bits first")]
fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// The checksum `check` after a 16-bit field changed from `old` to `new`.
#[must_use]
#[inline(always)]
pub fn replace16(check: u16, old: u16, new: u16) -> u16 {
    !fold(u32::from(!check) + u32::from(!old) + u32::from(new))
}

/// The checksum `check` after a 32-bit field changed from `old` to `new`.
#[must_use]
#[inline(always)]
#[expect(clippy::cast_possible_truncation, reason = "the two 16-bit halves of the field")]
pub fn replace32(check: u16, old: u32, new: u32) -> u16 {
    let c = replace16(check, old as u16, new as u16);
    replace16(c, (old >> 16) as u16, (new >> 16) as u16)
}

/// The one's complement checksum of `bytes` (for tests and for checking rewritten packets).
#[must_use]
pub fn full(bytes: &[u8]) -> u16 {
    let mut sum = 0u32;
    let mut chunks = bytes.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_ne_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(u16::from_ne_bytes([*last, 0]));
    }
    !fold(sum)
}

#[cfg(test)]
mod tests {
    use super::{full, replace16, replace32};

    #[test]
    fn incremental_updates_match_a_full_recomputation() {
        // An IPv4 header (RFC 1071's example bytes), checksum at 10..12.
        let mut h: [u8; 20] =
            [0x45, 0, 0, 0x73, 0, 0, 0x40, 0, 0x40, 0x11, 0, 0, 0xc0, 0xa8, 0, 0x01, 0xc0, 0xa8, 0, 0xc7];
        let c = full(&h);
        h[10..12].copy_from_slice(&c.to_ne_bytes());
        assert_eq!(full(&h), 0, "a valid header sums to zero");
        for new_src in [[10u8, 0, 0, 1], [172, 17, 0, 2], [255, 255, 255, 255], [0, 0, 0, 0]] {
            let old = u32::from_ne_bytes(h[12..16].try_into().unwrap());
            let new = u32::from_ne_bytes(new_src);
            let check = u16::from_ne_bytes([h[10], h[11]]);
            let updated = replace32(check, old, new);
            h[12..16].copy_from_slice(&new_src);
            h[10..12].copy_from_slice(&updated.to_ne_bytes());
            assert_eq!(full(&h), 0, "after rewriting the source to {new_src:?}");
        }
        let old_ttl = u16::from_ne_bytes([h[8], h[9]]);
        h[8] -= 1;
        let new_ttl = u16::from_ne_bytes([h[8], h[9]]);
        let updated = replace16(u16::from_ne_bytes([h[10], h[11]]), old_ttl, new_ttl);
        h[10..12].copy_from_slice(&updated.to_ne_bytes());
        assert_eq!(full(&h), 0, "after decrementing the TTL");
    }
}
