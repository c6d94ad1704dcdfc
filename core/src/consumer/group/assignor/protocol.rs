//! The consumer protocol's payloads: the subscription a member sends in JoinGroup, the
//! assignment the leader sends in SyncGroup (both a version, then the message), and the sticky
//! assignors' user data. Bytes match what Java's `ConsumerProtocol` and assignors write.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{java, Assignment, Subscription, TopicPartition};
use crate::protocol::messages::{consumer_protocol_assignment as cpa, consumer_protocol_subscription as cps};
use crate::protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription};
use crate::protocol::{Codec, DecodeError, EncodeError, Message, StrBytes, TopicName};

/// The version this module writes (the newest both payloads have).
const VERSION: i16 = 3;

/// Why a subscription or assignment could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// Fewer than two bytes: no version.
    #[error("consumer protocol payload too short for its version")]
    NoVersion,
    /// A negative version.
    #[error("unsupported consumer protocol version {0}")]
    UnsupportedVersion(i16),
    /// The message itself is malformed.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// A version newer than ours is read as ours (newer versions only add fields at the end).
fn read_version(buf: &mut Bytes) -> Result<i16, ProtocolError> {
    if buf.remaining() < 2 {
        return Err(ProtocolError::NoVersion);
    }
    let version = buf.get_i16();
    if version < 0 {
        return Err(ProtocolError::UnsupportedVersion(version));
    }
    Ok(version.min(ConsumerProtocolSubscription::VERSIONS.max))
}

fn with_version(version: i16, message: &impl Codec) -> Result<Bytes, EncodeError> {
    let mut buf = BytesMut::with_capacity(2 + message.encoded_len(version));
    buf.put_i16(version);
    message.encode(&mut buf, version)?;
    Ok(buf.freeze())
}

/// Encodes a member's subscription as Java does: topics sorted, owned partitions sorted by
/// topic then partition and grouped by topic, no generation written as -1.
pub fn encode_subscription(sub: &Subscription) -> Result<Bytes, EncodeError> {
    let mut topics = sub.topics.clone();
    topics.sort_by(|a, b| java::cmp(a.as_str(), b.as_str()));
    let mut owned = sub.owned_partitions.clone();
    owned.sort_by(|a, b| java::cmp(a.topic.as_str(), b.topic.as_str()).then(a.partition.cmp(&b.partition)));
    let mut groups: Vec<cps::TopicPartition> = Vec::new();
    for tp in owned {
        match groups.last_mut() {
            Some(g) if g.topic == tp.topic => g.partitions.push(tp.partition),
            _ => groups.push(cps::TopicPartition::default().with_topic(tp.topic).with_partitions(vec![tp.partition])),
        }
    }
    let message = ConsumerProtocolSubscription::default()
        .with_topics(topics.into_iter().map(|t| t.0).collect())
        .with_user_data(sub.user_data.clone())
        .with_owned_partitions(groups)
        .with_generation_id(sub.generation_id.unwrap_or(-1))
        .with_rack_id(sub.rack_id.as_deref().map(StrBytes::from));
    with_version(VERSION, &message)
}

/// Decodes a member's subscription (JoinGroup member metadata). Owned partitions keep their
/// wire order; a negative generation and an empty rack id read as absent.
pub fn decode_subscription(bytes: &Bytes) -> Result<Subscription, ProtocolError> {
    let mut buf = bytes.clone();
    let version = read_version(&mut buf)?;
    let m = ConsumerProtocolSubscription::decode(&mut buf, version)?;
    Ok(Subscription {
        topics: m.topics.into_iter().map(TopicName).collect(),
        user_data: m.user_data,
        owned_partitions: m
            .owned_partitions
            .into_iter()
            .flat_map(|g| {
                let topic = g.topic;
                g.partitions.into_iter().map(move |p| TopicPartition { topic: topic.clone(), partition: p })
            })
            .collect(),
        generation_id: Some(m.generation_id).filter(|g| *g >= 0),
        rack_id: m.rack_id.filter(|r| !r.is_empty()).map(|r| r.as_str().to_owned()),
    })
}

