package sansa.conformance;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.apache.kafka.common.compress.Compression;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.record.TimestampType;
import org.apache.kafka.common.record.internal.ControlRecordType;
import org.apache.kafka.common.record.internal.EndTransactionMarker;
import org.apache.kafka.common.record.internal.MemoryRecords;
import org.apache.kafka.common.record.internal.MemoryRecordsBuilder;
import org.apache.kafka.common.record.internal.MutableRecordBatch;
import org.apache.kafka.common.record.internal.Record;
import org.apache.kafka.common.record.internal.RecordBatch;

import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * Record-batch vectors: buffers written by Kafka's MemoryRecordsBuilder, and the description
 * (JSON) of what Kafka's own reader finds in them. The same describe() is used by verify, so a
 * sansa-encoded buffer passes exactly when Kafka reads it back as the JSON says.
 */
final class RecordVectors {

    /** A fixed wall-clock base so every run writes the same bytes (2023-11-14T22:13:20Z). */
    static final long T0 = 1_700_000_000_000L;

    private static final byte V0 = RecordBatch.MAGIC_VALUE_V0;
    private static final byte V1 = RecordBatch.MAGIC_VALUE_V1;
    private static final byte V2 = RecordBatch.MAGIC_VALUE_V2;
    private static final long NO_PID = RecordBatch.NO_PRODUCER_ID;
    private static final short NO_EPOCH = RecordBatch.NO_PRODUCER_EPOCH;
    private static final int NO_SEQ = RecordBatch.NO_SEQUENCE;
    private static final int NO_PLE = RecordBatch.NO_PARTITION_LEADER_EPOCH;
    private static final Header[] NO_HEADERS = new Header[0];

    record Rec(long offset, long timestamp, byte[] key, byte[] value, Header[] headers) {
    }

    record Vector(String name, byte[] buffer) {
    }

    private RecordVectors() {
    }

    // ---------------------------------------------------------------- building

    static byte[] utf8(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    static Header header(String key, String value) {
        return new RecordHeader(key, value == null ? null : utf8(value));
    }

    static Rec rec(long offset, long timestamp, String key, String value, Header... headers) {
        return new Rec(offset, timestamp, key == null ? null : utf8(key), value == null ? null : utf8(value), headers);
    }

    /** A value that compresses well, so compressed batches are visibly smaller than their input. */
    static String chatty(int i) {
        return ("sansa record " + i + " says hello; ").repeat(4 + i);
    }

    /** One batch (magic 2) or one message set (magic 0/1) written by Kafka's builder. */
    static byte[] batch(byte magic, Compression compression, TimestampType timestampType, long baseOffset,
                        long logAppendTime, long producerId, short producerEpoch, int baseSequence,
                        boolean transactional, int partitionLeaderEpoch, Rec... records) {
        MemoryRecordsBuilder b = MemoryRecords.builder(ByteBuffer.allocate(256), magic, compression, timestampType,
            baseOffset, logAppendTime, producerId, producerEpoch, baseSequence, transactional, false,
            partitionLeaderEpoch);
        for (Rec r : records) {
            b.appendWithOffset(r.offset(), r.timestamp(), r.key(), r.value(), r.headers());
        }
        return toArray(b.build().buffer());
    }

    /** A plain magic-2 batch: create time, no producer state. */
    static byte[] v2(Compression compression, long baseOffset, int leaderEpoch, Rec... records) {
        return batch(V2, compression, TimestampType.CREATE_TIME, baseOffset, RecordBatch.NO_TIMESTAMP,
            NO_PID, NO_EPOCH, NO_SEQ, false, leaderEpoch, records);
    }

    /** A legacy message set; magic 0 has no timestamps at all. */
    static byte[] legacy(byte magic, Compression compression, TimestampType type, long logAppendTime, Rec... records) {
        return batch(magic, compression, type, records[0].offset(), logAppendTime, NO_PID, NO_EPOCH, NO_SEQ, false,
            NO_PLE, records);
    }

    /** A control batch holding one COMMIT or ABORT marker. */
    static byte[] marker(long offset, long timestamp, int leaderEpoch, long producerId, short producerEpoch,
                         ControlRecordType type, int coordinatorEpoch) {
        return toArray(MemoryRecords.withEndTransactionMarker(offset, timestamp, leaderEpoch, producerId,
            producerEpoch, new EndTransactionMarker(type, coordinatorEpoch)).buffer());
    }

    static byte[] concat(byte[]... parts) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        for (byte[] p : parts) {
            out.writeBytes(p);
        }
        return out.toByteArray();
    }

