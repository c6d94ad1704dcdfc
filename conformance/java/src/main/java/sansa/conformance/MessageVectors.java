package sansa.conformance;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.BinaryNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.apache.kafka.common.Uuid;
import org.apache.kafka.common.compress.Compression;
import org.apache.kafka.common.message.ApiMessageType;
import org.apache.kafka.common.message.RequestHeaderData;
import org.apache.kafka.common.message.ResponseHeaderData;
import org.apache.kafka.common.protocol.ByteBufferAccessor;
import org.apache.kafka.common.protocol.Message;
import org.apache.kafka.common.protocol.ObjectSerializationCache;
import org.apache.kafka.common.protocol.types.RawTaggedField;
import org.apache.kafka.common.record.internal.RecordBatch;

import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.function.Supplier;

/**
 * Message-body vectors for every API in ApiMessageType, request and response, at every stable
 * version, plus request/response header vectors.
 *
 * <p>How a message is filled: the JSON spec inside the kafka-clients jar says which fields exist
 * in a version; {@link Populator} builds a JSON tree with a non-default value for each of them,
 * and the message's own generated {@code *JsonConverter.read} turns that tree into the Data
 * object. Kafka's {@code write} then produces the bytes. So every byte comes from Kafka's code;
 * the populator only chooses values.
 *
 * <p>Variants per (api, kind, version): {@code full} (everything set, nullable fields non-null),
 * {@code nulls} (every nullable field null; only where the version has one),
 * {@code defaults} (a fresh Data object: empty arrays, default values, no tagged fields), and
 * {@code unknown_tagged} (full plus two top-level tagged fields the spec does not define; only
 * in flexible versions) which a decoder must keep and re-encode in tag order.
 */
final class MessageVectors {

    record Vector(int apiKey, String kind, int version, String name, byte[] body) {
        String tsvLine() {
            return apiKey + "\t" + kind + "\t" + version + "\t" + name + "\t" + Hex.of(body);
        }
    }

    /** The API keys used for the header vectors (the header itself does not depend on the API). */
    private static final short[] HEADER_API_KEYS = {18, 3};

    private MessageVectors() {
    }

    static List<Vector> all() throws Exception {
        byte[] records = recordsFieldValue();
        List<Vector> out = new ArrayList<>();
        for (ApiMessageType type : ApiMessageType.values()) {
            short low = type.lowestSupportedVersion();
            short high = type.highestSupportedVersion(false); // stable versions only
            for (String kind : new String[]{"request", "response"}) {
                String specName = type.name + (kind.equals("request") ? "Request" : "Response");
                MessageSpec spec = MessageSpec.load(specName);
                Supplier<Message> fresh = kind.equals("request") ? type::newRequest : type::newResponse;
                for (short v = low; v <= high; v++) {
                    addVariants(out, type.apiKey(), kind, v, specName, spec, fresh, records, null);
                }
            }
        }
        for (short apiKey : HEADER_API_KEYS) {
            ApiMessageType type = ApiMessageType.fromApiKey(apiKey);
            short apiVersion = type.highestSupportedVersion(false);
            MessageSpec req = MessageSpec.load("RequestHeader");
            // Version 0 (no ClientId) left the spec in Kafka 4.0 and the Data class now writes a
            // ClientId even at version 0, so Kafka can no longer produce a true v0 header: skip it.
            for (short v = (short) req.valid.low(); v <= req.valid.high(); v++) {
                addVariants(out, apiKey, "request_header", v, "RequestHeader", req, RequestHeaderData::new, records,
                    node -> {
                        node.put("requestApiKey", apiKey);
                        node.put("requestApiVersion", apiVersion);
                    });
            }
            MessageSpec resp = MessageSpec.load("ResponseHeader");
            for (short v = (short) resp.valid.low(); v <= resp.valid.high(); v++) {
                addVariants(out, apiKey, "response_header", v, "ResponseHeader", resp, ResponseHeaderData::new,
                    records, null);
            }
        }
        return out;
    }

    private interface Fixup {
        void apply(ObjectNode node);
    }

