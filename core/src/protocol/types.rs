//! Value types used by the generated messages: UTF-8 strings that share their buffer, Kafka
//! UUIDs, and newtypes for the entity kinds the specs label (topic names, broker ids, ...).

use std::fmt;
use std::ops::Deref;

use bytes::Bytes;

/// A UTF-8 string backed by `Bytes`, so decoding a string is a slice of the input rather than
/// a copy.
#[derive(Clone, Default, Eq)]
pub struct StrBytes(Bytes);

impl std::hash::Hash for StrBytes {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // By content, as equality is (the shortcut in `eq` only skips reading equal bytes).
        self.0.hash(state)
    }
}

impl StrBytes {
    /// Whether both are views of the same bytes: clones of one name (a producer's records
    /// and its map of topics) then compare without reading them.
    fn same_view(&self, other: &StrBytes) -> bool {
        self.0.as_ptr() == other.0.as_ptr() && self.0.len() == other.0.len()
    }
}

impl PartialEq for StrBytes {
    fn eq(&self, other: &StrBytes) -> bool {
        self.same_view(other) || self.0 == other.0
    }
}

impl Ord for StrBytes {
    fn cmp(&self, other: &StrBytes) -> std::cmp::Ordering {
        if self.same_view(other) {
            return std::cmp::Ordering::Equal;
        }
        self.0.cmp(&other.0)
    }
}

impl PartialOrd for StrBytes {
    fn partial_cmp(&self, other: &StrBytes) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl StrBytes {
    /// An empty string.
    pub const fn new() -> Self {
        StrBytes(Bytes::new())
    }

    /// Wraps a static string without copying.
    pub const fn from_static_str(s: &'static str) -> Self {
        StrBytes(Bytes::from_static(s.as_bytes()))
    }

    /// Validates `bytes` as UTF-8.
    pub fn from_utf8(bytes: Bytes) -> Result<Self, std::str::Utf8Error> {
        std::str::from_utf8(&bytes)?;
        Ok(StrBytes(bytes))
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor either validates UTF-8 or starts from a `str`.
        #[allow(unsafe_code)]
        unsafe {
            std::str::from_utf8_unchecked(&self.0)
        }
    }

    /// The underlying bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Gives back the underlying bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl Deref for StrBytes {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for StrBytes {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<String> for StrBytes {
    fn from(s: String) -> Self {
        StrBytes(Bytes::from(s))
    }
}

impl From<&str> for StrBytes {
    fn from(s: &str) -> Self {
        StrBytes(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl PartialEq<str> for StrBytes {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for StrBytes {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for StrBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for StrBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Kafka UUID (topic ids, directory ids, ...). Displayed the way Kafka prints it: URL-safe
/// base64 without padding.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uuid([u8; 16]);

impl Uuid {
    /// The all-zero UUID, which Kafka uses as "no id".
    pub const ZERO: Uuid = Uuid([0; 16]);

    /// Wraps 16 bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Uuid(bytes)
    }

    /// The 16 bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Whether this is the all-zero UUID.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }
}

impl std::str::FromStr for Uuid {
    type Err = InvalidUuid;

    /// Parses Kafka's form: 22 characters of URL-safe base64 without padding.
    fn from_str(s: &str) -> Result<Self, InvalidUuid> {
        let digit = |c: u8| -> Result<u32, InvalidUuid> {
            Ok(match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'-' => 62,
                b'_' => 63,
                _ => return Err(InvalidUuid),
            }
            .into())
        };
        let chars = s.as_bytes();
        if chars.len() != 22 {
            return Err(InvalidUuid);
        }
        let mut out = [0u8; 16];
        let mut o = 0;
        for chunk in chars.chunks(4) {
            let mut n = 0u32;
            for (i, c) in chunk.iter().enumerate() {
                n |= digit(*c)? << (18 - 6 * i);
            }
            for i in 0..chunk.len() - 1 {
                if o < 16 {
                    out[o] = (n >> (16 - 8 * i)) as u8;
                    o += 1;
                }
            }
        }
        Ok(Uuid(out))
    }
}

/// A string that is not a Kafka UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a Kafka UUID (22 characters of URL-safe base64)")]
pub struct InvalidUuid;

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::with_capacity(22);
        for chunk in self.0.chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
            let chars = chunk.len() + 1;
            for i in 0..chars {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        f.write_str(&out)
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uuid({self})")
    }
}

#[cfg(feature = "serde")]
mod serde_impls {
    use super::{StrBytes, Uuid};

    impl serde::Serialize for StrBytes {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(self.as_str())
        }
    }

    impl<'de> serde::Deserialize<'de> for StrBytes {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            String::deserialize(d).map(StrBytes::from)
        }
    }

