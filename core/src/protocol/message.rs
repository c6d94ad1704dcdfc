//! The traits every generated message implements, and version ranges.

use bytes::{Bytes, BytesMut};

use super::messages::ApiKey;
use super::primitives::{DecodeError, EncodeError};

#[cfg(test)]
thread_local! {
    static UNSTABLE_IN_TESTS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether a test on this thread asked for the versions Kafka marks unstable
/// ([`with_unstable_versions`]); always false outside tests. Generated codecs accept those
/// versions then, as with the `unstable-versions` feature, so that their round trips are
/// tested without a build of their own.
#[inline]
pub(crate) fn unstable_versions_in_tests() -> bool {
    #[cfg(test)]
    return UNSTABLE_IN_TESTS.with(|u| u.get());
    #[cfg(not(test))]
    false
}

/// Runs `f` with the unstable versions accepted on this thread.
#[cfg(test)]
pub(crate) fn with_unstable_versions<T>(f: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            UNSTABLE_IN_TESTS.with(|u| u.set(false));
        }
    }
    UNSTABLE_IN_TESTS.with(|u| u.set(true));
    let _reset = Reset;
    f()
}

/// What every generated round-trip test checks of a value at a version: `encode` writes
/// `encoded_len` bytes, `decode` reads them all back to an equal value, and the spliced
/// encoding (every record set left out) with its record sets put back is the same bytes.
#[cfg(test)]
pub(crate) fn check_round_trip<M: Message>(m: &M, version: i16) {
    let mut buf = BytesMut::new();
    m.encode(&mut buf, version).unwrap_or_else(|e| panic!("{} v{version}: {e}", M::NAME));
    assert_eq!(buf.len(), m.encoded_len(version), "{} v{version}: encoded_len", M::NAME);
    let encoded = buf.freeze();
    let mut bytes = encoded.clone();
    let back = M::decode(&mut bytes, version).unwrap_or_else(|e| panic!("{} v{version}: {e}", M::NAME));
    assert!(bytes.is_empty(), "{} v{version}: trailing bytes", M::NAME);
    assert_eq!(&back, m, "{} v{version}", M::NAME);
    let mut head = BytesMut::new();
    let mut splices = super::primitives::Splices::new(1);
    m.encode_spliced(&mut head, &mut splices, version)
        .unwrap_or_else(|e| panic!("{} v{version} spliced: {e}", M::NAME));
    assert!(splices.join(&head) == encoded[..], "{} v{version}: spliced encoding differs", M::NAME);
}

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
    /// [`Codec::encode`], except that record sets of at least the splices' minimum length
    /// are not copied into `buf` but listed in `splices`, with where they belong. Structures
    /// without record sets encode whole.
    fn encode_spliced(
        &self,
        buf: &mut BytesMut,
        splices: &mut crate::protocol::primitives::Splices,
        version: i16,
    ) -> Result<(), EncodeError> {
        let _ = splices;
        self.encode(buf, version)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::messages::InitProducerIdRequest;

    /// Outside [`with_unstable_versions`], an unstable version is refused as the `unstable-versions`
    /// feature's absence says; inside, it is spoken, and only on that thread.
    #[test]
    fn unstable_versions_are_spoken_only_where_a_test_asks() {
        let top = InitProducerIdRequest::VERSIONS.max + 1;
        if cfg!(feature = "unstable-versions") {
            return; // every version is stable then
        }
        let encode = || InitProducerIdRequest::default().encode(&mut BytesMut::new(), top);
        assert!(matches!(encode(), Err(EncodeError::UnsupportedVersion { .. })));
        with_unstable_versions(|| {
            assert!(encode().is_ok());
            let other = std::thread::spawn(move || InitProducerIdRequest::default().encode(&mut BytesMut::new(), top));
            assert!(other.join().unwrap().is_err(), "another thread");
        });
        assert!(encode().is_err(), "after the test's closure");
    }
}
