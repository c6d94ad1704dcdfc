package sansa.conformance;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

import java.io.IOException;
import java.io.PrintStream;
import java.io.Reader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;

/**
 * Reads a whole topic with Kafka's own consumer (manual assignment, from the beginning to the
 * end offsets taken at the start) and prints one line per record:
 * {@code partition offset timestampType timestamp keyHex valueHex headers}, where a null key
 * or value is {@code -}, and headers are {@code key=valueHex} pairs joined by commas
 * ({@code key=-} for a null value, {@code -} for none). A bootstrap of {@code @FILE} reads the
 * client properties FILE instead (bootstrap.servers, security.protocol, sasl.*, ssl.*).
 */
final class ReadBack {

    private ReadBack() {
    }

    static int run(String bootstrap, String topic, PrintStream out) throws IOException {
        Properties props = new Properties();
        if (bootstrap.startsWith("@")) {
            try (Reader file = Files.newBufferedReader(Path.of(bootstrap.substring(1)))) {
                props.load(file);
            }
        } else {
            props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        }
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        props.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props)) {
            List<TopicPartition> partitions = new ArrayList<>();
            for (PartitionInfo p : consumer.partitionsFor(topic, Duration.ofSeconds(30))) {
                partitions.add(new TopicPartition(topic, p.partition()));
            }
            consumer.assign(partitions);
            consumer.seekToBeginning(partitions);
            Map<TopicPartition, Long> end = consumer.endOffsets(partitions, Duration.ofSeconds(30));
            long deadline = System.nanoTime() + Duration.ofSeconds(120).toNanos();
            while (!reachedEnd(consumer, end)) {
                if (System.nanoTime() > deadline) {
                    System.err.println("readback: timed out before the end offsets " + end);
                    return 1;
                }
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(500))) {
                    out.println(line(r));
                }
            }
        }
        return 0;
    }

    private static boolean reachedEnd(KafkaConsumer<byte[], byte[]> consumer, Map<TopicPartition, Long> end) {
        for (Map.Entry<TopicPartition, Long> e : end.entrySet()) {
            if (consumer.position(e.getKey()) < e.getValue()) {
                return false;
            }
        }
        return true;
    }

    private static String line(ConsumerRecord<byte[], byte[]> r) {
        return line(r.partition(), r.offset(), r.timestampType().name, r.timestamp(), r.key(), r.value(), r.headers());
    }

    /** One record in the format above; the Java producer mode prints the records it sent alike. */
    static String line(int partition, long offset, String timestampType, long timestamp, byte[] key, byte[] value,
                       Iterable<Header> headerList) {
        StringBuilder headers = new StringBuilder();
        for (Header h : headerList) {
            if (headers.length() > 0) {
                headers.append(',');
            }
            headers.append(Hex.of(h.key().getBytes(StandardCharsets.UTF_8))).append('=')
                .append(h.value() == null ? "-" : Hex.of(h.value()));
        }
        return partition + "\t" + offset + "\t" + timestampType + "\t" + timestamp + "\t"
            + (key == null ? "-" : Hex.of(key)) + "\t" + (value == null ? "-" : Hex.of(value)) + "\t"
            + (headers.length() == 0 ? "-" : headers.toString());
    }
}
