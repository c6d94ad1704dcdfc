//! CRC32C (Castagnoli), the checksum of v2 record batches: every computation in the crate
//! goes through [`crc32c`].
//!
//! Two kernels, chosen per CPU at run time. On x86-64 with AVX-512 and VPCLMULQDQ, `crc-fast`
//! folds 64 bytes per step next to the SSE4.2 `crc32` instruction: about 2.4x the `crc32c`
//! crate on 16 KiB batches (a Zen 4). Without AVX-512, `crc-fast` falls back to 128-bit
//! PCLMULQDQ folds, which lose to the `crc32c` crate's three interleaved `crc32` streams
//! (an EPYC with AVX2 and VPCLMULQDQ, best of 15 interleaved rounds: 10.1 against 6.2 GiB/s
//! on 1 KiB, 13.0 against 11.1 on 16 KiB, 14.4 against 12.2 on 1 MiB), so those CPUs use
//! the `crc32c` crate. Elsewhere (ARM's CRC and PMULL
//! instructions, or a table) `crc-fast` is kept.

use crc_fast::CrcAlgorithm;

/// CRC32C of `data`.
#[inline]
pub(crate) fn crc32c(data: &[u8]) -> u32 {
    if wide_folds() {
        folded(data)
    } else {
        crc32c::crc32c(data)
    }
}

/// `crc-fast`'s kernel. CRC-32/ISCSI is CRC32C; the 64-bit result holds the 32-bit CRC.
fn folded(data: &[u8]) -> u32 {
    crc_fast::checksum(CrcAlgorithm::Crc32Iscsi, data) as u32
}

/// Whether `crc-fast` runs its fastest kernel here (std caches the CPU's features).
#[cfg(target_arch = "x86_64")]
fn wide_folds() -> bool {
    std::arch::is_x86_feature_detected!("avx512vl") && std::arch::is_x86_feature_detected!("vpclmulqdq")
}

#[cfg(not(target_arch = "x86_64"))]
fn wide_folds() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::{crc32c, folded};

    #[test]
    fn check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
        assert_eq!(folded(b"123456789"), 0xE306_9283);
    }

    /// Both kernels give the same result on every length up to 2 KiB, at every alignment of
    /// the start, so each one's head, tail and fold paths are covered.
    #[test]
    fn kernels_agree() {
        let data = crate::protocol::records::noise(2048 + 64);
        for len in 0..=2048 {
            for start in [0, 1, 3, 8, 17, 63] {
                let input = &data[start..start + len];
                let expected = crc32c::crc32c(input);
                assert_eq!(folded(input), expected, "length {len} at offset {start}");
                assert_eq!(crc32c(input), expected, "length {len} at offset {start}");
            }
        }
        let big = data.repeat(40);
        assert_eq!(folded(&big), crc32c::crc32c(&big));
    }
}
