//! Turning keys and values into bytes and back: a [`Serializer`] and [`Deserializer`] trait
//! and the built-ins the Java client ships (bytes, UTF-8 strings, big-endian integers and
//! floats), plus JSON through serde behind the `json` feature.
//!
//! ```
//! use bytes::Bytes;
//! use sansa::protocol::TopicName;
//! use sansa::serialization::{BigEndian, Deserializer, Serializer, Utf8};
//!
//! let topic = TopicName::from("t");
//! let mut headers = Vec::new();
//! let bytes = BigEndian.serialize(&topic, &mut headers, &42i64).unwrap();
//! assert_eq!(&bytes[..], &42i64.to_be_bytes());
//! let text: String = Utf8.deserialize(&topic, &[], &Bytes::from_static(b"hi")).unwrap();
//! assert_eq!(text, "hi");
//! ```

use bytes::Bytes;

use crate::protocol::records::Header;
use crate::protocol::TopicName;

/// Why a key or value could not be turned into bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SerializeError(pub String);

/// Why bytes could not be turned into a key or value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DeserializeError(pub String);

/// Turns `T` into the bytes of a record's key or value. It may add headers (a schema id,
/// a content type).
pub trait Serializer<T: ?Sized>: Send + Sync {
    /// The bytes for `value`, sent to `topic`.
    fn serialize(&self, topic: &TopicName, headers: &mut Vec<Header>, value: &T) -> Result<Bytes, SerializeError>;
}

/// Turns a record's key or value bytes back into `T`.
pub trait Deserializer<T>: Send + Sync {
    /// The value in `data`, read from `topic`.
    fn deserialize(&self, topic: &TopicName, headers: &[Header], data: &Bytes) -> Result<T, DeserializeError>;
}

/// Bytes as they are (Java's `ByteArraySerializer`); deserializing is zero-copy for
/// [`Bytes`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Raw;

impl Serializer<[u8]> for Raw {
    fn serialize(&self, _: &TopicName, _: &mut Vec<Header>, value: &[u8]) -> Result<Bytes, SerializeError> {
        Ok(Bytes::copy_from_slice(value))
    }
}

impl Serializer<Vec<u8>> for Raw {
    fn serialize(&self, _: &TopicName, _: &mut Vec<Header>, value: &Vec<u8>) -> Result<Bytes, SerializeError> {
        Ok(Bytes::copy_from_slice(value))
    }
}

impl Serializer<Bytes> for Raw {
    fn serialize(&self, _: &TopicName, _: &mut Vec<Header>, value: &Bytes) -> Result<Bytes, SerializeError> {
        Ok(value.clone())
    }
}

impl Deserializer<Bytes> for Raw {
    fn deserialize(&self, _: &TopicName, _: &[Header], data: &Bytes) -> Result<Bytes, DeserializeError> {
        Ok(data.clone())
    }
}

impl Deserializer<Vec<u8>> for Raw {
    fn deserialize(&self, _: &TopicName, _: &[Header], data: &Bytes) -> Result<Vec<u8>, DeserializeError> {
        Ok(data.to_vec())
    }
}

/// UTF-8 text (Java's `StringSerializer`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Utf8;

impl Serializer<str> for Utf8 {
    fn serialize(&self, _: &TopicName, _: &mut Vec<Header>, value: &str) -> Result<Bytes, SerializeError> {
        Ok(Bytes::copy_from_slice(value.as_bytes()))
    }
}

impl Serializer<String> for Utf8 {
    fn serialize(&self, _: &TopicName, _: &mut Vec<Header>, value: &String) -> Result<Bytes, SerializeError> {
        Ok(Bytes::copy_from_slice(value.as_bytes()))
    }
}

impl Deserializer<String> for Utf8 {
    fn deserialize(&self, _: &TopicName, _: &[Header], data: &Bytes) -> Result<String, DeserializeError> {
        String::from_utf8(data.to_vec()).map_err(|e| DeserializeError(format!("not UTF-8: {e}")))
    }
}

