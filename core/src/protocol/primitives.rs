//! Wire primitives shared by the generated messages and the record codecs: fixed-width
//! integers, varints (zig-zag and unsigned), classic and compact strings, bytes and arrays,
//! UUIDs and tagged-field sections.
//!
//! Decoders read from a `Bytes` cursor so that string and byte fields are zero-copy slices
//! of the input. Every length read from the wire is checked against the bytes actually
//! present before anything is allocated.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::types::{StrBytes, Uuid};

/// Why a message or a record could not be decoded. `what` names the field being read, e.g.
/// `MetadataResponse.Topics.Name`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended inside a value.
    #[error("{what}: needs {needed} more bytes but only {remaining} are left")]
    Truncated {
        /// Field being read.
        what: &'static str,
        /// Bytes the value needs.
        needed: usize,
        /// Bytes that were left.
        remaining: usize,
    },
    /// A length or count that is negative (other than the null marker) or larger than the input.
    #[error("{what}: invalid length {len}")]
    InvalidLength {
        /// Field being read.
        what: &'static str,
        /// The length found on the wire.
        len: i64,
    },
    /// A string that is not UTF-8.
    #[error("{what}: string is not valid UTF-8")]
    InvalidUtf8 {
        /// Field being read.
        what: &'static str,
    },
    /// A varint with more continuation bytes than its type allows.
    #[error("{what}: varint is too long")]
    VarintTooLong {
        /// Field being read.
        what: &'static str,
    },
    /// Null where the version does not allow it.
    #[error("{what}: null is not allowed in version {version}")]
    UnexpectedNull {
        /// Field being read.
        what: &'static str,
        /// Message version being decoded.
        version: i16,
    },
    /// A tagged field whose payload does not match its declared size.
    #[error("{what}: tagged field {tag} declares {declared} bytes but its value took {used}")]
    TaggedFieldSize {
        /// Field being read.
        what: &'static str,
        /// Tag number.
        tag: u32,
        /// Size written before the payload.
        declared: usize,
        /// Bytes the decoded value took.
        used: usize,
    },
    /// The message type has no such version.
    #[error("{message} has no version {version}")]
    UnsupportedVersion {
        /// Message name.
        message: &'static str,
        /// Requested version.
        version: i16,
    },
    /// An API key sansa does not know.
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    /// A value outside the set the field allows.
    #[error("{what}: invalid value {value}")]
    InvalidValue {
        /// Field being read.
        what: &'static str,
        /// The offending value.
        value: i64,
    },
    /// Bytes left over after a complete value where none were expected.
    #[error("{what}: {remaining} unexpected bytes after the end")]
    TrailingBytes {
        /// What was decoded.
        what: &'static str,
        /// Bytes left over.
        remaining: usize,
    },
}

/// Why a message could not be encoded. These are caller mistakes: the value does not fit the
/// version asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The message type has no such version.
    #[error("{message} has no version {version}")]
    UnsupportedVersion {
        /// Message name.
        message: &'static str,
        /// Requested version.
        version: i16,
    },
    /// A field holds a non-default value but the version cannot carry it, and the field is not
    /// marked ignorable.
    #[error("{field} cannot be sent in version {version}; it was set to a non-default value")]
    FieldNotInVersion {
        /// Field name.
        field: &'static str,
        /// Message version being encoded.
        version: i16,
    },
    /// A field is null but the version does not allow null.
    #[error("{field} cannot be null in version {version}")]
    NullNotAllowed {
        /// Field name.
        field: &'static str,
        /// Message version being encoded.
        version: i16,
    },
    /// A string, byte array or array longer than its length prefix can express.
    #[error("{field} is too long to encode ({len} elements or bytes)")]
    TooLong {
        /// Field name.
        field: &'static str,
        /// Its length.
        len: usize,
    },
}

#[inline]
fn need(buf: &Bytes, n: usize, what: &'static str) -> Result<(), DecodeError> {
    if buf.remaining() < n {
        Err(DecodeError::Truncated { what, needed: n, remaining: buf.remaining() })
    } else {
        Ok(())
    }
}