    impl serde::Serialize for Uuid {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(self)
        }
    }

    impl<'de> serde::Deserialize<'de> for Uuid {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let s = String::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        }
    }
}

macro_rules! string_newtype {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(transparent))]
        pub struct $name(pub StrBytes);

        impl Deref for $name {
            type Target = StrBytes;
            fn deref(&self) -> &StrBytes {
                &self.0
            }
        }
        impl From<StrBytes> for $name {
            fn from(s: StrBytes) -> Self {
                $name(s)
            }
        }
        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(s.into())
            }
        }
        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.into())
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    )*};
}

macro_rules! int_newtype {
    ($($(#[$doc:meta])* $name:ident($ty:ty);)*) => {$(
        $(#[$doc])*
        #[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(transparent))]
        pub struct $name(pub $ty);

        impl Deref for $name {
            type Target = $ty;
            fn deref(&self) -> &$ty {
                &self.0
            }
        }
        impl From<$ty> for $name {
            fn from(v: $ty) -> Self {
                $name(v)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    )*};
}

string_newtype! {
    /// A topic name.
    TopicName;
    /// A consumer or share group id.
    GroupId;
    /// A transactional producer's id.
    TransactionalId;
}

/// Topic names the client copies into every record it hands out (a consumer's records, a
/// producer's deliveries) come from one static copy per name: a clone of a static `Bytes`
/// copies three words, where a clone of a shared one and its drop are two atomic operations
/// per record (a quarter of decoding a 1 KB record). Interned names live as long as the
/// process, so they are bounded ([`INTERNED_BYTES_MAX`]); a name that does not fit is used
/// as it comes, counted. The one state the core shares across clients: a cache whose
/// answers equal its inputs (names compare by content), so no client behaves differently
/// for it. Its lock is taken once per topic a producer starts and once per fetched topic
/// with data, and held for one lookup.
static INTERNED: std::sync::Mutex<Interned> =
    std::sync::Mutex::new(Interned { names: std::collections::BTreeSet::new(), bytes: 0 });

/// Bounds the memory [`TopicName::interned`] keeps for good, each name counted with
/// [`INTERNED_NAME_OVERHEAD`] (about 3,300 names of 250 bytes, or 16,000 of a few bytes).
const INTERNED_BYTES_MAX: usize = 1 << 20;

/// What a kept name costs beyond its bytes: its allocation's header and rounding, and its
/// slot in the set.
const INTERNED_NAME_OVERHEAD: usize = 64;

struct Interned {
    names: std::collections::BTreeSet<&'static str>,
    bytes: usize,
}

impl Interned {
    /// The static copy of `name`, made now if there is room left.
    fn get_or_leak(&mut self, name: &str) -> Option<&'static str> {
        if let Some(&kept) = self.names.get(name) {
            return Some(kept);
        }
        let cost = name.len() + INTERNED_NAME_OVERHEAD;
        if self.bytes + cost > INTERNED_BYTES_MAX {
            return None;
        }
        let kept: &'static str = Box::leak(name.into());
        self.bytes += cost;
        self.names.insert(kept);
        Some(kept)
    }
}

impl TopicName {
    /// This name as a static copy, shared by every later call with the same name, whose
    /// clones and drops touch no reference count: for a name copied into many records. The
    /// copy lives as long as the process. Copies are made until they take about 1 MiB (with
    /// their bookkeeping) in the process; a name that does not fit in what is left is
    /// returned as it is. The consumer's records and the producer's deliveries carry interned
    /// names, within that bound.
    pub fn interned(&self) -> TopicName {
        let kept = INTERNED.lock().unwrap_or_else(|e| e.into_inner()).get_or_leak(self.as_str());
        kept.map_or_else(|| self.clone(), |name| TopicName(StrBytes::from_static_str(name)))
    }
}

int_newtype! {
    /// A broker's node id.
    BrokerId(i32);
    /// A producer id assigned by InitProducerId.
    ProducerId(i64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interned_names_are_one_static_copy_per_name_within_a_bound() {
        let a = TopicName::from("interned-a").interned();
        let again = TopicName::from(String::from("interned-a")).interned();
        assert_eq!(a.as_str(), "interned-a");
        assert_eq!(a.as_bytes().as_ptr(), again.as_bytes().as_ptr(), "one copy for both");
        assert_ne!(TopicName::from("interned-b").interned().as_bytes().as_ptr(), a.as_bytes().as_ptr());

        let mut local = Interned { names: std::collections::BTreeSet::new(), bytes: 0 };
        let long = "x".repeat(INTERNED_BYTES_MAX / 2 - INTERNED_NAME_OVERHEAD);
        assert!(local.get_or_leak(&long).is_some());
        assert!(local.get_or_leak(&long[66..]).is_some());
        assert_eq!(local.bytes, INTERNED_BYTES_MAX - 66, "each name counted with its overhead");
        assert!(local.get_or_leak("yz").is_some(), "up to the bound: kept");
        assert_eq!(local.bytes, INTERNED_BYTES_MAX);
        assert!(local.get_or_leak("y").is_none(), "past the bound: not kept");
        assert!(local.get_or_leak(&long).is_some(), "a kept name is still found");
        assert_eq!(local.names.len(), 3);
    }

    #[test]
    fn strings_compare_by_content_whether_or_not_they_share_bytes() {
        use std::cmp::Ordering::{Equal, Less};
        let whole = StrBytes::from("abc");
        let prefix = StrBytes::from_utf8(whole.as_bytes().slice(..2)).unwrap();
        assert_eq!(prefix.as_bytes().as_ptr(), whole.as_bytes().as_ptr(), "one allocation");
        assert_eq!(prefix.cmp(&whole), Less, "same start, shorter");
        assert_ne!(prefix, whole);
        assert_eq!(whole.clone().cmp(&whole), Equal);
        let copy = StrBytes::from("abc");
        assert_eq!(copy, whole, "equal content in another allocation");
        assert_eq!(copy.cmp(&whole), Equal);
        assert_eq!(StrBytes::from("abd").cmp(&whole), std::cmp::Ordering::Greater);
        let state = std::collections::hash_map::RandomState::new();
        assert_eq!(
            std::hash::BuildHasher::hash_one(&state, &copy),
            std::hash::BuildHasher::hash_one(&state, &whole),
            "equal strings hash alike"
        );
    }

    #[test]
    fn uuid_displays_as_kafka_base64() {
        // Kafka prints Uuid(0x0123456789abcdef, 0xfedcba9876543210) this way.
        let u = Uuid::from_bytes([
            0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10,
        ]);
        assert_eq!(u.to_string(), "ASNFZ4mrze_-3LqYdlQyEA");
        assert_eq!(Uuid::ZERO.to_string(), "AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!("ASNFZ4mrze_-3LqYdlQyEA".parse::<Uuid>().unwrap(), u);
        assert!("ASNFZ4mrze_-3LqYdlQyE!".parse::<Uuid>().is_err());
    }
}
