package sansa.conformance;

import com.fasterxml.jackson.databind.JsonNode;

import java.io.IOException;
import java.io.InputStream;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The parts of one Kafka JSON message spec (common/message/*.json inside the kafka-clients jar)
 * that the populator needs: which fields exist in which versions, their types, nullability,
 * tags and defaults. Reading the spec from the same jar keeps field coverage in step with the
 * pinned Kafka version without hand-written per-API code.
 */
final class MessageSpec {

    /** A version range as the specs write it: "none", "3", "1-4" or "2+". */
    record Versions(int low, int high) {
        static final Versions NONE = new Versions(1, 0);

        static Versions parse(String text) {
            if (text == null || text.isEmpty() || text.equals("none")) {
                return NONE;
            }
            if (text.endsWith("+")) {
                return new Versions(Integer.parseInt(text.substring(0, text.length() - 1)), Short.MAX_VALUE);
            }
            int dash = text.indexOf('-');
            if (dash < 0) {
                int v = Integer.parseInt(text);
                return new Versions(v, v);
            }
            return new Versions(Integer.parseInt(text.substring(0, dash)), Integer.parseInt(text.substring(dash + 1)));
        }

        boolean contains(int version) {
            return version >= low && version <= high;
        }
    }

    /** One field of a struct; {@code fields} is set for inline struct definitions. */
    record Field(String name, String type, Versions versions, Versions nullable, Versions tagged,
                 Integer tag, String defaultValue, List<Field> fields) {

        /** The key the generated JsonConverter classes use for this field. */
        String jsonKey() {
            return Character.toLowerCase(name.charAt(0)) + name.substring(1);
        }

        boolean isArray() {
            return type.startsWith("[]");
        }

        /** The element type for arrays, the type itself otherwise. */
        String baseType() {
            return isArray() ? type.substring(2) : type;
        }
    }

    final String name;
    final int apiKey;
    final Versions valid;
    final Versions flexible;
    final List<Field> fields;
    private final Map<String, List<Field>> commonStructs;

    private MessageSpec(JsonNode root) {
        this.name = root.get("name").asText();
        this.apiKey = root.has("apiKey") ? root.get("apiKey").asInt() : -1;
        this.valid = Versions.parse(root.path("validVersions").asText(null));
        this.flexible = Versions.parse(root.path("flexibleVersions").asText(null));
        this.fields = parseFields(root.get("fields"));
        Map<String, List<Field>> common = new HashMap<>();
        for (JsonNode s : root.path("commonStructs")) {
            common.put(s.get("name").asText(), parseFields(s.get("fields")));
        }
        this.commonStructs = common;
    }

    /** Loads e.g. "FetchRequest" from common/message/FetchRequest.json on the classpath (the kafka-clients jar). */
    static MessageSpec load(String specName) throws IOException {
        String path = "common/message/" + specName + ".json";
        try (InputStream in = MessageSpec.class.getClassLoader().getResourceAsStream(path)) {
            if (in == null) {
                throw new IOException("spec not found on the classpath: " + path);
            }
            return new MessageSpec(Json.SPEC_READER.readTree(in));
        }
    }

    /** The fields of a struct type, whether defined inline on the field or under commonStructs. */
    List<Field> structFields(Field f) {
        if (f.fields() != null) {
            return f.fields();
        }
        List<Field> common = commonStructs.get(f.baseType());
        if (common == null) {
            throw new IllegalStateException(name + ": no definition for struct type " + f.baseType());
        }
        return common;
    }

    private static List<Field> parseFields(JsonNode array) {
        if (array == null || array.isNull()) {
            return Collections.emptyList();
        }
        List<Field> out = new ArrayList<>();
        for (JsonNode n : array) {
            JsonNode dflt = n.get("default");
            out.add(new Field(
                n.get("name").asText(),
                n.get("type").asText(),
                Versions.parse(n.path("versions").asText(null)),
                Versions.parse(n.path("nullableVersions").asText(null)),
                Versions.parse(n.path("taggedVersions").asText(null)),
                n.has("tag") ? n.get("tag").asInt() : null,
                dflt == null ? null : dflt.asText(),
                n.has("fields") ? parseFields(n.get("fields")) : null));
        }
        return out;
    }
}
