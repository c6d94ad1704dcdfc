//! Group assignments match the Java client's: every row Kafka's own assignors wrote to
//! assignors.tsv, run through sansa's assignors, must give the same partitions to the same
//! members; the sticky assignors' subscription user data must be the same bytes; and every
//! subscription Java encoded must decode and encode back to the same bytes.

use std::collections::BTreeMap;

use sansa::consumer::group::assignor::protocol::{decode_subscription, encode_subscription};
use sansa::consumer::group::assignor::{
    builtin, Member, MemberId, PartitionCounts, PreviousAssignment, TopicPartition,
};
use sansa_conformance::{hex_decode, hex_encode, vectors_dir};
use serde_json::{json, Value};

/// Rows per assignor: (kind, assignor) -> (rows, matching).
type Tally = BTreeMap<(String, String), (usize, usize)>;

#[test]
fn assignments_and_user_data_match_java() {
    let text = std::fs::read_to_string(vectors_dir().join("assignors.tsv")).expect("assignors.tsv");
    let mut tally = Tally::new();
    let mut failures = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 5, "line {}: {} columns", n + 1, cols.len());
        let (kind, name, assignor_name, input, expected) = (cols[0], cols[1], cols[2], cols[3], cols[4]);
        let assignor = builtin(assignor_name).unwrap_or_else(|| panic!("line {}: no assignor {assignor_name}", n + 1));
        let input: Value = serde_json::from_str(input).expect("input json");
        let problem = match kind {
            "assign" => check_assign(assignor, &input, expected),
            "user_data" => check_user_data(assignor, &input, expected),
            other => panic!("line {}: unknown kind {other}", n + 1),
        };
        let entry = tally.entry((kind.to_owned(), assignor_name.to_owned())).or_default();
        entry.0 += 1;
        match problem {
            None => entry.1 += 1,
            Some(p) => failures.push(format!("{name}: {p}")),
        }
    }
    for ((kind, assignor), (rows, ok)) in &tally {
        println!("{kind:9} {assignor:18} {ok}/{rows} match Java");
    }
    for assignor in ["range", "roundrobin", "sticky", "cooperative-sticky"] {
        let rows = tally.get(&("assign".to_owned(), assignor.to_owned())).map_or(0, |t| t.0);
        assert!(rows >= 200, "only {rows} {assignor} assignments");
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

fn check_assign(
    assignor: &dyn sansa::consumer::group::assignor::Assignor,
    input: &Value,
    expected: &str,
) -> Option<String> {
    let mut counts = PartitionCounts::new();
    for (topic, n) in input["topics"].as_object().expect("topics") {
        counts.insert(topic.as_str(), n.as_u64().expect("count") as u32);
    }
    let mut members = Vec::new();
    for m in input["members"].as_array().expect("members") {
        let hex = m["subscription"].as_str().expect("subscription");
        let bytes = bytes::Bytes::from(hex_decode(hex));
        let subscription = match decode_subscription(&bytes) {
            Ok(s) => s,
            Err(e) => return Some(format!("subscription {hex} does not decode: {e}")),
        };
        match encode_subscription(&subscription) {
            Ok(again) if again == bytes => {}
            Ok(again) => return Some(format!("subscription {hex} encodes back as {}", hex_encode(&again))),
            Err(e) => return Some(format!("subscription {hex} does not encode: {e}")),
        }
        members.push(Member {
            id: MemberId(m["id"].as_str().expect("id").to_owned()),
            group_instance_id: m["instance"].as_str().map(str::to_owned),
            subscription,
        });
    }
    let expected: Value = serde_json::from_str(expected).expect("expected json");
    let ours = match assignor.assign(&counts, &members) {
        Ok(out) => {
            let mut assignments = serde_json::Map::new();
            for (id, a) in out {
                let by_topic: serde_json::Map<String, Value> =
                    a.partitions.iter().map(|(t, ps)| (t.as_str().to_owned(), json!(ps))).collect();
                assignments.insert(id.0, Value::Object(by_topic));
            }
            json!({ "assignments": assignments })
        }
        Err(e) => {
            // Where Java throws (its exception's class is the "error"), ours must refuse too.
            println!("refused: {e} (java: {})", expected["error"]);
            json!({ "error": expected["error"].as_str().unwrap_or("(none)") })
        }
    };
    (ours != expected).then(|| format!("java {expected}\n   ours {ours}"))
}

fn check_user_data(
    assignor: &dyn sansa::consumer::group::assignor::Assignor,
    input: &Value,
    expected: &str,
) -> Option<String> {
    let previous = input["partitions"].as_array().map(|list| PreviousAssignment {
        partitions: list
            .iter()
            .map(|tp| TopicPartition::new(tp[0].as_str().expect("topic"), tp[1].as_i64().expect("partition") as i32))
            .collect(),
        generation: input["generation"].as_i64().expect("generation") as i32,
    });
    let ours = assignor.subscription_user_data(previous.as_ref()).map_or_else(|| "null".to_owned(), |b| hex_encode(&b));
    (ours != expected).then(|| format!("user data: java {expected}, ours {ours}"))
}
