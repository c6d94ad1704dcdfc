package sansa.conformance;

import org.apache.kafka.common.errors.RetriableException;
import org.apache.kafka.common.protocol.Errors;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;

/**
 * Entry point.
 *
 * <pre>
 *   generate OUTDIR   write messages.tsv, records.tsv, errors.tsv, partitions.tsv and assignors.tsv
 *                     (deterministic)
 *   verify DIR        check DIR/batches.tsv (record batches encoded by sansa) and, if present,
 *                     DIR/messages.tsv (message bodies) against Kafka's own reader
 *   readback BOOTSTRAP TOPIC
 *                     print every record of TOPIC as Kafka's own consumer reads it
 *   produce BOOTSTRAP TOPIC CODECS COUNT
 *                     produce COUNT records with Kafka's producer, printing them as readback would
 *   txn BOOTSTRAP TOPIC
 *                     transactions into TOPIC, some committed and some aborted
 *   group-consume BOOTSTRAP TOPIC GROUP PROTOCOL ASSIGNOR
 *                     a member of GROUP with Kafka's consumer until standard input closes
 * </pre>
 */
public final class Main {

    private Main() {
    }

    public static void main(String[] args) throws Exception {
        if (args.length == 3 && args[0].equals("readback")) {
            System.exit(ReadBack.run(args[1], args[2], System.out));
        }
        if (args.length == 5 && args[0].equals("produce")) {
            System.exit(LiveModes.produce(args[1], args[2], args[3], Integer.parseInt(args[4]), System.out));
        }
        if (args.length == 3 && args[0].equals("txn")) {
            System.exit(LiveModes.txn(args[1], args[2], System.out));
        }
        if (args.length == 6 && args[0].equals("group-consume")) {
            System.exit(LiveModes.groupConsume(args[1], args[2], args[3], args[4], args[5], System.out));
        }
        if (args.length != 2 || !(args[0].equals("generate") || args[0].equals("verify"))) {
            System.err.println("usage: generate OUTDIR | verify DIR | readback BOOTSTRAP TOPIC"
                + " | produce BOOTSTRAP TOPIC CODECS COUNT | txn BOOTSTRAP TOPIC"
                + " | group-consume BOOTSTRAP TOPIC GROUP PROTOCOL ASSIGNOR");
            System.exit(2);
        }
        Path dir = Path.of(args[1]);
        int status = args[0].equals("generate") ? generate(dir) : verify(dir);
        System.exit(status);
    }

    private static int generate(Path out) throws Exception {
        Files.createDirectories(out);

        List<String> messages = new ArrayList<>();
        for (MessageVectors.Vector v : MessageVectors.all()) {
            // Self-check: Kafka must read its own bytes back to the same bytes.
            String problem = MessageVectors.check(v.apiKey(), v.kind(), v.version(), v.body());
            if (problem != null) {
                throw new IllegalStateException(v.name() + ": " + problem);
            }
            messages.add(v.tsvLine());
        }

        List<String> records = new ArrayList<>();
        for (RecordVectors.Vector v : RecordVectors.all()) {
            String json = Json.write(RecordVectors.describe(v.buffer()));
            String problem = RecordVectors.check(Hex.of(v.buffer()), json);
            if (problem != null) {
                throw new IllegalStateException(v.name() + ": " + problem);
            }
            records.add(v.name() + "\t" + Hex.of(v.buffer()) + "\t" + json);
        }

        List<String> errors = new ArrayList<>();
        Errors[] all = Errors.values();
        Arrays.sort(all, Comparator.comparingInt(Errors::code));
        for (Errors e : all) {
            errors.add(e.code() + "\t" + e.name() + "\t" + (e.exception() instanceof RetriableException));
        }

        writeLines(out.resolve("messages.tsv"), messages);
        writeLines(out.resolve("records.tsv"), records);
        writeLines(out.resolve("errors.tsv"), errors);
        writeLines(out.resolve("partitions.tsv"), PartitionVectors.lines());
        writeLines(out.resolve("assignors.tsv"), AssignorVectors.lines());
        return 0;
    }

    private static int verify(Path dir) throws IOException {
        Path batches = dir.resolve("batches.tsv");
        Path messages = dir.resolve("messages.tsv");
        if (!Files.exists(batches) && !Files.exists(messages)) {
            System.err.println("verify: neither " + batches + " nor " + messages + " exists");
            return 2;
        }
        PrintStream out = System.out;
        int passed = 0;
        int failed = 0;
        if (Files.exists(batches)) {
            int lineNo = 0;
            for (String line : Files.readAllLines(batches, StandardCharsets.UTF_8)) {
                lineNo++;
                if (line.isBlank()) {
                    continue;
                }
                String[] cols = line.split("\t", -1);
                String name = cols[0];
                String problem = cols.length != 3
                    ? "line " + lineNo + " of batches.tsv has " + cols.length + " columns, expected 3"
                    : RecordVectors.check(cols[1], cols[2]);
                if (problem == null) {
                    out.println("ok " + name);
                    passed++;
                } else {
                    out.println("FAIL " + name + ": " + problem);
                    failed++;
                }
            }
        }
        if (Files.exists(messages)) {
            int lineNo = 0;
            for (String line : Files.readAllLines(messages, StandardCharsets.UTF_8)) {
                lineNo++;
                if (line.isBlank()) {
                    continue;
                }
                String[] cols = line.split("\t", -1);
                String name = cols.length > 3 ? cols[3] : "messages.tsv:" + lineNo;
                String problem;
                if (cols.length != 5) {
                    problem = "line " + lineNo + " of messages.tsv has " + cols.length + " columns, expected 5";
                } else {
                    try {
                        problem = MessageVectors.check(Integer.parseInt(cols[0]), cols[1], Integer.parseInt(cols[2]),
                            Hex.parse(cols[4]));
                    } catch (IllegalArgumentException e) {
                        problem = "bad line " + lineNo + ": " + e.getMessage();
                    }
                }
                if (problem == null) {
                    out.println("ok " + name);
                    passed++;
                } else {
                    out.println("FAIL " + name + ": " + problem);
                    failed++;
                }
            }
        }
        out.println(passed + " passed, " + failed + " failed");
        return failed == 0 ? 0 : 1;
    }

    /** LF line endings and UTF-8 regardless of platform, so output is byte-identical everywhere. */
    private static void writeLines(Path path, List<String> lines) throws IOException {
        StringBuilder sb = new StringBuilder();
        for (String l : lines) {
            sb.append(l).append('\n');
        }
        Files.write(path, sb.toString().getBytes(StandardCharsets.UTF_8));
    }
}