macro_rules! fixed_readers {
    ($($name:ident: $ty:ty = $get:ident;)*) => {$(
        /// Reads a big-endian fixed-width value.
        #[inline]
        pub fn $name(buf: &mut Bytes, what: &'static str) -> Result<$ty, DecodeError> {
            need(buf, std::mem::size_of::<$ty>(), what)?;
            Ok(buf.$get())
        }
    )*};
}

fixed_readers! {
    get_i8: i8 = get_i8;
    get_i16: i16 = get_i16;
    get_i32: i32 = get_i32;
    get_i64: i64 = get_i64;
    get_u16: u16 = get_u16;
    get_u32: u32 = get_u32;
    get_f64: f64 = get_f64;
}

/// Reads a boolean; like the Java client, any non-zero byte is true.
#[inline]
pub fn get_bool(buf: &mut Bytes, what: &'static str) -> Result<bool, DecodeError> {
    Ok(get_i8(buf, what)? != 0)
}

/// Reads a 16-byte UUID.
#[inline]
pub fn get_uuid(buf: &mut Bytes, what: &'static str) -> Result<Uuid, DecodeError> {
    need(buf, 16, what)?;
    let mut raw = [0u8; 16];
    buf.copy_to_slice(&mut raw);
    Ok(Uuid::from_bytes(raw))
}

/// Reads an unsigned varint of at most 5 bytes (32 bits).
#[inline]
pub fn get_uvarint(buf: &mut Bytes, what: &'static str) -> Result<u32, DecodeError> {
    let v = get_uvarlong_bounded(buf, what, 5)?;
    u32::try_from(v).map_err(|_| DecodeError::VarintTooLong { what })
}

/// Reads an unsigned varint of at most 10 bytes (64 bits).
#[inline]
pub fn get_uvarlong(buf: &mut Bytes, what: &'static str) -> Result<u64, DecodeError> {
    get_uvarlong_bounded(buf, what, 10)
}

#[inline]
fn get_uvarlong_bounded(buf: &mut Bytes, what: &'static str, max_bytes: u32) -> Result<u64, DecodeError> {
    let mut value: u64 = 0;
    let mut shift = 0u32;
    for _ in 0..max_bytes {
        need(buf, 1, what)?;
        let b = buf.get_u8();
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
    }
    Err(DecodeError::VarintTooLong { what })
}

/// Reads a zig-zag encoded signed varint (32 bits).
#[inline]
pub fn get_varint(buf: &mut Bytes, what: &'static str) -> Result<i32, DecodeError> {
    let v = get_uvarint(buf, what)?;
    Ok(((v >> 1) as i32) ^ -((v & 1) as i32))
}

/// Reads a zig-zag encoded signed varlong (64 bits).
#[inline]
pub fn get_varlong(buf: &mut Bytes, what: &'static str) -> Result<i64, DecodeError> {
    let v = get_uvarlong(buf, what)?;
    Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
}

/// Reads a length prefix: int16/int32 in classic versions, uvarint(len + 1) in compact ones.
/// Returns `None` for null. Rejects other negative values.
#[inline]
fn get_len(buf: &mut Bytes, compact: bool, wide: bool, what: &'static str) -> Result<Option<usize>, DecodeError> {
    let len: i64 = if compact {
        i64::from(get_uvarint(buf, what)?) - 1
    } else if wide {
        i64::from(get_i32(buf, what)?)
    } else {
        i64::from(get_i16(buf, what)?)
    };
    match len {
        -1 => Ok(None),
        l if l < 0 => Err(DecodeError::InvalidLength { what, len }),
        l => Ok(Some(l as usize)),
    }
}

/// Takes `len` bytes from the front of `buf` without copying.
#[inline]
pub fn take_bytes(buf: &mut Bytes, len: usize, what: &'static str) -> Result<Bytes, DecodeError> {
    if len > buf.remaining() {
        return Err(DecodeError::InvalidLength { what, len: len as i64 });
    }
    Ok(buf.split_to(len))
}

