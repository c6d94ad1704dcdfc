package sansa.conformance;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.WakeupException;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * The Java side of sansa's live consumer suite: records for sansa to read, and a group
 * member for sansa to share a group with.
 */
final class LiveModes {

    private LiveModes() {
    }

    private static Properties producerProps(String bootstrap) {
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        return props;
    }

    /**
     * {@code produce BOOTSTRAP TOPIC CODECS COUNT}: for each of the comma-separated CODECS, a
     * producer writes COUNT records compressed with it, with keys (some null), values (some
     * null), headers (one with a null value) and timestamps (half set, half left to the
     * producer); prints each record as {@link ReadBack} would read it.
     */
    static int produce(String bootstrap, String topic, String codecs, int count, PrintStream out) throws Exception {
        for (String codec : codecs.split(",")) {
            produceOne(bootstrap, topic, codec, count, out);
        }
        return 0;
    }

    private static void produceOne(String bootstrap, String topic, String codec, int count, PrintStream out)
            throws Exception {
        Properties props = producerProps(bootstrap);
        props.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
        // Many records per batch, so the codec has something to compress.
        props.put(ProducerConfig.LINGER_MS_CONFIG, "20");
        List<Future<RecordMetadata>> sent = new ArrayList<>();
        List<ProducerRecord<byte[], byte[]>> records = new ArrayList<>();
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
            for (int i = 0; i < count; i++) {
                byte[] key = i % 10 == 9 ? null : ("key-" + (i % 20)).getBytes(StandardCharsets.UTF_8);
                byte[] value = i % 25 == 24 ? null
                    : (codec + " value " + i + " ").repeat(1 + i % 5).getBytes(StandardCharsets.UTF_8);
                RecordHeaders headers = new RecordHeaders();
                headers.add("codec", codec.getBytes(StandardCharsets.UTF_8));
                headers.add("i", ByteBuffer.allocate(4).putInt(i).array());
                headers.add("null", null);
                Long timestamp = i % 2 == 0 ? 1_700_000_000_000L + i : null;
                ProducerRecord<byte[], byte[]> r = new ProducerRecord<>(topic, null, timestamp, key, value, headers);
                records.add(r);
                sent.add(producer.send(r));
            }
            producer.flush();
            for (int i = 0; i < count; i++) {
                RecordMetadata m = sent.get(i).get();
                ProducerRecord<byte[], byte[]> r = records.get(i);
                out.println(ReadBack.line(m.partition(), m.offset(), "CreateTime", m.timestamp(), r.key(), r.value(),
                    r.headers()));
            }
        }
        out.flush();
    }

    /**
     * {@code txn BOOTSTRAP TOPIC}: six transactions of 20 records each, the even ones committed
     * and the odd ones aborted; prints {@code committed VALUE} for each committed record.
     */
    static int txn(String bootstrap, String topic, PrintStream out) {
        Properties props = producerProps(bootstrap);
        props.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, "sansa-live-" + topic);
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
            producer.initTransactions();
            for (int t = 0; t < 6; t++) {
                producer.beginTransaction();
                List<String> values = new ArrayList<>();
                for (int i = 0; i < 20; i++) {
                    String value = "txn-" + t + "-record-" + i;
                    values.add(value);
                    producer.send(new ProducerRecord<>(topic, ("k" + i).getBytes(StandardCharsets.UTF_8),
                        value.getBytes(StandardCharsets.UTF_8)));
                }
                producer.flush();
                if (t % 2 == 0) {
                    producer.commitTransaction();
                    for (String v : values) {
                        out.println("committed " + v);
                    }
                } else {
                    producer.abortTransaction();
                }
            }
        }
        out.flush();
        return 0;
    }

    /**
     * {@code group-consume BOOTSTRAP TOPIC GROUP PROTOCOL ASSIGNOR}: a member of GROUP
     * (PROTOCOL classic with the classic ASSIGNOR, or consumer for KIP-848) until standard
     * input closes, then leaves. Prints {@code assigned P,P,...} whenever its assignment
     * changes and {@code rec PARTITION OFFSET} for each record, committing after each poll.
     */
    static int groupConsume(String bootstrap, String topic, String group, String protocol, String assignor,
                            PrintStream out) {
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        props.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol);
        if (protocol.equals("classic")) {
            props.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, assignorClass(assignor));
            props.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "6000");
            props.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "1000");
        }
        AtomicBoolean stop = new AtomicBoolean();
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props)) {
            Thread watcher = new Thread(() -> {
                try {
                    while (System.in.read() != -1) {
                        // Only the end of input matters.
                    }
                } catch (java.io.IOException e) {
                    // A broken pipe is an end too.
                }
                stop.set(true);
                consumer.wakeup();
            });
            watcher.setDaemon(true);
            watcher.start();
            consumer.subscribe(List.of(topic));
            Set<Integer> assigned = new TreeSet<>();
            out.println("assigned ");
            out.flush();
            while (!stop.get()) {
                try {
                    var records = consumer.poll(Duration.ofMillis(100));
                    for (ConsumerRecord<byte[], byte[]> r : records) {
                        out.println("rec " + r.partition() + " " + r.offset());
                    }
                    if (!records.isEmpty()) {
                        consumer.commitSync();
                    }
                } catch (WakeupException e) {
                    break;
                }
                Set<Integer> now = new TreeSet<>();
                for (TopicPartition tp : consumer.assignment()) {
                    now.add(tp.partition());
                }
                if (!now.equals(assigned)) {
                    assigned = now;
                    StringBuilder line = new StringBuilder("assigned ");
                    for (int p : now) {
                        if (line.length() > 9) {
                            line.append(',');
                        }
                        line.append(p);
                    }
                    out.println(line);
                }
                out.flush();
            }
        }
        out.flush();
        return 0;
    }

    private static String assignorClass(String name) {
        String base = "org.apache.kafka.clients.consumer.";
        switch (name) {
            case "range":
                return base + "RangeAssignor";
            case "roundrobin":
                return base + "RoundRobinAssignor";
            case "sticky":
                return base + "StickyAssignor";
            case "cooperative-sticky":
                return base + "CooperativeStickyAssignor";
            default:
                throw new IllegalArgumentException("unknown assignor " + name);
        }
    }
}
