//! Compression codecs for record batches and legacy wrapper messages.
//!
//! Decompression never produces more than the caller's limit. Output grows as bytes are
//! produced, except for snappy, whose decoder needs the output size up front (the declared
//! size is checked against both the limit and the most the input bytes could expand to), and
//! zstd, whose output is reserved at the size its frame declares, within the limit: reserved,
//! not written, so a lying header costs address space, not memory.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;
use std::sync::OnceLock;

use bytes::{BufMut, Bytes, BytesMut};

use super::error::RecordsEncodeError;
use crate::buffer_pool::BufferPool;

/// The codec id stored in the low three bits of a batch's (or legacy message's) attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum CompressionType {
    /// Records are stored as they are.
    #[default]
    None,
    /// gzip (deflate with the gzip container).
    Gzip,
    /// Snappy; Java clients use the xerial framing, others raw blocks.
    Snappy,
    /// LZ4 frame format.
    Lz4,
    /// Zstandard; only allowed in magic 2 batches.
    Zstd,
}

impl CompressionType {
    /// The id written in the attributes.
    pub const fn id(self) -> u8 {
        match self {
            CompressionType::None => 0,
            CompressionType::Gzip => 1,
            CompressionType::Snappy => 2,
            CompressionType::Lz4 => 3,
            CompressionType::Zstd => 4,
        }
    }

    /// The codec for an attributes id, if it is one Kafka defines.
    pub const fn from_id(id: u8) -> Option<Self> {
        Some(match id {
            0 => CompressionType::None,
            1 => CompressionType::Gzip,
            2 => CompressionType::Snappy,
            3 => CompressionType::Lz4,
            4 => CompressionType::Zstd,
            _ => return None,
        })
    }

    /// The name Kafka uses in `compression.type`.
    pub const fn name(self) -> &'static str {
        match self {
            CompressionType::None => "none",
            CompressionType::Gzip => "gzip",
            CompressionType::Snappy => "snappy",
            CompressionType::Lz4 => "lz4",
            CompressionType::Zstd => "zstd",
        }
    }
}

impl fmt::Display for CompressionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `compression.type` value that is not one of Kafka's codec names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown compression type {0:?}")]
pub struct UnknownCompressionName(pub String);

impl FromStr for CompressionType {
    type Err = UnknownCompressionName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "none" => CompressionType::None,
            "gzip" => CompressionType::Gzip,
            "snappy" => CompressionType::Snappy,
            "lz4" => CompressionType::Lz4,
            "zstd" => CompressionType::Zstd,
            _ => return Err(UnknownCompressionName(s.to_owned())),
        })
    }
}

/// How to compress a batch being written: the codec and, where it has one, its level.
///
/// Levels follow Kafka's `compression.<codec>.level` settings and their ranges. The LZ4 level
/// is validated and kept for configuration parity, but the pure-Rust LZ4 backend only has its
/// fast compressor, so every level produces the same output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Compression {
    /// No compression.
    #[default]
    None,
    /// gzip at `level` (1..=9, or -1 for the zlib default, which is 6).
    Gzip {
        /// Deflate level.
        level: i32,
    },
    /// Snappy, written with xerial framing as the Java client does.
    Snappy,
    /// LZ4 frames with 64 KiB independent blocks, as the Java client writes them.
    Lz4 {
        /// Level (1..=17); see the type docs.
        level: i32,
    },
    /// Zstandard at `level` (zstd's negative fast levels up to 22).
    Zstd {
        /// Zstandard level.
        level: i32,
    },
}

impl Compression {
    /// Kafka's default gzip level: zlib's default.
    pub const GZIP_DEFAULT_LEVEL: i32 = -1;
    /// Kafka's default LZ4 level.
    pub const LZ4_DEFAULT_LEVEL: i32 = 9;
    /// Kafka's default zstd level.
    pub const ZSTD_DEFAULT_LEVEL: i32 = 3;

    /// gzip at Kafka's default level.
    pub const fn gzip() -> Self {
        Compression::Gzip { level: Self::GZIP_DEFAULT_LEVEL }
    }

    /// Snappy.
    pub const fn snappy() -> Self {
        Compression::Snappy
    }

    /// LZ4 at Kafka's default level.
    pub const fn lz4() -> Self {
        Compression::Lz4 { level: Self::LZ4_DEFAULT_LEVEL }
    }

    /// zstd at Kafka's default level.
    pub const fn zstd() -> Self {
        Compression::Zstd { level: Self::ZSTD_DEFAULT_LEVEL }
    }

    /// The given codec at Kafka's default level.
    pub const fn from_type(codec: CompressionType) -> Self {
        match codec {
            CompressionType::None => Compression::None,
            CompressionType::Gzip => Self::gzip(),
            CompressionType::Snappy => Self::snappy(),
            CompressionType::Lz4 => Self::lz4(),
            CompressionType::Zstd => Self::zstd(),
        }
    }

    /// The codec id this writes into the attributes.
    pub const fn codec(&self) -> CompressionType {
        match self {
            Compression::None => CompressionType::None,
            Compression::Gzip { .. } => CompressionType::Gzip,
            Compression::Snappy => CompressionType::Snappy,
            Compression::Lz4 { .. } => CompressionType::Lz4,
            Compression::Zstd { .. } => CompressionType::Zstd,
        }
    }

    /// Checks the level against the range Kafka accepts for the codec.
    pub fn validate(&self) -> Result<(), RecordsEncodeError> {
        let ok = match *self {
            Compression::None | Compression::Snappy => true,
            Compression::Gzip { level } => level == -1 || (1..=9).contains(&level),
            Compression::Lz4 { level } => (1..=17).contains(&level),
            Compression::Zstd { level } => zstd::compression_level_range().contains(&level),
        };
        if ok {
            Ok(())
        } else {
            let level = match *self {
                Compression::Gzip { level } | Compression::Lz4 { level } | Compression::Zstd { level } => level,
                _ => 0,
            };
            Err(RecordsEncodeError::InvalidCompressionLevel { codec: self.codec(), level })
        }
    }
}

// ---------------------------------------------------------------------------------------
// Decompression

/// Why a payload could not be decompressed; the caller adds where it was.
#[derive(Debug)]
pub(crate) enum DecompressError {
    /// The output passed the limit.
    TooLarge,
    /// The codec rejected the input.
    Corrupt(String),
}