    private static void addVariants(List<Vector> out, short apiKey, String kind, short v, String specName,
                                    MessageSpec spec, Supplier<Message> fresh, byte[] records, Fixup fixup)
        throws Exception {
        String prefix = specName + "_v" + v + "_";
        // The seed mixes in key, kind and version so that vectors do not all share the same values.
        long seed = apiKey * 1000L + v * 10L + kind.length();

        Populator full = new Populator(spec, v, false, records, seed);
        ObjectNode fullJson = full.message();
        if (fixup != null) {
            fixup.apply(fullJson);
        }
        Message fullMsg = fromJson(fresh.get(), fullJson, v);
        out.add(new Vector(apiKey, kind, v, prefix + "full", serialize(fullMsg, v)));

        Populator nulls = new Populator(spec, v, true, records, seed);
        ObjectNode nullsJson = nulls.message();
        if (nulls.nullsWritten > 0) {
            if (fixup != null) {
                fixup.apply(nullsJson);
            }
            out.add(new Vector(apiKey, kind, v, prefix + "nulls", serialize(fromJson(fresh.get(), nullsJson, v), v)));
        }

        if (fixup == null) { // a default header would not name the API in its column
            out.add(new Vector(apiKey, kind, v, prefix + "defaults", serialize(fresh.get(), v)));
        }

        if (spec.flexible.contains(v)) {
            Message withUnknown = fromJson(fresh.get(), fullJson, v);
            // One tag in the first gap among the defined ones (so it sorts between known fields
            // when there are any) and one needing a two-byte varint tag.
            Set<Integer> used = new HashSet<>();
            for (MessageSpec.Field f : spec.fields) {
                if (f.tag() != null) {
                    used.add(f.tag());
                }
            }
            int gap = 0;
            while (used.contains(gap)) {
                gap++;
            }
            withUnknown.unknownTaggedFields().add(new RawTaggedField(gap, new byte[]{0x01, 0x02, 0x03}));
            withUnknown.unknownTaggedFields().add(new RawTaggedField(1000, new byte[0]));
            out.add(new Vector(apiKey, kind, v, prefix + "unknown_tagged", serialize(withUnknown, v)));
        }
    }

    /** Fills a Data object through its generated JsonConverter (found by naming convention). */
    static Message fromJson(Message prototype, JsonNode json, short version) throws Exception {
        Class<?> converter = Class.forName(prototype.getClass().getName() + "JsonConverter");
        Method read = converter.getMethod("read", JsonNode.class, short.class);
        try {
            return (Message) read.invoke(null, json, version);
        } catch (InvocationTargetException e) {
            throw new IllegalStateException(prototype.getClass().getSimpleName() + " v" + version + ": "
                + e.getCause(), e.getCause());
        }
    }

    /** The body bytes exactly as Kafka writes them (no size prefix, no header). */
    static byte[] serialize(Message message, short version) {
        ObjectSerializationCache cache = new ObjectSerializationCache();
        int size = message.size(cache, version);
        ByteBuffer buffer = ByteBuffer.allocate(size);
        message.write(new ByteBufferAccessor(buffer), cache, version);
        if (buffer.hasRemaining()) {
            throw new IllegalStateException("size() and write() disagree for " + message.getClass().getSimpleName());
        }
        return buffer.array();
    }

    /** A new, empty Data object for an API/kind as named in messages.tsv. */
    static Message newMessage(int apiKey, String kind) {
        switch (kind) {
            case "request":
                return ApiMessageType.fromApiKey((short) apiKey).newRequest();
            case "response":
                return ApiMessageType.fromApiKey((short) apiKey).newResponse();
            case "request_header":
                return new RequestHeaderData();
            case "response_header":
                return new ResponseHeaderData();
            default:
                throw new IllegalArgumentException("unknown kind " + kind);
        }
    }

    /**
     * Parses a body with Kafka's Data class and writes it again; returns null when the bytes
     * are identical and everything was consumed, else the reason.
     */
    static String check(int apiKey, String kind, int version, byte[] body) {
        try {
            Message m = newMessage(apiKey, kind);
            ByteBuffer in = ByteBuffer.wrap(body);
            m.read(new ByteBufferAccessor(in), (short) version);
            if (in.hasRemaining()) {
                return in.remaining() + " bytes left after parsing";
            }
            byte[] again = serialize(m, (short) version);
            if (!java.util.Arrays.equals(body, again)) {
                return "re-serialized bytes differ: expected " + Hex.of(body) + ", Kafka wrote " + Hex.of(again);
            }
            return null;
        } catch (Exception e) {
            return "reading with Kafka failed: " + e;
        }
    }

    /** A real record batch for `records` fields: two records with headers, magic 2. */
    private static byte[] recordsFieldValue() {
        return RecordVectors.batch(RecordBatch.MAGIC_VALUE_V2, Compression.NONE,
            org.apache.kafka.common.record.TimestampType.CREATE_TIME, 0, RecordBatch.NO_TIMESTAMP,
            RecordBatch.NO_PRODUCER_ID, RecordBatch.NO_PRODUCER_EPOCH, RecordBatch.NO_SEQUENCE, false, 0,
            RecordVectors.rec(0, RecordVectors.T0, "key-0", "value-0", RecordVectors.header("h", "1")),
            RecordVectors.rec(1, RecordVectors.T0 + 1, null, "value-1"));
    }