/// Encodes an assignment for SyncGroup, topics in name order.
pub fn encode_assignment(assignment: &Assignment) -> Result<Bytes, EncodeError> {
    let message = ConsumerProtocolAssignment {
        assigned_partitions: assignment
            .partitions
            .iter()
            .map(|(t, ps)| cpa::TopicPartition::default().with_topic(t.clone()).with_partitions(ps.clone()))
            .collect(),
        user_data: assignment.user_data.clone(),
        ..ConsumerProtocolAssignment::default()
    };
    with_version(VERSION, &message)
}

/// Decodes the assignment a member received in SyncGroup. Partitions keep their wire order
/// within a topic; a topic listed twice is merged.
pub fn decode_assignment(bytes: &Bytes) -> Result<Assignment, ProtocolError> {
    let mut buf = bytes.clone();
    let version = read_version(&mut buf)?;
    let m = ConsumerProtocolAssignment::decode(&mut buf, version)?;
    let mut partitions: BTreeMap<TopicName, Vec<i32>> = BTreeMap::new();
    for g in m.assigned_partitions {
        partitions.entry(g.topic).or_default().extend(g.partitions);
    }
    Ok(Assignment { partitions, user_data: m.user_data })
}

/// What a sticky member reports in its user data.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub(crate) struct StickyUserData {
    /// Its last assignment.
    pub(crate) partitions: Vec<TopicPartition>,
    /// The generation of that assignment, when the data carries one.
    pub(crate) generation: Option<i32>,
}

/// The `sticky` assignor's user data (version 1): the assignment grouped by topic, then the
/// generation. Topics come in the iteration order of the `HashMap` Java groups them in with
/// `computeIfAbsent`, which puts a new key at the head of its bucket and grows the table at the
/// call after the one that filled it past 3/4.
pub(crate) fn encode_sticky_user_data(partitions: &[TopicPartition], generation: i32) -> Bytes {
    let mut capacity = 16;
    let mut topics: Vec<(&TopicName, i32)> = Vec::new();
    for tp in partitions {
        if topics.len() > capacity / 4 * 3 {
            capacity *= 2;
        }
        if !topics.iter().any(|(t, _)| *t == &tp.topic) {
            topics.push((&tp.topic, java::string_hash(tp.topic.as_str())));
        }
    }
    let mut order: Vec<usize> = (0..topics.len()).collect();
    order.sort_by_key(|&i| (java::bucket(topics[i].1, capacity), std::cmp::Reverse(i)));
    let mut buf = BytesMut::new();
    buf.put_i32(topics.len() as i32);
    for i in order {
        let topic = topics[i].0;
        buf.put_i16(topic.len() as i16);
        buf.put_slice(topic.as_bytes());
        let ps: Vec<i32> = partitions.iter().filter(|tp| tp.topic == *topic).map(|tp| tp.partition).collect();
        buf.put_i32(ps.len() as i32);
        for p in ps {
            buf.put_i32(p);
        }
    }
    buf.put_i32(generation);
    buf.freeze()
}

/// Reads `sticky` user data as Java does: version 1, else version 0 (no generation), else
/// nothing with generation -1. Trailing bytes are ignored.
pub(crate) fn decode_sticky_user_data(data: &Bytes) -> StickyUserData {
    fn read(buf: &mut &[u8], with_generation: bool) -> Option<StickyUserData> {
        let mut partitions = Vec::new();
        let topics = read_len(buf)?;
        for _ in 0..topics {
            if buf.remaining() < 2 {
                return None;
            }
            let len = usize::try_from(buf.get_i16()).ok()?;
            if buf.remaining() < len {
                return None;
            }
            let topic = TopicName::from(String::from_utf8_lossy(&buf[..len]).into_owned());
            buf.advance(len);
            for _ in 0..read_len(buf)? {
                if buf.remaining() < 4 {
                    return None;
                }
                partitions.push(TopicPartition { topic: topic.clone(), partition: buf.get_i32() });
            }
        }
        let generation = if with_generation {
            if buf.remaining() < 4 {
                return None;
            }
            Some(buf.get_i32())
        } else {
            None
        };
        Some(StickyUserData { partitions, generation })
    }
    /// An array count: never negative, never more elements than bytes left.
    fn read_len(buf: &mut &[u8]) -> Option<usize> {
        if buf.remaining() < 4 {
            return None;
        }
        usize::try_from(buf.get_i32()).ok().filter(|n| *n <= buf.remaining())
    }
    read(&mut &data[..], true)
        .or_else(|| read(&mut &data[..], false))
        .unwrap_or(StickyUserData { partitions: Vec::new(), generation: Some(-1) })
}