impl From<io::Error> for DecompressError {
    fn from(e: io::Error) -> Self {
        DecompressError::Corrupt(e.to_string())
    }
}

/// Decompresses `input`, producing at most `limit` bytes. `magic` selects the LZ4 header
/// quirk of magic 0 messages.
pub(crate) fn decompress(
    codec: CompressionType,
    input: &[u8],
    limit: usize,
    magic: i8,
) -> Result<Vec<u8>, DecompressError> {
    match codec {
        CompressionType::None => {
            if input.len() > limit {
                return Err(DecompressError::TooLarge);
            }
            Ok(input.to_vec())
        }
        CompressionType::Gzip => read_capped(flate2::bufread::MultiGzDecoder::new(input), input.len(), limit),
        CompressionType::Snappy => snappy_decompress(input, limit),
        CompressionType::Lz4 => lz4_decompress(input, limit, magic),
        CompressionType::Zstd => zstd_decompress(input, limit),
    }
}

/// Where decompressed batches are written: allocations back from the records sliced from
/// earlier batches, shared by every consumer of the process. A fresh one per batch cost a
/// page fault per 4 KiB written, and its unmapping: a sixth of a consumer's CPU time reading
/// 1 KB zstd records.
fn outputs() -> &'static BufferPool {
    static OUTPUTS: OnceLock<BufferPool> = OnceLock::new();
    OUTPUTS.get_or_init(|| BufferPool::new(4, 8 << 20))
}

/// A decompressed batch as `Bytes`, its allocation going back to [`outputs`] once the last
/// record sliced from it is dropped.
pub(crate) fn freeze(out: Vec<u8>) -> Bytes {
    outputs().freeze(out)
}

