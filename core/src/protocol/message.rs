//! The traits every generated message implements, and version ranges.

use bytes::{Bytes, BytesMut};

use super::messages::ApiKey;
use super::primitives::{DecodeError, EncodeError};

/// An inclusive range of protocol versions; empty when `min > max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VersionRange {
    /// Lowest version.
    pub min: i16,
    /// Highest version.
    pub max: i16,
}

impl VersionRange {
    /// The range with no versions.
    pub const EMPTY: VersionRange = VersionRange { min: 0, max: -1 };

    /// `min..=max`.
    pub const fn new(min: i16, max: i16) -> Self {
        VersionRange { min, max }
    }

    /// Whether the range holds `version`.
    pub const fn contains(&self, version: i16) -> bool {
        self.min <= version && version <= self.max
    }

    /// Whether the range holds no version.
    pub const fn is_empty(&self) -> bool {
        self.min > self.max
    }

    /// The versions both ranges hold.
    pub fn intersect(&self, other: VersionRange) -> VersionRange {
        let r = VersionRange { min: self.min.max(other.min), max: self.max.min(other.max) };
        if r.is_empty() {
            VersionRange::EMPTY
        } else {
            r
        }
    }

    /// Every version in the range, lowest first.
    pub fn iter(&self) -> impl Iterator<Item = i16> {
        self.min..=self.max
    }
}

/// Encoding and decoding at a given version. Implemented by every generated structure.
pub trait Codec: Sized {
    /// Appends the encoding of `self` at `version` to `buf`.
    fn encode(&self, buf: &mut BytesMut, version: i16) -> Result<(), EncodeError>;
    /// Decodes a value at `version` from the front of `buf`, advancing it. String and byte
    /// fields share `buf`'s memory.
    fn decode(buf: &mut Bytes, version: i16) -> Result<Self, DecodeError>;
    /// The exact number of bytes `encode` appends at `version`.
    fn encoded_len(&self, version: i16) -> usize;
}

/// A top-level message: a request or response body, a header, or a data payload.
pub trait Message: Codec + Default + Clone + std::fmt::Debug + PartialEq {
    /// The message's name in Kafka's specs, e.g. `MetadataRequest`.
    const NAME: &'static str;
    /// The versions sansa encodes and decodes.
    const VERSIONS: VersionRange;
    /// The first flexible version (compact encodings and tagged fields), if any.
    const FLEXIBLE_FROM: Option<i16>;
}

/// A request body, linked to its API and its response type.
pub trait Request: Message {
    /// The API this request belongs to.
    const API_KEY: ApiKey;
    /// The body the broker answers with.
    type Response: Response;
}

/// A response body.
pub trait Response: Message {
    /// The API this response belongs to.
    const API_KEY: ApiKey;
}