/// The `cooperative-sticky` assignor's user data: the generation alone.
pub(crate) fn encode_cooperative_user_data(generation: i32) -> Bytes {
    Bytes::copy_from_slice(&generation.to_be_bytes())
}

/// The generation in `cooperative-sticky` user data; -1 when it is too short to hold one.
pub(crate) fn decode_cooperative_generation(data: &Bytes) -> i32 {
    match data.get(..4) {
        Some(b) => i32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        None => -1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(t: &str, p: i32) -> TopicPartition {
        TopicPartition::new(t, p)
    }

    #[test]
    fn subscription_round_trip_sorts_like_java() {
        let sub = Subscription {
            topics: vec!["b".into(), "a".into()],
            user_data: Some(Bytes::from_static(b"\x00\x01")),
            owned_partitions: vec![tp("b", 1), tp("a", 2), tp("b", 0)],
            generation_id: Some(7),
            rack_id: Some("r1".into()),
        };
        let bytes = encode_subscription(&sub).unwrap();
        assert_eq!(&bytes[..2], &[0, 3]);
        let back = decode_subscription(&bytes).unwrap();
        assert_eq!(back.topics, vec![TopicName::from("a"), "b".into()]);
        assert_eq!(back.owned_partitions, vec![tp("a", 2), tp("b", 0), tp("b", 1)]);
        assert_eq!((back.generation_id, back.rack_id.as_deref()), (Some(7), Some("r1")));
        let none = Subscription { generation_id: None, rack_id: None, ..sub };
        let back = decode_subscription(&encode_subscription(&none).unwrap()).unwrap();
        assert_eq!((back.generation_id, back.rack_id), (None, None));
    }

    #[test]
    fn old_and_newer_versions_and_garbage() {
        // Version 0: topics and user data only.
        let v0 = Bytes::from_static(b"\x00\x00\x00\x00\x00\x01\x00\x01t\xff\xff\xff\xff");
        let s = decode_subscription(&v0).unwrap();
        assert_eq!((s.topics.len(), s.user_data.clone(), s.generation_id), (1, None, None));
        // A future version reads as ours, trailing fields ignored.
        let mut future = encode_subscription(&s).unwrap().to_vec();
        future[1] = 9;
        future.extend_from_slice(b"more");
        assert_eq!(decode_subscription(&Bytes::from(future)).unwrap(), s);
        assert_eq!(decode_subscription(&Bytes::from_static(b"\x00")), Err(ProtocolError::NoVersion));
        assert_eq!(decode_subscription(&Bytes::from_static(b"\xff\xff")), Err(ProtocolError::UnsupportedVersion(-1)));
        assert!(decode_subscription(&Bytes::from_static(b"\x00\x03\x7f\xff\xff\xff")).is_err());
    }

    #[test]
    fn assignment_round_trip() {
        let mut a = Assignment::default();
        a.partitions.insert("t".into(), vec![2, 0]);
        a.partitions.insert("s".into(), vec![1]);
        let back = decode_assignment(&encode_assignment(&a).unwrap()).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn sticky_user_data_versions() {
        let parts = vec![tp("t", 1), tp("s", 0), tp("t", 0)];
        let v1 = encode_sticky_user_data(&parts, 5);
        let back = decode_sticky_user_data(&v1);
        assert_eq!(back.generation, Some(5));
        let mut sorted = back.partitions.clone();
        sorted.sort();
        assert_eq!(sorted, vec![tp("s", 0), tp("t", 0), tp("t", 1)]);
        // Version 0 has no generation: the version-1 read runs out of bytes.
        let v0 = &v1[..v1.len() - 4];
        assert_eq!(decode_sticky_user_data(&Bytes::copy_from_slice(v0)).generation, None);
        assert_eq!(
            decode_sticky_user_data(&Bytes::from_static(b"\xff\xff\xff\xff")),
            StickyUserData { partitions: vec![], generation: Some(-1) }
        );
        assert_eq!(decode_cooperative_generation(&encode_cooperative_user_data(-1)), -1);
        assert_eq!(decode_cooperative_generation(&Bytes::from_static(b"\x00\x00\x00\x09\x01")), 9);
        assert_eq!(decode_cooperative_generation(&Bytes::from_static(b"\x00")), -1);
    }
}