/// Reads a streaming decoder to its end, failing once more than `limit` bytes come out. The
/// buffer grows with the output actually produced, not with any size the stream declares.
/// (A hand-rolled loop: `read_to_end` makes many small reads, which made zstd 4x slower.)
fn read_capped<R: Read>(mut reader: R, input_len: usize, limit: usize) -> Result<Vec<u8>, DecompressError> {
    let ceiling = limit.saturating_add(1);
    let initial = input_len.saturating_mul(4).max(4096).min(ceiling);
    let mut out = Vec::new();
    let mut filled = 0;
    loop {
        if filled == out.len() {
            let grown = out.len().saturating_mul(2).max(initial).min(ceiling);
            if grown == out.len() {
                return Err(DecompressError::TooLarge);
            }
            out.resize(grown, 0);
        }
        match reader.read(&mut out[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    if filled > limit {
        return Err(DecompressError::TooLarge);
    }
    out.truncate(filled);
    Ok(out)
}

/// zstd, in one shot: the batch decodes straight into its output, with no window buffer in
/// between (the streaming decoder copied every byte through one, into zeroed memory) and one
/// decompression context per thread instead of one per batch. The output is reserved at the
/// frame's declared size when it has one within `limit`; otherwise (Java and librdkafka
/// stream their frames, so their batches declare none) at the ratio this thread saw last.
/// Too small, it doubles and the batch decodes again, up to `limit`.
fn zstd_decompress(input: &[u8], limit: usize) -> Result<Vec<u8>, DecompressError> {
    use std::cell::RefCell;
    use zstd::zstd_safe::{self, zstd_sys::ZSTD_ErrorCode, DCtx};
    const TOO_SMALL: usize = (ZSTD_ErrorCode::ZSTD_error_dstSize_tooSmall as usize).wrapping_neg();
    thread_local! {
        static CONTEXT: RefCell<(Option<DCtx<'static>>, f64)> = const { RefCell::new((None, 4.0)) };
    }
    if input.is_empty() {
        return Ok(Vec::new());
    }
    CONTEXT.with(|context| {
        let mut context = context.borrow_mut();
        let (dctx, last_ratio) = &mut *context;
        let dctx = dctx.get_or_insert_with(DCtx::create);
        let declared =
            zstd_safe::get_frame_content_size(input).ok().flatten().map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        let mut capacity = match declared {
            Some(n) if n > limit => return Err(DecompressError::TooLarge),
            Some(n) => n,
            None => ((input.len() as f64 * *last_ratio * 1.1) as usize).max(4096).min(limit),
        };
        loop {
            let mut out = outputs().take(capacity);
            match dctx.decompress(&mut out, input) {
                // A kept allocation can be larger than asked for, and so past the limit.
                Ok(_) if out.len() > limit => return Err(DecompressError::TooLarge),
                Ok(_) => {
                    *last_ratio = out.len() as f64 / input.len() as f64;
                    return Ok(out);
                }
                Err(TOO_SMALL) if capacity >= limit => return Err(DecompressError::TooLarge),
                Err(TOO_SMALL) => capacity = capacity.saturating_mul(2).min(limit),
                Err(code) => return Err(DecompressError::Corrupt(zstd_safe::get_error_name(code).to_string())),
            }
        }
    })
}

/// The header snappy-java writes before its length-prefixed blocks: a magic string, then the
/// format version and the lowest compatible version as big-endian int32s.
pub(crate) const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER_LEN: usize = 16;
/// snappy-java's default block size, which Kafka's Java producer uses.
const XERIAL_BLOCK_SIZE: usize = 32 * 1024;
/// No snappy element expands by more than this factor (a 3-byte copy yields at most 64
/// bytes), so a larger declared length cannot be genuine.
const SNAPPY_MAX_EXPANSION: usize = 22;

fn snappy_decompress(input: &[u8], limit: usize) -> Result<Vec<u8>, DecompressError> {
    if input.len() >= XERIAL_HEADER_LEN && input[..8] == XERIAL_MAGIC {
        let mut out = Vec::new();
        let mut rest = &input[XERIAL_HEADER_LEN..];
        while !rest.is_empty() {
            // snappy-java accepts several streams written back to back; a block length can
            // never start with 0x82 (it would be negative), so the check is unambiguous.
            if rest.len() >= XERIAL_HEADER_LEN && rest[..8] == XERIAL_MAGIC {
                rest = &rest[XERIAL_HEADER_LEN..];
                continue;
            }
            let Some((len, tail)) = rest.split_first_chunk::<4>() else {
                return Err(DecompressError::Corrupt("xerial snappy: truncated block length".into()));
            };
            let len = i32::from_be_bytes(*len);
            let len = usize::try_from(len)
                .ok()
                .filter(|&l| l <= tail.len())
                .ok_or_else(|| DecompressError::Corrupt(format!("xerial snappy: invalid block length {len}")))?;
            let (block, tail) = tail.split_at(len);
            snappy_block_into(block, &mut out, limit)?;
            rest = tail;
        }
        Ok(out)
    } else {
        let mut out = Vec::new();
        snappy_block_into(input, &mut out, limit)?;
        Ok(out)
    }
}

/// Decompresses one raw snappy block onto the end of `out`.
fn snappy_block_into(block: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), DecompressError> {
    let declared = snap::raw::decompress_len(block).map_err(|e| DecompressError::Corrupt(e.to_string()))?;
    if declared > limit.saturating_sub(out.len()) {
        return Err(DecompressError::TooLarge);
    }
    if declared > block.len().saturating_mul(SNAPPY_MAX_EXPANSION) {
        return Err(DecompressError::Corrupt(format!(
            "snappy: block of {} bytes claims {declared} bytes of output",
            block.len()
        )));
    }
    if declared == 0 {
        // An empty block still has to be well formed: a zero-length varint and nothing else.
        return if block.len() == 1 {
            Ok(())
        } else {
            Err(DecompressError::Corrupt("snappy: malformed empty block".into()))
        };
    }
    let start = out.len();
    out.resize(start + declared, 0);
    let n = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(|e| DecompressError::Corrupt(e.to_string()))?;
    out.truncate(start + n);
    Ok(())
}

const LZ4_FRAME_MAGIC: [u8; 4] = 0x184D_2204u32.to_le_bytes();

/// Kafka's magic 0 writers computed the LZ4 frame header checksum over the frame magic as
/// well as the descriptor, and Kafka skips that check for magic 0. The standard decoder
/// always checks it, so for magic 0 the header byte is recomputed before decoding.
fn lz4_decompress(input: &[u8], limit: usize, magic: i8) -> Result<Vec<u8>, DecompressError> {
    if let Some(frame) = Lz4Frame::parse(input, magic) {
        return frame.decode(input, limit);
    }
    if magic == 0 {
        if let Some(descriptor_end) = lz4_descriptor_end(input) {
            let mut header = [0u8; 4 + 14 + 1];
            let header_len = descriptor_end + 1;
            header[..header_len].copy_from_slice(&input[..header_len]);
            header[descriptor_end] = lz4_header_checksum(&input[4..descriptor_end]);
            let reader = (&header[..header_len]).chain(&input[header_len..]);
            return read_capped(lz4_flex::frame::FrameDecoder::new(reader), input.len(), limit);
        }
    }
    read_capped(lz4_flex::frame::FrameDecoder::new(input), input.len(), limit)
}

/// One LZ4 frame of independent blocks, the kind every Kafka client writes (Java's reader
/// accepts no other), decoded block by block straight into the output: `lz4_flex`'s frame
/// reader copies each block into a buffer of its own and each decoded block out of another,
/// and its output had to be grown and zeroed ahead of it.
#[derive(Debug)]
struct Lz4Frame {
    /// Where the first block starts.
    blocks_at: usize,
    block_max: usize,
    block_checksums: bool,
    content_checksum: bool,
    /// Most bytes the blocks can decode to: what to reserve.
    bound: usize,
}

impl Lz4Frame {
    /// The frame's layout, if it is one the direct decoder takes: a version 1 header with a
    /// valid checksum (magic 0 writers got it wrong, and Kafka skips it for them),
    /// independent blocks, no dictionary, and nothing after it. Anything else goes to the
    /// general decoder, which also names what is wrong.
    fn parse(input: &[u8], magic: i8) -> Option<Lz4Frame> {
        let descriptor_end = lz4_descriptor_end(input)?;
        let (flg, bd) = (input[4], input[5]);
        let independent = flg & 0x20 != 0;
        if flg >> 6 != 1 || !independent || flg & 0x01 != 0 {
            return None;
        }
        if magic != 0 && input[descriptor_end] != lz4_header_checksum(&input[4..descriptor_end]) {
            return None;
        }
        let block_max = match (bd >> 4) & 0x07 {
            4 => 64 << 10,
            5 => 256 << 10,
            6 => 1 << 20,
            7 => 4 << 20,
            _ => return None,
        };
        let (block_checksums, content_checksum) = (flg & 0x10 != 0, flg & 0x04 != 0);
        let blocks_at = descriptor_end + 1;
        let (mut at, mut bound) = (blocks_at, 0usize);
        loop {
            let word = u32::from_le_bytes(input.get(at..at + 4)?.try_into().ok()?);
            at += 4;
            if word == 0 {
                break;
            }
            let len = (word & 0x7FFF_FFFF) as usize;
            if len > block_max {
                return None;
            }
            bound = bound.saturating_add(if word & 0x8000_0000 != 0 { len } else { block_max });
            at = at.checked_add(len + if block_checksums { 4 } else { 0 })?;
        }
        let end = at + if content_checksum { 4 } else { 0 };
        (end == input.len()).then_some(Lz4Frame { blocks_at, block_max, block_checksums, content_checksum, bound })
    }

    fn decode(&self, input: &[u8], limit: usize) -> Result<Vec<u8>, DecompressError> {
        let corrupt = |what: &str| DecompressError::Corrupt(format!("lz4: {what}"));
        let mut out = outputs().take(self.bound.min(limit) + LZ4_WILD);
        let mut at = self.blocks_at;
        loop {
            let word = u32::from_le_bytes(input[at..at + 4].try_into().expect("parsed"));
            at += 4;
            if word == 0 {
                break;
            }
            let len = (word & 0x7FFF_FFFF) as usize;
            let block = &input[at..at + len];
            at += len;
            if self.block_checksums {
                let stored = u32::from_le_bytes(input[at..at + 4].try_into().expect("parsed"));
                at += 4;
                if xxh32(block, 0) != stored {
                    return Err(corrupt("block checksum mismatch"));
                }
            }
            let start = out.len();
            if word & 0x8000_0000 != 0 {
                if start + len > limit {
                    return Err(DecompressError::TooLarge);
                }
                out.extend_from_slice(block);
                continue;
            }
            let room = self.block_max.min(limit - start);
            match lz4_block_append(block, &mut out, start + room) {
                Ok(()) => {}
                Err(Lz4BlockError::TooLong) if room < self.block_max => return Err(DecompressError::TooLarge),
                Err(e) => return Err(corrupt(e.as_str())),
            }
        }
        if self.content_checksum {
            let stored = u32::from_le_bytes(input[at..at + 4].try_into().expect("parsed"));
            if xxh32(&out, 0) != stored {
                return Err(corrupt("content checksum mismatch"));
            }
        }
        Ok(out)
    }
}

/// Bytes an LZ4 sequence may copy past its true length, then cut back, so that short
/// literals and matches move as one fixed-size copy.
const LZ4_WILD: usize = 16;

/// Why an LZ4 block did not decode.
#[derive(Debug, PartialEq, Eq)]
enum Lz4BlockError {
    Truncated,
    /// A match reaching back before the block's output began, or an offset of 0.
    BadOffset,
    /// The block decodes past the limit it was given.
    TooLong,
}

impl Lz4BlockError {
    fn as_str(&self) -> &'static str {
        match self {
            Lz4BlockError::Truncated => "block ends inside a sequence",
            Lz4BlockError::BadOffset => "match offset outside the output",
            Lz4BlockError::TooLong => "block decodes past its size",
        }
    }
}

/// Decodes one LZ4 block onto the end of `out`, which holds the frame's earlier blocks
/// (independent blocks never reach back into them: a match may not start before `out`'s
/// length on entry), never growing it past `limit` bytes.
///
/// Written here rather than taken from `lz4_flex` because its safe decoder writes only into
/// an initialised slice: the room for each block had to be zeroed first, a pass over every
/// decoded byte. This one appends into the vector's spare capacity, still without `unsafe`.
#[inline(never)] // one compact loop, not spread through the frame decoder
fn lz4_block_append(input: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), Lz4BlockError> {
    let floor = out.len();
    let mut at = 0usize;
    // Room for the fixed-size copies, so that they never reallocate.
    out.reserve(LZ4_WILD);
    loop {
        let token = *input.get(at).ok_or(Lz4BlockError::Truncated)?;
        at += 1;
        let literals = usize::from(token >> 4);
        if literals < 15 && at + LZ4_WILD <= input.len() && out.len() + literals <= limit {
            // Not the last sequence (that one ends the input): copy 16, keep `literals`.
            let keep = out.len() + literals;
            let wild: [u8; LZ4_WILD] = input[at..at + LZ4_WILD].try_into().expect("16 bytes");
            out.extend_from_slice(&wild);
            out.truncate(keep);
            at += literals;
        } else {
            let literals = lz4_length(input, &mut at, literals)?;
            let run = input.get(at..at + literals).ok_or(Lz4BlockError::Truncated)?;
            if out.len() + literals > limit {
                return Err(Lz4BlockError::TooLong);
            }
            out.extend_from_slice(run);
            at += literals;
            if at == input.len() {
                return Ok(());
            }
        }
        let offset = input.get(at..at + 2).ok_or(Lz4BlockError::Truncated)?;
        let offset = usize::from(u16::from_le_bytes([offset[0], offset[1]]));
        at += 2;
        let len = lz4_length(input, &mut at, usize::from(token & 15))? + 4;
        if offset == 0 || offset > out.len() - floor {
            return Err(Lz4BlockError::BadOffset);
        }
        if out.len() + len > limit {
            return Err(Lz4BlockError::TooLong);
        }
        let from = out.len() - offset;
        if offset >= LZ4_WILD && len <= LZ4_WILD {
            let keep = out.len() + len;
            let wild: [u8; LZ4_WILD] = out[from..from + LZ4_WILD].try_into().expect("16 bytes");
            out.extend_from_slice(&wild);
            out.truncate(keep);
        } else {
            // An offset shorter than the match repeats the bytes it reaches: copy what
            // exists, which doubles each round.
            let mut left = len;
            while left > 0 {
                let n = left.min(out.len() - from);
                out.extend_from_within(from..from + n);
                left -= n;
            }
        }
    }
}

/// A literal or match length: the token's 4 bits, and while they read 15, bytes added on
/// until one is not 255.
fn lz4_length(input: &[u8], at: &mut usize, nibble: usize) -> Result<usize, Lz4BlockError> {
    let mut len = nibble;
    if nibble == 15 {
        loop {
            let byte = *input.get(*at).ok_or(Lz4BlockError::Truncated)?;
            *at += 1;
            len += usize::from(byte);
            if byte != 255 {
                break;
            }
        }
    }
    Ok(len)
}

/// Where the header checksum byte sits in an LZ4 frame, if the header is all there.
fn lz4_descriptor_end(input: &[u8]) -> Option<usize> {
    if input.len() < 7 || input[..4] != LZ4_FRAME_MAGIC {
        return None;
    }
    let flg = input[4];
    let end = 6 + if flg & 0x08 != 0 { 8 } else { 0 } + if flg & 0x01 != 0 { 4 } else { 0 };
    (input.len() > end).then_some(end)
}

/// The frame header checksum: the second byte of the xxHash32 of the descriptor.
fn lz4_header_checksum(descriptor: &[u8]) -> u8 {
    (xxh32(descriptor, 0) >> 8) as u8
}

/// xxHash32, needed only for LZ4 frame header checksums (the LZ4 crate keeps its own
/// implementation private).
pub(crate) fn xxh32(input: &[u8], seed: u32) -> u32 {
    const P1: u32 = 0x9E37_79B1;
    const P2: u32 = 0x85EB_CA77;
    const P3: u32 = 0xC2B2_AE3D;
    const P4: u32 = 0x27D4_EB2F;
    const P5: u32 = 0x1656_67B1;
    let round = |acc: u32, lane: u32| acc.wrapping_add(lane.wrapping_mul(P2)).rotate_left(13).wrapping_mul(P1);
    let word = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);

    let mut rest = input;
    let mut h = if input.len() >= 16 {
        let mut v = [seed.wrapping_add(P1).wrapping_add(P2), seed.wrapping_add(P2), seed, seed.wrapping_sub(P1)];
        while rest.len() >= 16 {
            for (i, acc) in v.iter_mut().enumerate() {
                *acc = round(*acc, word(&rest[4 * i..]));
            }
            rest = &rest[16..];
        }
        v[0].rotate_left(1)
            .wrapping_add(v[1].rotate_left(7))
            .wrapping_add(v[2].rotate_left(12))
            .wrapping_add(v[3].rotate_left(18))
    } else {
        seed.wrapping_add(P5)
    };
    h = h.wrapping_add(input.len() as u32);
    while rest.len() >= 4 {
        h = h.wrapping_add(word(rest).wrapping_mul(P3)).rotate_left(17).wrapping_mul(P4);
        rest = &rest[4..];
    }
    for &b in rest {
        h = h.wrapping_add(u32::from(b).wrapping_mul(P5)).rotate_left(11).wrapping_mul(P1);
    }
    h ^= h >> 15;
    h = h.wrapping_mul(P2);
    h ^= h >> 13;
    h = h.wrapping_mul(P3);
    h ^ (h >> 16)
}

// ---------------------------------------------------------------------------------------
// Compression

/// Codec state kept between batches so that each batch does not pay for a fresh context.
#[derive(Default)]
pub(crate) struct Compressors {
    zstd: Option<(i32, zstd::bulk::Compressor<'static>)>,
    /// Where LZ4 blocks are compressed: zeroed once, not before every block.
    lz4_room: Vec<u8>,
}

impl fmt::Debug for Compressors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compressors").field("zstd_level", &self.zstd.as_ref().map(|(l, _)| *l)).finish()
    }
}

/// The most bytes [`compress`] can write for `len` bytes of input: reserving it up front
/// keeps the output from growing (and copying what it holds) while the codec writes.
pub(crate) fn max_compressed_len(compression: Compression, len: usize) -> usize {
    let blocks = |size: usize| len.div_ceil(size).max(1);
    match compression {
        Compression::None => len,
        // zlib's deflateBound, plus gzip's 10-byte header and 8-byte trailer.
        Compression::Gzip { .. } => len + (len >> 12) + (len >> 14) + (len >> 25) + 13 + 18,
        Compression::Snappy => {
            XERIAL_MAGIC.len()
                + 8
                + blocks(XERIAL_BLOCK_SIZE) * 4
                + snap::raw::max_compress_len(len)
                + 32 * blocks(XERIAL_BLOCK_SIZE)
        }
        // Magic, FLG, BD, header checksum; a length and at most the worst case per block; end mark.
        Compression::Lz4 { .. } => {
            7 + blocks(LZ4_BLOCK) * (4 + lz4_flex::block::get_maximum_output_size(LZ4_BLOCK.min(len))) + 4
        }
        Compression::Zstd { .. } => zstd::zstd_safe::compress_bound(len),
    }
}

/// Compresses `input` onto the end of `out`. `magic` selects the LZ4 header quirk of magic 0.
pub(crate) fn compress(
    compression: Compression,
    input: &[u8],
    out: &mut BytesMut,
    magic: i8,
    ctx: &mut Compressors,
) -> Result<(), RecordsEncodeError> {
    let codec = compression.codec();
    let fail = |e: &dyn fmt::Display| RecordsEncodeError::Compress { codec, reason: e.to_string() };
    out.reserve(max_compressed_len(compression, input.len()));
    match compression {
        Compression::None => out.extend_from_slice(input),
        Compression::Gzip { level } => {
            let level = if level < 0 { 6 } else { level as u32 };
            let mut encoder = flate2::write::GzEncoder::new((&mut *out).writer(), flate2::Compression::new(level));
            encoder.write_all(input).map_err(|e| fail(&e))?;
            encoder.finish().map_err(|e| fail(&e))?;
        }
        Compression::Snappy => {
            out.extend_from_slice(&XERIAL_MAGIC);
            out.put_i32(1); // format version
            out.put_i32(1); // oldest version that can read it
            let mut encoder = snap::raw::Encoder::new();
            for block in input.chunks(XERIAL_BLOCK_SIZE) {
                let len_at = out.len();
                out.put_i32(0);
                let start = out.len();
                out.resize(start + snap::raw::max_compress_len(block.len()), 0);
                let n = encoder.compress(block, &mut out[start..]).map_err(|e| fail(&e))?;
                out.truncate(start + n);
                out[len_at..start].copy_from_slice(&(n as i32).to_be_bytes());
            }
        }
        Compression::Lz4 { .. } => lz4_compress(input, out, magic == 0, &mut ctx.lz4_room).map_err(|e| fail(&e))?,
        Compression::Zstd { level } => {
            let compressor = match &mut ctx.zstd {
                Some((current, c)) if *current == level => c,
                slot => {
                    let c = zstd::bulk::Compressor::new(level).map_err(|e| fail(&e))?;
                    &mut slot.insert((level, c)).1
                }
            };
            let start = out.len();
            out.resize(start + zstd::zstd_safe::compress_bound(input.len()), 0);
            let n = compressor.compress_to_buffer(input, &mut out[start..]).map_err(|e| fail(&e))?;
            out.truncate(start + n);
        }
    }
    Ok(())
}

/// The block size of the LZ4 frames sansa writes, as Java's: 64 KiB.
const LZ4_BLOCK: usize = 64 * 1024;

/// Writes an LZ4 frame the way Kafka's Java client does: 64 KiB independent blocks, no
/// checksums beyond the header's, a block stored raw when compressing would not shrink it.
///
/// Each block is compressed into `room` and then copied out, or stored raw instead: the
/// compressor wants initialised output, and compressing in place meant zeroing the worst
/// case's room in `out` before every block (8% of producing 1 KB records with lz4).
fn lz4_compress(
    input: &[u8],
    out: &mut BytesMut,
    broken_header_checksum: bool,
    room: &mut Vec<u8>,
) -> Result<(), lz4_flex::block::CompressError> {
    const FLG: u8 = 0b0110_0000; // version 01, independent blocks
    const BD: u8 = 0b0100_0000; // 64 KiB maximum block size
    let header_start = out.len();
    out.extend_from_slice(&LZ4_FRAME_MAGIC);
    out.extend_from_slice(&[FLG, BD]);
    let checked = if broken_header_checksum { &out[header_start..] } else { &out[header_start + 4..] };
    let hc = lz4_header_checksum(checked);
    out.put_u8(hc);
    let worst = lz4_flex::block::get_maximum_output_size(LZ4_BLOCK.min(input.len()));
    if room.len() < worst {
        room.resize(worst, 0);
    }
    for block in input.chunks(LZ4_BLOCK) {
        let n = lz4_flex::block::compress_into(block, room)?;
        if n < block.len() {
            out.put_u32_le(n as u32);
            out.extend_from_slice(&room[..n]);
        } else {
            out.put_u32_le(block.len() as u32 | 0x8000_0000);
            out.extend_from_slice(block);
        }
    }
    out.put_u32_le(0); // end mark
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize) -> Vec<u8> {
        let words: [&[u8]; 6] = [b"kafka ", b"record ", b"batch ", b"offset ", b"topic ", b"sansa "];
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            out.extend_from_slice(words[(state % 6) as usize]);
            if state.is_multiple_of(11) {
                out.extend_from_slice(&state.to_le_bytes());
            }
        }
        out.truncate(len);
        out
    }

    /// Output reserved at the bound is never outgrown (so never moved and copied): not by
    /// incompressible bytes, not at a block boundary, not for empty input.
    #[test]
    fn no_codec_writes_past_its_bound() {
        let noise = crate::protocol::records::noise(300_000);
        let text = sample(300_000);
        let codecs =
            [Compression::None, Compression::gzip(), Compression::snappy(), Compression::lz4(), Compression::zstd()];
        for compression in codecs {
            for data in [&noise, &text] {
                for len in [0, 1, 100, 32 * 1024, 32 * 1024 + 1, 64 * 1024, 64 * 1024 + 1, 300_000] {
                    let bound = max_compressed_len(compression, len);
                    let mut out = BytesMut::with_capacity(bound);
                    let allocation = out.as_ptr();
                    compress(compression, &data[..len], &mut out, 2, &mut Compressors::default()).unwrap();
                    assert!(out.len() <= bound, "{compression:?}, {len} bytes: wrote {} > {bound}", out.len());
                    if bound > 0 {
                        assert_eq!(out.as_ptr(), allocation, "{compression:?}, {len} bytes: the output moved");
                    }
                }
            }
        }
    }

    #[test]
    fn xxh32_matches_reference_values() {
        assert_eq!(xxh32(b"", 0), 0x02CC_5D05);
        assert_eq!(xxh32(b"a", 0), 0x550D_7456);
        assert_eq!(xxh32(b"abc", 0), 0x32D1_53FF);
        assert_eq!(xxh32(b"Nobody inspects the spammish repetition", 0), 0xE229_3B2F);
    }

    /// A zstd frame as Java and librdkafka write them: streamed, so it declares no size.
    fn zstd_streamed(data: &[u8]) -> Vec<u8> {
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        encoder.write_all(data).unwrap();
        let out = encoder.finish().unwrap();
        assert_eq!(zstd::zstd_safe::get_frame_content_size(&out).unwrap(), None);
        out
    }

    /// A batch decompresses into the allocation of one decompressed before whose records are
    /// all dropped. (The pool is shared by the whole process, so tests running at the same
    /// time could take it in between: one reuse in ten rounds is asked for.)
    #[test]
    fn batches_decompress_into_allocations_given_back() {
        // An odd size, which the other tests' batches do not fit.
        let data: Vec<u8> = (0..3_333_333u32).map(|i| (i % 251) as u8).collect();
        let input = zstd::bulk::compress(&data, 3).unwrap();
        let lz4 = {
            use lz4_flex::frame::{BlockMode, FrameInfo};
            lz4_flex_frame(&data, FrameInfo::new().block_mode(BlockMode::Independent))
        };
        let mut reused = 0;
        for _ in 0..10 {
            for (codec, input) in [(CompressionType::Zstd, &input), (CompressionType::Lz4, &lz4)] {
                let first = freeze(decompress(codec, input, 8 << 20, 2).unwrap());
                assert_eq!(&first[..], &data[..]);
                let at = first.as_ptr();
                let sliced = first.slice(10..20);
                drop(first);
                let kept = decompress(codec, input, 8 << 20, 2).unwrap();
                assert_ne!(kept.as_ptr(), at, "taken while a slice of it lives");
                drop((kept, sliced));
                let again = decompress(codec, input, 8 << 20, 2).unwrap();
                assert_eq!(&again[..], &data[..]);
                reused += usize::from(again.as_ptr() == at);
            }
        }
        assert!(reused > 0, "never reused");
    }

    #[test]
    fn zstd_frames_without_a_declared_size_decode_whatever_the_ratio() {
        // Zeros compress about 10,000 to 1, far past the first guess: the output doubles.
        for data in [sample(300_000), vec![0u8; 3 << 20], sample(10), vec![7u8; 1]] {
            let frame = zstd_streamed(&data);
            assert_eq!(decompress(CompressionType::Zstd, &frame, usize::MAX, 2).unwrap(), data);
            assert_eq!(decompress(CompressionType::Zstd, &frame, data.len(), 2).unwrap(), data, "exactly the limit");
            assert!(matches!(
                decompress(CompressionType::Zstd, &frame, data.len() - 1, 2),
                Err(DecompressError::TooLarge)
            ));
        }
    }

    #[test]
    fn zstd_concatenated_frames_decode_past_the_first_frames_size() {
        let (a, b) = (sample(50_000), vec![1u8; 200_000]);
        let mut first = BytesMut::new();
        compress(Compression::zstd(), &a, &mut first, 2, &mut Compressors::default()).unwrap();
        assert_eq!(zstd::zstd_safe::get_frame_content_size(&first).unwrap(), Some(50_000));
        let mut both = first.to_vec();
        both.extend(zstd_streamed(&b));
        assert_eq!(decompress(CompressionType::Zstd, &both, usize::MAX, 2).unwrap(), [a, b].concat());
    }

    #[test]
    fn zstd_corruption_and_lying_sizes_are_errors() {
        let mut frame = BytesMut::new();
        compress(Compression::zstd(), &sample(100_000), &mut frame, 2, &mut Compressors::default()).unwrap();
        let cut = &frame[..frame.len() / 2];
        assert!(matches!(decompress(CompressionType::Zstd, cut, usize::MAX, 2), Err(DecompressError::Corrupt(_))));
        assert!(matches!(
            decompress(CompressionType::Zstd, b"not zstd", usize::MAX, 2),
            Err(DecompressError::Corrupt(_))
        ));
        // A frame declaring more than the limit is refused before any decoding.
        assert!(matches!(decompress(CompressionType::Zstd, &frame, 99_999, 2), Err(DecompressError::TooLarge)));
    }

    fn lz4_flex_frame(data: &[u8], info: lz4_flex::frame::FrameInfo) -> Vec<u8> {
        let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn lz4_frames_of_independent_blocks_decode_directly_with_every_option() {
        use lz4_flex::frame::{BlockMode, BlockSize, FrameInfo};
        let data = [sample(700_000), vec![0u8; 300_000]].concat();
        for (block_checksums, content_checksum, size) in
            [(false, false, BlockSize::Max64KB), (true, true, BlockSize::Max256KB), (true, false, BlockSize::Max4MB)]
        {
            let info = FrameInfo::new()
                .block_mode(BlockMode::Independent)
                .block_size(size)
                .block_checksums(block_checksums)
                .content_checksum(content_checksum);
            let frame = lz4_flex_frame(&data, info);
            assert!(Lz4Frame::parse(&frame, 2).is_some(), "{size:?}: the direct path");
            assert_eq!(decompress(CompressionType::Lz4, &frame, usize::MAX, 2).unwrap(), data);
            assert!(matches!(
                decompress(CompressionType::Lz4, &frame, data.len() - 1, 2),
                Err(DecompressError::TooLarge)
            ));
            if block_checksums {
                let mut bad = frame.clone();
                let at = bad.len() / 2;
                bad[at] ^= 0x40;
                assert!(matches!(
                    decompress(CompressionType::Lz4, &bad, usize::MAX, 2),
                    Err(DecompressError::Corrupt(_))
                ));
            }
        }
        // Our own frames (what sansa's producer writes) take the direct path too.
        let mut ours = BytesMut::new();
        compress(Compression::lz4(), &data, &mut ours, 2, &mut Compressors::default()).unwrap();
        assert!(Lz4Frame::parse(&ours, 2).is_some());
        // Incompressible data: blocks stored raw, under the same limit.
        let noise = crate::protocol::records::noise(200_000);
        let mut raw = BytesMut::new();
        compress(Compression::lz4(), &noise, &mut raw, 2, &mut Compressors::default()).unwrap();
        assert_ne!(raw[10] & 0x80, 0, "the first block is stored raw");
        assert_eq!(decompress(CompressionType::Lz4, &raw, noise.len(), 2).unwrap(), noise);
        assert!(matches!(decompress(CompressionType::Lz4, &raw, noise.len() - 1, 2), Err(DecompressError::TooLarge)));
    }

    /// Data with what LZ4 finds in real payloads: byte runs, short repeated patterns, copies
    /// of earlier stretches (near and far), and noise between them.
    fn lz4_mix(seed: u64, len: usize) -> Vec<u8> {
        let noise = crate::protocol::records::noise(len + 64);
        let mut state = seed | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as usize
        };
        let mut data = Vec::with_capacity(len);
        while data.len() < len {
            let k = next();
            match k % 4 {
                0 => data.extend(std::iter::repeat_n(k as u8, next() % 300)),
                1 => data.extend_from_slice(&noise[data.len()..data.len() + next() % 40]),
                2 if !data.is_empty() => {
                    let from = next() % data.len();
                    let n = (next() % 100).min(data.len() - from);
                    data.extend_from_within(from..from + n);
                }
                _ => {
                    let pattern: Vec<u8> = (0..next() % 7 + 1).map(|_| next() as u8).collect();
                    (0..next() % 50).for_each(|_| data.extend_from_slice(&pattern));
                }
            }
        }
        data.truncate(len);
        data
    }

    #[test]
    fn lz4_blocks_decode_as_the_reference_encoder_wrote_them() {
        for (seed, len) in (1..400u64).map(|i| (i, (i as usize * 7919) % 70_000)) {
            let data = if seed % 5 == 0 { crate::protocol::records::noise(len) } else { lz4_mix(seed, len) };
            let block = lz4_flex::block::compress(&data);
            // Appended after earlier output, which the block cannot reach.
            let mut out = vec![7u8; 3];
            lz4_block_append(&block, &mut out, 3 + data.len()).unwrap();
            assert!(out[3..] == data[..], "seed {seed}, {len} bytes");
            if !data.is_empty() {
                let mut short = Vec::new();
                assert_eq!(lz4_block_append(&block, &mut short, data.len() - 1), Err(Lz4BlockError::TooLong));
                assert!(short.len() < data.len());
            }
        }
    }

    #[test]
    fn lz4_blocks_that_are_damaged_fail_without_passing_the_limit() {
        let data = lz4_mix(99, 20_000);
        let block = lz4_flex::block::compress(&data);
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut bad = block.clone();
            let at = state as usize % bad.len();
            bad[at] = (state >> 32) as u8;
            let cut = (state >> 40) as usize % (bad.len() + 1);
            let mut out = vec![1u8; 5];
            let limit = 5 + 25_000;
            // Any outcome but a panic or a write past the limit.
            let _ = lz4_block_append(&bad[..cut], &mut out, limit);
            assert!(out.len() <= limit);
        }
        // A match reaching into what came before the block is refused.
        let reach_back = [0x00u8, 0x01, 0x00, 0x10];
        let mut out = vec![1u8; 10];
        assert_eq!(lz4_block_append(&reach_back, &mut out, 100), Err(Lz4BlockError::BadOffset));
        assert_eq!(lz4_block_append(&[], &mut Vec::new(), 100), Err(Lz4BlockError::Truncated));
    }

    #[test]
    fn lz4_frames_the_direct_path_does_not_take_still_decode() {
        use lz4_flex::frame::{BlockMode, FrameInfo};
        let data = sample(300_000);
        let linked = lz4_flex_frame(&data, FrameInfo::new().block_mode(BlockMode::Linked));
        assert!(Lz4Frame::parse(&linked, 2).is_none());
        assert_eq!(decompress(CompressionType::Lz4, &linked, usize::MAX, 2).unwrap(), data);
        // A truncated frame is left to the general decoder, which reports it.
        let mut ours = BytesMut::new();
        compress(Compression::lz4(), &data, &mut ours, 2, &mut Compressors::default()).unwrap();
        let cut = &ours[..ours.len() - 10];
        assert!(Lz4Frame::parse(cut, 2).is_none());
        assert!(decompress(CompressionType::Lz4, cut, usize::MAX, 2).is_err());
    }

    #[test]
    fn lz4_compressors_reused_across_batches_of_every_size_round_trip() {
        // One producer's context: its compression room was sized by earlier batches.
        let mut ctx = Compressors::default();
        for len in [10, 200_000, 1, 70_000, 65_536, 0, 300_000] {
            for data in [sample(len), crate::protocol::records::noise(len)] {
                let mut out = BytesMut::new();
                compress(Compression::lz4(), &data, &mut out, 2, &mut ctx).unwrap();
                assert!(decompress(CompressionType::Lz4, &out, usize::MAX, 2).unwrap() == data, "{len} bytes");
                assert!(out.len() <= max_compressed_len(Compression::lz4(), len), "{len} bytes within the bound");
            }
        }
    }

    #[test]
    fn every_codec_round_trips_for_both_magics() {
        for len in [0, 1, 100, 70_000, 200_000] {
            let data = sample(len);
            for c in [Compression::gzip(), Compression::snappy(), Compression::lz4(), Compression::zstd()] {
                for magic in [0i8, 2] {
                    if magic == 0 && c.codec() == CompressionType::Zstd {
                        continue;
                    }
                    let mut out = BytesMut::new();
                    compress(c, &data, &mut out, magic, &mut Compressors::default()).unwrap();
                    let back = decompress(c.codec(), &out, usize::MAX, magic).unwrap();
                    assert_eq!(back, data, "{c:?} len {len} magic {magic}");
                }
            }
        }
    }

    #[test]
    fn lz4_frames_from_the_standard_encoder_decode() {
        use lz4_flex::frame::{BlockMode, FrameEncoder, FrameInfo};
        let data = sample(150_000);
        let info = FrameInfo::new().content_checksum(true).block_checksums(true).block_mode(BlockMode::Linked);
        let mut enc = FrameEncoder::with_frame_info(info, Vec::new());
        enc.write_all(&data).unwrap();
        let frame = enc.finish().unwrap();
        // The standard encoder's header checksum must equal ours.
        let end = lz4_descriptor_end(&frame).unwrap();
        assert_eq!(frame[end], lz4_header_checksum(&frame[4..end]));
        assert_eq!(decompress(CompressionType::Lz4, &frame, usize::MAX, 2).unwrap(), data);
        assert_eq!(decompress(CompressionType::Lz4, &frame, usize::MAX, 0).unwrap(), data);
    }

    #[test]
    fn lz4_magic_0_uses_the_old_header_checksum() {
        let data = sample(1000);
        let mut v0 = BytesMut::new();
        compress(Compression::lz4(), &data, &mut v0, 0, &mut Compressors::default()).unwrap();
        let mut v2 = BytesMut::new();
        compress(Compression::lz4(), &data, &mut v2, 2, &mut Compressors::default()).unwrap();
        assert_eq!(v0[6], (xxh32(&v0[..6], 0) >> 8) as u8);
        assert_eq!(v2[6], (xxh32(&v2[4..6], 0) >> 8) as u8);
        assert_ne!(v0[6], v2[6]);
        assert_eq!(v0[7..], v2[7..]);
        // Magic 0 readers accept either checksum; newer readers insist on the correct one.
        assert_eq!(decompress(CompressionType::Lz4, &v0, usize::MAX, 0).unwrap(), data);
        assert_eq!(decompress(CompressionType::Lz4, &v2, usize::MAX, 0).unwrap(), data);
        assert!(decompress(CompressionType::Lz4, &v0, usize::MAX, 1).is_err());
    }

    #[test]
    fn snappy_accepts_raw_and_xerial() {
        let data = sample(100_000);
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(decompress(CompressionType::Snappy, &raw, usize::MAX, 2).unwrap(), data);

        let mut xerial = BytesMut::new();
        compress(Compression::Snappy, &data, &mut xerial, 2, &mut Compressors::default()).unwrap();
        assert_eq!(xerial[..8], XERIAL_MAGIC);
        assert_eq!(decompress(CompressionType::Snappy, &xerial, usize::MAX, 2).unwrap(), data);

        // Two xerial streams back to back read as one.
        let mut twice = xerial.to_vec();
        twice.extend_from_slice(&xerial);
        let mut expected = data.clone();
        expected.extend_from_slice(&data);
        assert_eq!(decompress(CompressionType::Snappy, &twice, usize::MAX, 2).unwrap(), expected);
    }

    #[test]
    fn output_limit_is_enforced_for_every_codec() {
        let zeros = vec![0u8; 4 << 20];
        for c in [Compression::gzip(), Compression::snappy(), Compression::lz4(), Compression::zstd()] {
            let mut out = BytesMut::new();
            compress(c, &zeros, &mut out, 2, &mut Compressors::default()).unwrap();
            assert!(out.len() < zeros.len() / 10, "{c:?} compressed to {}", out.len());
            assert!(matches!(decompress(c.codec(), &out, 1 << 20, 2), Err(DecompressError::TooLarge)), "{c:?}");
            assert_eq!(decompress(c.codec(), &out, 4 << 20, 2).unwrap().len(), 4 << 20);
        }
    }

    #[test]
    fn snappy_declared_length_is_not_trusted() {
        // A varint claiming 2^31 bytes, followed by almost nothing.
        let bomb = [0x80, 0x80, 0x80, 0x80, 0x08, 0x00];
        assert!(matches!(decompress(CompressionType::Snappy, &bomb, usize::MAX, 2), Err(DecompressError::Corrupt(_))));
        assert!(matches!(decompress(CompressionType::Snappy, &bomb, 1 << 20, 2), Err(DecompressError::TooLarge)));
    }

    #[test]
    fn levels_are_validated() {
        assert!(Compression::Gzip { level: 0 }.validate().is_err());
        assert!(Compression::Gzip { level: -1 }.validate().is_ok());
        assert!(Compression::Lz4 { level: 18 }.validate().is_err());
        assert!(Compression::Zstd { level: 23 }.validate().is_err());
        assert!(Compression::Zstd { level: -5 }.validate().is_ok());
        assert_eq!("zstd".parse::<CompressionType>().unwrap(), CompressionType::Zstd);
        assert!("brotli".parse::<CompressionType>().is_err());
    }
}