/// Reads a nullable string (int16 length, or compact).
#[inline]
pub fn get_nullable_string(
    buf: &mut Bytes,
    compact: bool,
    what: &'static str,
) -> Result<Option<StrBytes>, DecodeError> {
    match get_len(buf, compact, false, what)? {
        None => Ok(None),
        Some(len) => {
            let raw = take_bytes(buf, len, what)?;
            StrBytes::from_utf8(raw).map(Some).map_err(|_| DecodeError::InvalidUtf8 { what })
        }
    }
}

/// Reads a nullable byte array (int32 length, or compact).
#[inline]
pub fn get_nullable_bytes(buf: &mut Bytes, compact: bool, what: &'static str) -> Result<Option<Bytes>, DecodeError> {
    match get_len(buf, compact, true, what)? {
        None => Ok(None),
        Some(len) => take_bytes(buf, len, what).map(Some),
    }
}

/// Reads an array count (int32, or compact). Returns `None` for null. The count is checked
/// against the remaining input, given that each element takes at least `min_element_size`
/// bytes, so that a hostile count can never size an allocation.
#[inline]
pub fn get_array_len(
    buf: &mut Bytes,
    compact: bool,
    min_element_size: usize,
    what: &'static str,
) -> Result<Option<usize>, DecodeError> {
    let len = get_len(buf, compact, true, what)?;
    if let Some(n) = len {
        if n.saturating_mul(min_element_size) > buf.remaining() {
            return Err(DecodeError::InvalidLength { what, len: n as i64 });
        }
    }
    Ok(len)
}

/// Requires a value that the version does not allow to be null.
#[inline]
pub fn non_null<T>(value: Option<T>, what: &'static str, version: i16) -> Result<T, DecodeError> {
    value.ok_or(DecodeError::UnexpectedNull { what, version })
}

// ---------------------------------------------------------------------------------------
// Encoding

/// Bytes an unsigned varint takes.
#[inline]
pub const fn uvarint_len(v: u32) -> usize {
    uvarlong_len(v as u64)
}

/// Bytes an unsigned varlong takes.
#[inline]
pub const fn uvarlong_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Bytes a zig-zag varint takes.
#[inline]
pub const fn varint_len(v: i32) -> usize {
    uvarint_len(((v << 1) ^ (v >> 31)) as u32)
}

/// Bytes a zig-zag varlong takes.
#[inline]
pub const fn varlong_len(v: i64) -> usize {
    uvarlong_len(((v << 1) ^ (v >> 63)) as u64)
}

/// Writes an unsigned varint.
#[inline]
pub fn put_uvarint(buf: &mut BytesMut, v: u32) {
    put_uvarlong(buf, u64::from(v));
}

