// Unit tests of the consumer machine live in the conformance crate, against the fake
// cluster (conformance/src/fake_cluster/consumer_tests.rs); here only the pure pieces.