/// Numbers in big-endian byte order, as Java's `ShortSerializer`, `IntegerSerializer`,
/// `LongSerializer`, `FloatSerializer` and `DoubleSerializer` write them.
#[derive(Debug, Clone, Copy, Default)]
pub struct BigEndian;

macro_rules! big_endian {
    ($($t:ty),*) => {$(
        impl Serializer<$t> for BigEndian {
            fn serialize(&self, _: &TopicName, _: &mut Vec<Header>, value: &$t) -> Result<Bytes, SerializeError> {
                Ok(Bytes::copy_from_slice(&value.to_be_bytes()))
            }
        }

        impl Deserializer<$t> for BigEndian {
            fn deserialize(&self, _: &TopicName, _: &[Header], data: &Bytes) -> Result<$t, DeserializeError> {
                let bytes: [u8; std::mem::size_of::<$t>()] = data[..].try_into().map_err(|_| {
                    DeserializeError(format!(
                        "{} bytes where a {} takes {}",
                        data.len(),
                        stringify!($t),
                        std::mem::size_of::<$t>()
                    ))
                })?;
                Ok(<$t>::from_be_bytes(bytes))
            }
        }
    )*};
}

big_endian!(i16, i32, i64, u16, u32, u64, f32, f64);

/// Any serde type as JSON (`json` feature).
#[cfg(feature = "json")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

#[cfg(feature = "json")]
impl<T: serde::Serialize + ?Sized> Serializer<T> for Json {
    fn serialize(&self, _: &TopicName, _: &mut Vec<Header>, value: &T) -> Result<Bytes, SerializeError> {
        serde_json::to_vec(value).map(Bytes::from).map_err(|e| SerializeError(e.to_string()))
    }
}

#[cfg(feature = "json")]
impl<T: serde::de::DeserializeOwned> Deserializer<T> for Json {
    fn deserialize(&self, _: &TopicName, _: &[Header], data: &Bytes) -> Result<T, DeserializeError> {
        serde_json::from_slice(data).map_err(|e| DeserializeError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T, S>(s: S, value: T) -> T
    where
        S: Serializer<T> + Deserializer<T>,
    {
        let topic = TopicName::from("t");
        let bytes = s.serialize(&topic, &mut Vec::new(), &value).unwrap();
        s.deserialize(&topic, &[], &bytes).unwrap()
    }

    #[test]
    fn built_ins_write_what_java_writes_and_read_it_back() {
        let topic = TopicName::from("t");
        let mut h = Vec::new();
        // Java's IntegerSerializer writes 0x00000102 for 258; DoubleSerializer the IEEE bits.
        assert_eq!(&BigEndian.serialize(&topic, &mut h, &258i32).unwrap()[..], &[0, 0, 1, 2]);
        assert_eq!(&BigEndian.serialize(&topic, &mut h, &1.5f64).unwrap()[..], &0x3ff8_0000_0000_0000u64.to_be_bytes());
        assert_eq!(round_trip(BigEndian, -7i64), -7);
        assert_eq!(round_trip(BigEndian, 3.25f32), 3.25);
        assert_eq!(round_trip(Utf8, "héllo".to_string()), "héllo");
        assert_eq!(round_trip(Raw, Bytes::from_static(b"\x00\xff")), Bytes::from_static(b"\x00\xff"));
        let short: Result<i64, _> = BigEndian.deserialize(&topic, &[], &Bytes::from_static(b"abc"));
        assert!(short.unwrap_err().0.contains("3 bytes"));
        let bad: Result<String, _> = Utf8.deserialize(&topic, &[], &Bytes::from_static(b"\xff"));
        assert!(bad.is_err());
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_round_trips_serde_types() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Order {
            id: u32,
            item: String,
        }
        let o = Order { id: 7, item: "tea".into() };
        let topic = TopicName::from("t");
        let bytes = Json.serialize(&topic, &mut Vec::new(), &o).unwrap();
        assert_eq!(&bytes[..], br#"{"id":7,"item":"tea"}"#);
        let back: Order = Json.deserialize(&topic, &[], &bytes).unwrap();
        assert_eq!(back, o);
    }
}
