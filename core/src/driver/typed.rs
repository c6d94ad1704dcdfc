//! A producer that serializes keys and values itself: the typed face of [`Handle::send`].

use std::marker::PhantomData;

use super::{DeliveryFuture, Handle};
use crate::producer::{ProduceError, ProducerRecord};
use crate::protocol::records::Header;
use crate::protocol::TopicName;
use crate::serialization::Serializer;

/// Sends keys of type `K` and values of type `V` through `KS` and `VS`
/// ([`crate::serialization`]), on a [`Handle`] it shares with whatever else uses the client.
///
/// ```no_run
/// # async fn demo(handle: sansa::driver::Handle) -> Result<(), sansa::producer::ProduceError> {
/// use sansa::driver::TypedProducer;
/// use sansa::serialization::{BigEndian, Utf8};
///
/// let producer = TypedProducer::<i64, str, _, _>::new(handle, BigEndian, Utf8);
/// let delivered = producer.send("orders", Some(&42), Some("tea")).await?.await?;
/// println!("offset {:?}", delivered.offset);
/// # Ok(()) }
/// ```
pub struct TypedProducer<K: ?Sized, V: ?Sized, KS, VS> {
    handle: Handle,
    keys: KS,
    values: VS,
    _types: PhantomData<fn(&K, &V)>,
}

impl<K: ?Sized, V: ?Sized, KS: Serializer<K>, VS: Serializer<V>> TypedProducer<K, V, KS, VS> {
    /// A typed producer on `handle`.
    pub fn new(handle: Handle, keys: KS, values: VS) -> Self {
        TypedProducer { handle, keys, values, _types: PhantomData }
    }

    /// The client underneath, for `flush`, `close` and everything else.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Serializes a record; a serializer's refusal is a [`ProduceError::Serialize`].
    pub fn record(
        &self,
        topic: impl Into<TopicName>,
        key: Option<&K>,
        value: Option<&V>,
        mut headers: Vec<Header>,
    ) -> Result<ProducerRecord, ProduceError> {
        let topic = topic.into();
        let key = key
            .map(|k| self.keys.serialize(&topic, &mut headers, k))
            .transpose()
            .map_err(|error| ProduceError::Serialize { part: "key", error })?;
        let value = value
            .map(|v| self.values.serialize(&topic, &mut headers, v))
            .transpose()
            .map_err(|error| ProduceError::Serialize { part: "value", error })?;
        Ok(ProducerRecord { topic, partition: None, key, value, headers, timestamp: None })
    }

    /// Serializes and sends ([`Handle::send`]).
    pub async fn send(
        &self,
        topic: impl Into<TopicName>,
        key: Option<&K>,
        value: Option<&V>,
    ) -> Result<DeliveryFuture, ProduceError> {
        let record = self.record(topic, key, value, Vec::new())?;
        self.handle.send(record).await
    }

    /// Serializes and sends, blocking the thread ([`Handle::send_blocking`]).
    pub fn send_blocking(
        &self,
        topic: impl Into<TopicName>,
        key: Option<&K>,
        value: Option<&V>,
    ) -> Result<DeliveryFuture, ProduceError> {
        let record = self.record(topic, key, value, Vec::new())?;
        self.handle.send_blocking(record)
    }
}

impl<K: ?Sized, V: ?Sized, KS: Clone, VS: Clone> Clone for TypedProducer<K, V, KS, VS> {
    fn clone(&self) -> Self {
        TypedProducer {
            handle: self.handle.clone(),
            keys: self.keys.clone(),
            values: self.values.clone(),
            _types: PhantomData,
        }
    }
}

impl<K: ?Sized, V: ?Sized, KS, VS> std::fmt::Debug for TypedProducer<K, V, KS, VS> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedProducer").field("handle", &self.handle).finish_non_exhaustive()
    }
}