    /**
     * Builds the JSON tree of one message version from its spec. Values come from a counter, so
     * they are distinct (map keys stay unique) and identical on every run.
     */
    static final class Populator {
        private final MessageSpec spec;
        private final short version;
        private final boolean nullVariant;
        private final byte[] records;
        private long counter;
        int nullsWritten;

        Populator(MessageSpec spec, short version, boolean nullVariant, byte[] records, long seed) {
            this.spec = spec;
            this.version = version;
            this.nullVariant = nullVariant;
            this.records = records;
            this.counter = seed;
        }

        ObjectNode message() {
            return struct(spec.fields, 0);
        }

        private ObjectNode struct(List<MessageSpec.Field> fields, int depth) {
            ObjectNode node = JsonNodeFactory.instance.objectNode();
            for (MessageSpec.Field f : fields) {
                // Fields absent from this version are left out; the converter then uses the default.
                if (f.versions().contains(version)) {
                    node.set(f.jsonKey(), value(f, depth));
                }
            }
            return node;
        }

        private JsonNode value(MessageSpec.Field f, int depth) {
            JsonNodeFactory n = JsonNodeFactory.instance;
            if (f.nullable().contains(version) && nullVariant) {
                nullsWritten++;
                return n.nullNode();
            }
            if (f.isArray()) {
                // Several elements at the top, fewer deeper down to keep nested messages small.
                int count = depth == 0 ? 3 : depth == 1 ? 2 : 1;
                ArrayNode array = n.arrayNode();
                for (int i = 0; i < count; i++) {
                    array.add(isStruct(f.baseType()) ? struct(spec.structFields(f), depth + 1) : scalar(f, f.baseType()));
                }
                return array;
            }
            if (isStruct(f.type())) {
                return struct(spec.structFields(f), depth + 1);
            }
            return scalar(f, f.type());
        }

        private static boolean isStruct(String type) {
            switch (type) {
                case "bool": case "int8": case "int16": case "uint16": case "int32": case "uint32":
                case "int64": case "float64": case "string": case "uuid": case "bytes": case "records":
                    return false;
                default:
                    return true;
            }
        }

        /** A value for a primitive type, never equal to the field's default. */
        private JsonNode scalar(MessageSpec.Field f, String type) {
            JsonNodeFactory n = JsonNodeFactory.instance;
            long c = ++counter;
            Long dflt = numericDefault(f.defaultValue());
            switch (type) {
                case "bool":
                    return n.booleanNode(!"true".equals(f.defaultValue()));
                case "int8":
                    return n.numberNode((byte) avoid(1 + c % 120, dflt));
                case "int16":
                    return n.numberNode((short) avoid(1000 + c % 30000, dflt));
                case "uint16":
                    return n.numberNode((int) avoid(40000 + c % 20000, dflt)); // above int16 range on purpose
                case "int32":
                    return n.numberNode((int) avoid(100_000 + c * 7, dflt));
                case "uint32":
                    return n.numberNode(avoid(3_000_000_000L + c, dflt)); // above int32 range on purpose
                case "int64":
                    return n.numberNode(avoid(1_000_000_000_000L + c * 13, dflt));
                case "float64":
                    return n.numberNode(c + 0.25);
                case "string":
                    // Every third string carries non-ASCII text: lengths count UTF-8 bytes.
                    return n.textNode(f.name() + "-" + c + (c % 3 == 0 ? "-ünï" : ""));
                case "uuid":
                    return n.textNode(new Uuid(0x5a5a_0000_0000_0000L + c, 0x1234_5678_0000_0000L + c).toString());
                case "bytes":
                    byte[] b = new byte[3 + (int) (c % 4)];
                    for (int i = 0; i < b.length; i++) {
                        b[i] = (byte) (c * 31 + i);
                    }
                    return new BinaryNode(b);
                case "records":
                    return new BinaryNode(records);
                default:
                    throw new IllegalStateException(spec.name + ": unknown type " + type);
            }
        }

        private static long avoid(long value, Long dflt) {
            return dflt != null && dflt == value ? value + 1 : value;
        }

        private static Long numericDefault(String text) {
            if (text == null || text.isEmpty()) {
                return null;
            }
            try {
                return text.startsWith("0x") ? Long.parseLong(text.substring(2), 16) : Long.parseLong(text);
            } catch (NumberFormatException e) {
                return null; // "null", "true", "false"
            }
        }
    }
}