/// Writes an unsigned varlong.
#[inline]
pub fn put_uvarlong(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// Writes a zig-zag varint.
#[inline]
pub fn put_varint(buf: &mut BytesMut, v: i32) {
    put_uvarint(buf, ((v << 1) ^ (v >> 31)) as u32);
}

/// Writes a zig-zag varlong.
#[inline]
pub fn put_varlong(buf: &mut BytesMut, v: i64) {
    put_uvarlong(buf, ((v << 1) ^ (v >> 63)) as u64);
}

/// Bytes a length prefix takes.
#[inline]
pub fn len_prefix_len(len: Option<usize>, compact: bool, wide: bool) -> usize {
    match (compact, wide) {
        (true, _) => uvarint_len(len.map_or(0, |l| l as u32 + 1)),
        (false, true) => 4,
        (false, false) => 2,
    }
}

/// Writes a length prefix (`None` = null).
#[inline]
pub fn put_len(
    buf: &mut BytesMut,
    len: Option<usize>,
    compact: bool,
    wide: bool,
    field: &'static str,
) -> Result<(), EncodeError> {
    if compact {
        let v = match len {
            None => 0,
            Some(l) => {
                u32::try_from(l).ok().and_then(|l| l.checked_add(1)).ok_or(EncodeError::TooLong { field, len: l })?
            }
        };
        put_uvarint(buf, v);
    } else if wide {
        let v = match len {
            None => -1,
            Some(l) => i32::try_from(l).map_err(|_| EncodeError::TooLong { field, len: l })?,
        };
        buf.put_i32(v);
    } else {
        let v = match len {
            None => -1,
            Some(l) => i16::try_from(l).map_err(|_| EncodeError::TooLong { field, len: l })?,
        };
        buf.put_i16(v);
    }
    Ok(())
}

/// Writes a nullable string.
#[inline]
pub fn put_nullable_string(
    buf: &mut BytesMut,
    v: Option<&str>,
    compact: bool,
    field: &'static str,
) -> Result<(), EncodeError> {
    put_len(buf, v.map(str::len), compact, false, field)?;
    if let Some(s) = v {
        buf.put_slice(s.as_bytes());
    }
    Ok(())
}

/// Writes a nullable byte array.
#[inline]
pub fn put_nullable_bytes(
    buf: &mut BytesMut,
    v: Option<&[u8]>,
    compact: bool,
    field: &'static str,
) -> Result<(), EncodeError> {
    put_len(buf, v.map(<[u8]>::len), compact, true, field)?;
    if let Some(b) = v {
        buf.put_slice(b);
    }
    Ok(())
}

/// Record sets that [`Codec::encode_spliced`](crate::protocol::Codec::encode_spliced) left
/// out of its buffer, in order, each with the length the buffer had where its bytes belong.
/// A writer sends the buffer up to the first, the record set itself, and so on: a Produce
/// request's batches go out from the memory they were sealed in instead of being copied
/// into the frame first.
#[derive(Debug, Clone, Default)]
pub struct Splices {
    min_len: usize,
    list: Vec<Spliced>,
}

/// A record set left out of an encoding buffer: it belongs after the buffer's first `at`
/// bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spliced {
    /// Where in the buffer (bytes from its start when encoding began) the record set goes.
    pub at: usize,
    /// The record set.
    pub bytes: Bytes,
}

impl Splices {
    /// Splices that leave out record sets of at least `min_len` bytes (smaller ones are
    /// copied: a separate write would cost more than the copy).
    pub fn new(min_len: usize) -> Splices {
        Splices { min_len: min_len.max(1), list: Vec::new() }
    }

    /// Takes the record sets left out, leaving none.
    pub fn take(&mut self) -> Vec<Spliced> {
        std::mem::take(&mut self.list)
    }

    /// Forgets record sets past the first `len` (an encoding that failed).
    pub fn truncate(&mut self, len: usize) {
        self.list.truncate(len);
    }

    /// How many record sets were left out.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether none was.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// `buf` with the record sets put back where they belong: what `encode` writes.
    pub fn join(&self, buf: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(buf.len() + self.list.iter().map(|s| s.bytes.len()).sum::<usize>());
        let mut from = 0;
        for s in &self.list {
            out.extend_from_slice(&buf[from..s.at]);
            out.extend_from_slice(&s.bytes);
            from = s.at;
        }
        out.extend_from_slice(&buf[from..]);
        out
    }
}

/// Writes a record set's length, and the record set itself unless it is large enough to
/// leave out (see [`Splices`]).
#[inline]
pub fn put_records_spliced(
    buf: &mut BytesMut,
    splices: &mut Splices,
    v: &Bytes,
    compact: bool,
    field: &'static str,
) -> Result<(), EncodeError> {
    put_len(buf, Some(v.len()), compact, true, field)?;
    if v.len() >= splices.min_len {
        splices.list.push(Spliced { at: buf.len(), bytes: v.clone() });
    } else {
        buf.put_slice(v);
    }
    Ok(())
}

/// Writes a UUID.
#[inline]
pub fn put_uuid(buf: &mut BytesMut, v: &Uuid) {
    buf.put_slice(v.as_bytes());
}

/// Bytes a nullable string takes.
#[inline]
pub fn string_len(v: Option<&str>, compact: bool) -> usize {
    len_prefix_len(v.map(str::len), compact, false) + v.map_or(0, str::len)
}

