//! Keyed records land on the partition the Java client picks: sansa's murmur2 and
//! partition_for_key against every row Kafka's own classes wrote to partitions.tsv.

use sansa::producer::partitioner::{murmur2, partition_for_key};
use sansa_conformance::{hex_decode, vectors_dir};

/// The partition counts of the columns after the hash, as the vectors README lists them.
const COUNTS: [u32; 8] = [1, 2, 3, 6, 7, 12, 100, 1000];

#[test]
fn murmur2_and_key_partitions_match_java() {
    let text = std::fs::read_to_string(vectors_dir().join("partitions.tsv")).expect("partitions.tsv");
    let mut rows = 0;
    let mut failures = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 2 + COUNTS.len(), "line {}: {} columns", n + 1, cols.len());
        let key = hex_decode(cols[0]);
        let hash: i32 = cols[1].parse().expect("murmur2 column");
        if murmur2(&key) != hash {
            failures.push(format!("line {}: murmur2({}) = {}, java {hash}", n + 1, cols[0], murmur2(&key)));
        }
        for (count, col) in COUNTS.iter().zip(&cols[2..]) {
            let java: u32 = col.parse().expect("partition column");
            let ours = partition_for_key(&key, *count);
            if ours != Some(java) {
                failures.push(format!("line {}: key {} over {count}: {ours:?}, java {java}", n + 1, cols[0]));
            }
        }
        rows += 1;
    }
    assert!(rows >= 290, "only {rows} rows");
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}
