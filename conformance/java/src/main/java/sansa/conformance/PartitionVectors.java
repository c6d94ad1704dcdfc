package sansa.conformance;

import org.apache.kafka.clients.producer.internals.BuiltInPartitioner;
import org.apache.kafka.common.utils.Utils;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/**
 * Keyed-partitioning vectors: for each key, Kafka's murmur2 hash and the partition its producer
 * picks for that key under each of {@link #COUNTS} partitions.
 */
final class PartitionVectors {

    /** The partition counts, in the column order of partitions.tsv. */
    static final int[] COUNTS = {1, 2, 3, 6, 7, 12, 100, 1000};

    /** Fixed, so every run writes the same keys. */
    private static final long SEED = 794L;

    /** Text keys, non-ASCII ones written with escapes so the source encoding cannot matter. */
    private static final String[] TEXT = {
        "", "a", "ab", "abc", "abcd", "21", "foobar", "key", "key-0", "key-1", "key-2", "key-10",
        "user-42", "order:2024-01-31:0001", "a-little-bit-long-string", "a-little-bit-longer-string",
        "The quick brown fox jumps over the lazy dog",
        "caf\u00e9", "na\u00efve r\u00e9sum\u00e9", "\u00fcber", "\u043a\u043b\u044e\u0447",
        "\u65e5\u672c\u8a9e", "\ud55c\uad6d\uc5b4", "\u0639\u0631\u0628\u064a", "\u2603",
        "\ud83e\udd80", "\ud83e\udd80 crab", "emoji \ud83d\ude00\ud83d\ude01", "\u0000",
        "tab\there", "line\nbreak", " ",
    };

    private PartitionVectors() {
    }

    static List<String> lines() {
        List<byte[]> keys = new ArrayList<>();
        Random random = new Random(SEED);
        // Every length from 0 to 64 once, so each tail case and block count is covered ...
        for (int len = 0; len <= 64; len++) {
            keys.add(randomBytes(random, len));
        }
        // ... then random lengths in the same range.
        for (int i = 0; i < 200; i++) {
            keys.add(randomBytes(random, random.nextInt(65)));
        }
        for (String s : TEXT) {
            keys.add(s.getBytes(StandardCharsets.UTF_8));
        }

        List<String> lines = new ArrayList<>();
        for (byte[] key : keys) {
            StringBuilder line = new StringBuilder(Hex.of(key)).append('\t').append(Utils.murmur2(key));
            for (int n : COUNTS) {
                line.append('\t').append(BuiltInPartitioner.partitionForKey(key, n));
            }
            lines.add(line.toString());
        }
        return lines;
    }

    private static byte[] randomBytes(Random random, int len) {
        byte[] b = new byte[len];
        random.nextBytes(b);
        return b;
    }
}