    static byte[] toArray(ByteBuffer buffer) {
        ByteBuffer dup = buffer.duplicate();
        byte[] out = new byte[dup.remaining()];
        dup.get(out);
        return out;
    }

    /** Three small records for the legacy formats (no headers there), one with a null key. */
    private static Rec[] legacyRecords(long base, boolean timestamps) {
        long ts = timestamps ? T0 : RecordBatch.NO_TIMESTAMP;
        return new Rec[]{
            rec(base, ts, "k0", chatty(0)),
            rec(base + 1, timestamps ? ts + 5 : ts, null, chatty(1)),
            rec(base + 2, timestamps ? ts + 3 : ts, "k2", null),
        };
    }

    /** Five records with headers, a null key and a null value, for the compression vectors. */
    private static Rec[] mixedRecords(long base) {
        return new Rec[]{
            rec(base, T0, "key-0", chatty(0), header("trace", "abc")),
            rec(base + 1, T0 + 1, null, chatty(1)),
            rec(base + 2, T0 + 7, "key-2", chatty(2), header("h1", "v1"), header("h2", null)),
            rec(base + 3, T0 + 2, "key-3", null),
            rec(base + 4, T0 + 9, "key-4", chatty(4)),
        };
    }

    static List<Vector> all() {
        List<Vector> v = new ArrayList<>();
        Compression none = Compression.NONE;
        Compression gzip = Compression.gzip().build();
        Compression snappy = Compression.snappy().build();
        Compression lz4 = Compression.lz4().build();
        Compression zstd = Compression.zstd().build();

        // --- magic 2
        v.add(new Vector("v2_none_basic", v2(none, 0, 0,
            rec(0, T0, "key-0", "value-0"), rec(1, T0 + 1, "key-1", "value-1"), rec(2, T0 + 2, "key-2", "value-2"))));
        v.add(new Vector("v2_none_mixed", v2(none, 100, 3, mixedRecords(100))));
        v.add(new Vector("v2_gzip", v2(gzip, 100, 3, mixedRecords(100))));
        v.add(new Vector("v2_snappy", v2(snappy, 100, 3, mixedRecords(100))));
        v.add(new Vector("v2_lz4", v2(lz4, 100, 3, mixedRecords(100))));
        v.add(new Vector("v2_zstd", v2(zstd, 100, 3, mixedRecords(100))));
        v.add(new Vector("v2_single_record", v2(none, 7, 1, rec(7, T0, "only", "one"))));
        v.add(new Vector("v2_headers", v2(none, 0, 2,
            rec(0, T0, "k", "v",
                header("content-type", "application/json"), header("dup", "first"), header("dup", "second"),
                header("null-value", null), header("empty-value", ""), header("ünïcødé-key", "ü")),
            rec(1, T0, "k", "v")))); // second record: no headers at all
        v.add(new Vector("v2_null_and_empty", v2(none, 0, 0,
            rec(0, T0, null, null), rec(1, T0, "", ""), rec(2, T0, null, ""), rec(3, T0, "", null))));
        v.add(new Vector("v2_no_timestamp", v2(none, 0, 0,
            rec(0, RecordBatch.NO_TIMESTAMP, "k", "v"), rec(1, RecordBatch.NO_TIMESTAMP, "k", "v"))));
        // Non-contiguous offsets (as after compaction) and timestamps going backwards (negative deltas).
        v.add(new Vector("v2_offset_gaps_ts_backwards", v2(none, 1000, 5,
            rec(1000, T0 + 500, "a", "1"), rec(1003, T0 + 100, "b", "2"), rec(1010, T0 - 250, "c", "3"))));
        // Large offsets and lengths that need multi-byte varints.
        v.add(new Vector("v2_large_varints", v2(none, 1L << 40, 123456,
            new Rec((1L << 40), T0, utf8("K".repeat(200)), utf8("V".repeat(1000)), new Header[]{header("H".repeat(130), "x".repeat(300))}),
            new Rec((1L << 40) + 300, T0 + 100_000_000L, utf8("k"), utf8("v"), NO_HEADERS))));
        v.add(new Vector("v2_log_append_time", batch(V2, lz4, TimestampType.LOG_APPEND_TIME, 50, T0 + 60_000,
            NO_PID, NO_EPOCH, NO_SEQ, false, 4, rec(50, T0, "k0", "v0"), rec(51, T0 + 10, "k1", "v1"))));
        v.add(new Vector("v2_idempotent", batch(V2, none, TimestampType.CREATE_TIME, 20, RecordBatch.NO_TIMESTAMP,
            123_456_789_012L, (short) 4, 1000, false, 9,
            rec(20, T0, "k0", "v0"), rec(21, T0 + 1, "k1", "v1"), rec(22, T0 + 2, "k2", "v2"))));
        // A base sequence near Integer.MAX_VALUE: the last sequence wraps to 0.
        v.add(new Vector("v2_idempotent_sequence_wrap", batch(V2, snappy, TimestampType.CREATE_TIME, 0,
            RecordBatch.NO_TIMESTAMP, 77L, Short.MAX_VALUE, Integer.MAX_VALUE - 1, false, 0,
            rec(0, T0, "k0", "v0"), rec(1, T0, "k1", "v1"), rec(2, T0, "k2", "v2"))));
        v.add(new Vector("v2_transactional", batch(V2, none, TimestampType.CREATE_TIME, 10, RecordBatch.NO_TIMESTAMP,
            5000L, (short) 2, 0, true, 1, rec(10, T0, "tk0", "tv0"), rec(11, T0 + 1, "tk1", "tv1"))));
        v.add(new Vector("v2_transactional_zstd", batch(V2, zstd, TimestampType.CREATE_TIME, 10, RecordBatch.NO_TIMESTAMP,
            5000L, (short) 2, 2, true, 1, mixedRecords(10))));
        v.add(new Vector("v2_control_commit", marker(42, T0 + 1000, 6, 5000L, (short) 2, ControlRecordType.COMMIT, 11)));
        v.add(new Vector("v2_control_abort", marker(43, T0 + 2000, 6, 5001L, (short) 0, ControlRecordType.ABORT, 0)));
        // A transaction as a Fetch response shows it: data batch then its commit marker.
        v.add(new Vector("v2_multi_txn_then_commit", concat(
            batch(V2, none, TimestampType.CREATE_TIME, 10, RecordBatch.NO_TIMESTAMP, 5000L, (short) 2, 0, true, 1,
                rec(10, T0, "tk0", "tv0"), rec(11, T0 + 1, "tk1", "tv1")),
            marker(12, T0 + 5, 1, 5000L, (short) 2, ControlRecordType.COMMIT, 3))));
        v.add(new Vector("v2_multi_aborted_txn", concat(
            batch(V2, gzip, TimestampType.CREATE_TIME, 30, RecordBatch.NO_TIMESTAMP, 6000L, (short) 0, 7, true, 2,
                rec(30, T0, "x", "aborted-0"), rec(31, T0, "y", "aborted-1")),
            marker(32, T0 + 9, 2, 6000L, (short) 0, ControlRecordType.ABORT, 4))));
        v.add(new Vector("v2_multi_batch", concat(
            v2(none, 0, 1, rec(0, T0, "a", "first batch")),
            v2(gzip, 1, 1, rec(1, T0 + 1, "b", chatty(1)), rec(2, T0 + 2, "c", chatty(2))),
            v2(snappy, 3, 2, rec(3, T0 + 3, null, chatty(3))),
            v2(zstd, 4, 2, rec(4, T0 + 4, "d", chatty(4)), rec(5, T0 + 5, "e", null)))));

        // --- legacy magic 0 (no timestamps) and magic 1
        for (Object[] c : new Object[][]{{"none", none}, {"gzip", gzip}, {"snappy", snappy}, {"lz4", lz4}}) {
            Compression comp = (Compression) c[1];
            v.add(new Vector("v0_" + c[0], legacy(V0, comp, TimestampType.NO_TIMESTAMP_TYPE,
                RecordBatch.NO_TIMESTAMP, legacyRecords(0, false))));
            v.add(new Vector("v1_" + c[0], legacy(V1, comp, TimestampType.CREATE_TIME,
                RecordBatch.NO_TIMESTAMP, legacyRecords(5, true))));
        }
        v.add(new Vector("v1_gzip_log_append_time", legacy(V1, gzip, TimestampType.LOG_APPEND_TIME, T0 + 999,
            legacyRecords(0, true))));
        v.add(new Vector("v1_none_log_append_time", legacy(V1, none, TimestampType.LOG_APPEND_TIME, T0 + 999,
            legacyRecords(0, true))));
        // Message sets of mixed formats, as a fetch across a format upgrade returns them.
        v.add(new Vector("mixed_v0_v1_v2", concat(
            legacy(V0, none, TimestampType.NO_TIMESTAMP_TYPE, RecordBatch.NO_TIMESTAMP, rec(0, RecordBatch.NO_TIMESTAMP, "a", "v0 message")),
            legacy(V1, gzip, TimestampType.CREATE_TIME, RecordBatch.NO_TIMESTAMP, rec(1, T0, "b", "v1 message"), rec(2, T0 + 1, "c", "v1 again")),
            v2(lz4, 3, 0, rec(3, T0 + 2, "d", "v2 record")))));
        return v;
    }