/// Bytes a nullable byte array takes.
#[inline]
pub fn bytes_len(v: Option<&[u8]>, compact: bool) -> usize {
    len_prefix_len(v.map(<[u8]>::len), compact, true) + v.map_or(0, <[u8]>::len)
}

// ---------------------------------------------------------------------------------------
// Tagged fields

/// A tagged field that this version of sansa does not know, kept so it can be re-encoded.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RawTaggedField {
    /// Tag number.
    pub tag: u32,
    /// Payload, exactly as it was on the wire.
    pub data: Bytes,
}

/// Reads the header of one tagged field: its tag and its payload, split off the input.
#[inline]
pub fn get_tagged_field(buf: &mut Bytes, what: &'static str) -> Result<(u32, Bytes), DecodeError> {
    let tag = get_uvarint(buf, what)?;
    let size = get_uvarint(buf, what)? as usize;
    let data = take_bytes(buf, size, what)?;
    Ok((tag, data))
}

/// Checks that a known tagged field's decoder consumed its whole payload.
#[inline]
pub fn finish_tagged_field(data: &Bytes, tag: u32, declared: usize, what: &'static str) -> Result<(), DecodeError> {
    if data.has_remaining() {
        return Err(DecodeError::TaggedFieldSize { what, tag, declared, used: declared - data.remaining() });
    }
    Ok(())
}

/// Bytes a raw tagged field takes, header included.
#[inline]
pub fn raw_tagged_field_len(f: &RawTaggedField) -> usize {
    uvarint_len(f.tag) + uvarint_len(f.data.len() as u32) + f.data.len()
}

/// Writes a raw tagged field, header included.
#[inline]
pub fn put_raw_tagged_field(buf: &mut BytesMut, f: &RawTaggedField) {
    put_uvarint(buf, f.tag);
    put_uvarint(buf, f.data.len() as u32);
    buf.put_slice(&f.data);
}

/// Writes the unknown tagged fields whose tag is below `below`, starting at `*next`, so that
/// known and unknown fields come out in ascending tag order as the protocol requires.
#[inline]
pub fn put_raw_tagged_fields_below(buf: &mut BytesMut, unknown: &[RawTaggedField], next: &mut usize, below: u32) {
    while let Some(f) = unknown.get(*next) {
        if f.tag >= below {
            break;
        }
        put_raw_tagged_field(buf, f);
        *next += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_match_their_length() {
        for v in [0i64, 1, -1, 63, -64, 64, 300, -300, i32::MAX as i64, i32::MIN as i64, i64::MAX, i64::MIN] {
            let mut buf = BytesMut::new();
            put_varlong(&mut buf, v);
            assert_eq!(buf.len(), varlong_len(v), "{v}");
            let mut b = buf.freeze();
            assert_eq!(get_varlong(&mut b, "v").unwrap(), v);
        }
        for v in [0u32, 1, 127, 128, 16383, 16384, u32::MAX] {
            let mut buf = BytesMut::new();
            put_uvarint(&mut buf, v);
            assert_eq!(buf.len(), uvarint_len(v));
            let mut b = buf.freeze();
            assert_eq!(get_uvarint(&mut b, "v").unwrap(), v);
        }
    }

    #[test]
    fn overlong_varint_is_rejected() {
        let mut b = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert!(matches!(get_uvarint(&mut b, "v"), Err(DecodeError::VarintTooLong { .. })));
    }

    #[test]
    fn lengths_are_checked_before_allocating() {
        let mut b = Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff, 0x00]);
        assert!(matches!(get_array_len(&mut b, false, 1, "a"), Err(DecodeError::InvalidLength { .. })));
        let mut b = Bytes::from_static(&[0xff, 0xfe]);
        assert!(matches!(get_nullable_string(&mut b, false, "s"), Err(DecodeError::InvalidLength { len: -2, .. })));
        let mut b = Bytes::from_static(&[0xff, 0xff]);
        assert_eq!(get_nullable_string(&mut b, false, "s").unwrap(), None);
    }
}
