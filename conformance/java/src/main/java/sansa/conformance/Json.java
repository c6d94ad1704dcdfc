package sansa.conformance;

import com.fasterxml.jackson.core.json.JsonReadFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;

import java.io.IOException;
import java.util.Iterator;
import java.util.Map;

/** Shared Jackson setup plus a structural diff that names the first differing path. */
final class Json {
    /** Plain JSON for the vector files (compact, one line, insertion order kept). */
    static final ObjectMapper MAPPER = new ObjectMapper();

    /** Kafka's specs carry // comments, which strict JSON rejects. */
    static final ObjectMapper SPEC_READER = JsonMapper.builder()
        .enable(JsonReadFeature.ALLOW_JAVA_COMMENTS)
        .enable(JsonReadFeature.ALLOW_TRAILING_COMMA)
        .build();

    private Json() {
    }

    static String write(JsonNode node) {
        try {
            return MAPPER.writeValueAsString(node);
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    static JsonNode parse(String text) throws IOException {
        return MAPPER.readTree(text);
    }

    /**
     * Returns null when equal, otherwise "path: expected X, found Y" for the first difference.
     * Both sides should come from parsed text so that number node types agree.
     */
    static String diff(String path, JsonNode expected, JsonNode actual) {
        if (expected.equals(actual)) {
            return null;
        }
        if (expected.isObject() && actual.isObject()) {
            for (Map.Entry<String, JsonNode> e : expected.properties()) {
                JsonNode other = actual.get(e.getKey());
                if (other == null) {
                    return path + "." + e.getKey() + ": missing in the buffer's description";
                }
                String d = diff(path + "." + e.getKey(), e.getValue(), other);
                if (d != null) {
                    return d;
                }
            }
            for (Iterator<String> it = actual.fieldNames(); it.hasNext(); ) {
                String k = it.next();
                if (!expected.has(k)) {
                    return path + "." + k + ": not in the expected json (found " + write(actual.get(k)) + ")";
                }
            }
        }
        if (expected.isArray() && actual.isArray()) {
            if (expected.size() != actual.size()) {
                return path + ": expected " + expected.size() + " elements, found " + actual.size();
            }
            for (int i = 0; i < expected.size(); i++) {
                String d = diff(path + "[" + i + "]", expected.get(i), actual.get(i));
                if (d != null) {
                    return d;
                }
            }
        }
        return path + ": expected " + abbreviate(write(expected)) + ", found " + abbreviate(write(actual));
    }

    private static String abbreviate(String s) {
        return s.length() <= 80 ? s : s.substring(0, 77) + "...";
    }
}