    // ---------------------------------------------------------------- reading

    /**
     * Reads a buffer with Kafka's MemoryRecords and describes everything a reader must find.
     * Throws if any batch fails ensureValid() (CRC, sizes) or trailing bytes are left over.
     */
    static ObjectNode describe(byte[] bytes) {
        JsonNodeFactory f = JsonNodeFactory.instance;
        MemoryRecords records = MemoryRecords.readableRecords(ByteBuffer.wrap(bytes));
        ArrayNode batches = f.arrayNode();
        int consumed = 0;
        for (MutableRecordBatch b : records.batches()) {
            b.ensureValid();
            consumed += b.sizeInBytes();
            ObjectNode bn = batches.addObject();
            bn.put("magic", b.magic());
            bn.put("base_offset", b.baseOffset());
            bn.put("last_offset_delta", b.lastOffset() - b.baseOffset());
            bn.put("partition_leader_epoch", b.partitionLeaderEpoch());
            bn.put("compression", b.compressionType().name);
            bn.put("timestamp_type", timestampType(b.timestampType()));
            bn.put("transactional", b.isTransactional());
            bn.put("control", b.isControlBatch());
            bn.put("producer_id", b.producerId());
            bn.put("producer_epoch", b.producerEpoch());
            bn.put("base_sequence", b.baseSequence());
            bn.put("max_timestamp", b.maxTimestamp());
            ArrayNode recs = bn.putArray("records");
            for (Record r : b) {
                r.ensureValid();
                ObjectNode rn = recs.addObject();
                rn.put("offset", r.offset());
                rn.put("timestamp", r.timestamp());
                rn.put("key", r.hasKey() ? Hex.of(r.key()) : null);
                rn.put("value", r.hasValue() ? Hex.of(r.value()) : null);
                ArrayNode hs = rn.putArray("headers");
                for (Header h : r.headers()) {
                    ArrayNode pair = hs.addArray();
                    pair.add(h.key());
                    pair.add(h.value() == null ? null : Hex.of(h.value()));
                }
                if (b.isControlBatch()) {
                    ControlRecordType type = ControlRecordType.parse(r.key());
                    rn.put("control_type", type.name().toLowerCase(java.util.Locale.ROOT));
                    if (type == ControlRecordType.COMMIT || type == ControlRecordType.ABORT) {
                        rn.put("coordinator_epoch", EndTransactionMarker.deserialize(r).coordinatorEpoch());
                    }
                }
            }
        }
        if (consumed != bytes.length) {
            throw new IllegalArgumentException((bytes.length - consumed) + " trailing bytes are not a complete batch");
        }
        if (batches.isEmpty()) {
            throw new IllegalArgumentException("no batch in the buffer");
        }
        ObjectNode root = f.objectNode();
        root.set("batches", batches);
        return root;
    }

    private static String timestampType(TimestampType t) {
        switch (t) {
            case CREATE_TIME:
                return "create_time";
            case LOG_APPEND_TIME:
                return "log_append_time";
            default:
                return "none";
        }
    }

    /** Checks one vector line; returns null on success, else the reason. */
    static String check(String hex, String expectedJson) {
        JsonNode expected;
        try {
            expected = Json.parse(expectedJson);
        } catch (Exception e) {
            return "json column does not parse: " + e.getMessage();
        }
        try {
            JsonNode actual = Json.parse(Json.write(describe(Hex.parse(hex))));
            return Json.diff("$", expected, actual);
        } catch (Exception e) {
            return "reading with Kafka failed: " + e;
        }
    }
}
