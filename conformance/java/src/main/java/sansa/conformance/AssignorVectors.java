package sansa.conformance;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.apache.kafka.clients.consumer.ConsumerGroupMetadata;
import org.apache.kafka.clients.consumer.ConsumerPartitionAssignor;
import org.apache.kafka.clients.consumer.ConsumerPartitionAssignor.Assignment;
import org.apache.kafka.clients.consumer.ConsumerPartitionAssignor.GroupAssignment;
import org.apache.kafka.clients.consumer.ConsumerPartitionAssignor.GroupSubscription;
import org.apache.kafka.clients.consumer.ConsumerPartitionAssignor.Subscription;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.RangeAssignor;
import org.apache.kafka.clients.consumer.RoundRobinAssignor;
import org.apache.kafka.clients.consumer.StickyAssignor;
import org.apache.kafka.clients.consumer.internals.ConsumerProtocol;
import org.apache.kafka.common.Cluster;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Random;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.function.Supplier;

/**
 * Group assignment vectors: random groups (seeded, so every run writes the same file) handed to
 * Kafka's own classic assignors exactly as a Java group leader hands them over: each member's
 * subscription serialized with {@link ConsumerProtocol}, read back, and put into a
 * {@code HashMap} in the order the JoinGroup response lists the members.
 *
 * <p>Sticky and cooperative-sticky cases run three rounds: a fresh group, then twice the same group
 * one generation later, where members report what they own (in the subscription and in the
 * assignor's user data, written by the member's own assignor instance after
 * {@code onAssignment}), with members joining and leaving, subscriptions and partition counts
 * changing, stale generations and conflicting claims.
 */
final class AssignorVectors {

    /** Cases per assignor; the sticky ones write three rows (rounds) per case. */
    static final int CASES = 220;

    private static final long SEED = 429L;

    private static final String[] TOPIC_NAMES = {
        "orders", "payments", "t", "t0", "t1", "t10", "clicks", "a", "b", "events-eu", "events-us",
        "logs", "Metrics", "z", "topic-with-a-long-name", "caf\u00e9", "x.y", "_internal", "q", "user_profiles",
    };

    private static final JsonNodeFactory JSON = JsonNodeFactory.instance;
    private static final Node NODE = new Node(0, "localhost", 9092);

    /** The exception class of the last failed {@link #run}. */
    private static String lastFailure;

    private AssignorVectors() {
    }

    private record Member(String id, String instance, List<String> topics, String rack) {
    }

    static List<String> lines() {
        List<String> lines = new ArrayList<>();
        addSimple(lines, "range", RangeAssignor::new, SEED);
        addSimple(lines, "roundrobin", RoundRobinAssignor::new, SEED + 1);
        addSticky(lines, "sticky", StickyAssignor::new, SEED + 2);
        addSticky(lines, "cooperative-sticky", CooperativeStickyAssignor::new, SEED + 3);
        return lines;
    }

    private static void addSimple(List<String> lines, String name, Supplier<ConsumerPartitionAssignor> make, long seed) {
        Random r = new Random(seed);
        for (int c = 0; c < CASES; c++) {
            Map<String, Integer> topics = randomTopics(r);
            List<Member> members = randomMembers(r, new ArrayList<>(topics.keySet()), Collections.emptySet());
            List<byte[]> subs = new ArrayList<>();
            for (Member m : members) {
                int generation = r.nextInt(4) == 0 ? -1 : r.nextInt(10);
                subs.add(serialize(new Subscription(m.topics(), null, Collections.emptyList(), generation,
                    Optional.ofNullable(m.rack()))));
            }
            lines.add(assignLine(name + "-" + c, name, make.get(), topics, members, subs));
        }
    }

    private static void addSticky(List<String> lines, String name, Supplier<ConsumerPartitionAssignor> make, long seed) {
        Random r = new Random(seed);
        boolean cooperative = name.equals("cooperative-sticky");
        for (int c = 0; c < CASES; c++) {
            // Round 1: nobody owns anything yet.
            Map<String, Integer> topics = randomTopics(r);
            List<String> topicNames = new ArrayList<>(topics.keySet());
            List<Member> members = randomMembers(r, topicNames, Collections.emptySet());
            List<byte[]> subs = new ArrayList<>();
            for (Member m : members) {
                ConsumerPartitionAssignor own = make.get();
                ByteBuffer userData = own.subscriptionUserData(new LinkedHashSet<>(m.topics()));
                if (m == members.get(0)) {
                    lines.add(userDataLine(name + "-" + c + "-fresh-" + m.id(), name, null, -1, userData));
                }
                subs.add(serialize(new Subscription(m.topics(), userData, Collections.emptyList(), -1,
                    Optional.ofNullable(m.rack()))));
            }
            GroupAssignment last = run(make.get(), topics, members, subs);
            lines.add(assignLine(name + "-" + c + "-r1", name, last, topics, members, subs));
            // Rounds 2 and 3, one generation apart: members report what the previous round gave them.
            int generation = 1 + r.nextInt(30);
            for (int round = 2; round <= 3 && last != null; round++, generation++) {
                for (Map.Entry<String, Integer> t : new ArrayList<>(topics.entrySet())) {
                    if (r.nextInt(6) == 0) {
                        topics.put(t.getKey(), t.getValue() + 1 + r.nextInt(4));
                    }
                }
                List<Member> next = new ArrayList<>();
                Set<String> used = new TreeSet<>();
                for (Member m : members) {
                    used.add(m.id());
                    if (members.size() > 1 && r.nextInt(6) == 0) {
                        continue; // left the group
                    }
                    List<String> mt = m.topics();
                    if (r.nextInt(8) == 0) {
                        mt = randomSubset(r, new ArrayList<>(topics.keySet()));
                    }
                    next.add(new Member(m.id(), m.instance(), mt, m.rack()));
                }
                int joining = r.nextInt(3);
                List<Member> joiners = randomMembers(r, new ArrayList<>(topics.keySet()), used);
                for (int i = 0; i < joining && i < joiners.size(); i++) {
                    next.add(joiners.get(i));
                }
                if (next.isEmpty()) {
                    next.add(joiners.get(0)); // an empty group never reaches an assignor
                }
                Collections.shuffle(next, r);

                List<TopicPartition> allAssigned = new ArrayList<>();
                last.groupAssignment().values().forEach(a -> allAssigned.addAll(a.partitions()));
                List<byte[]> subs2 = new ArrayList<>();
                for (Member m : next) {
                    Assignment previous = last.groupAssignment().get(m.id());
                    ConsumerPartitionAssignor own = make.get();
                    ByteBuffer userData;
                    List<TopicPartition> owned = new ArrayList<>();
                    int memberGeneration = -1;
                    if (previous != null) {
                        owned.addAll(previous.partitions());
                        memberGeneration = generation;
                        int roll = r.nextInt(10);
                        if (roll == 0 && generation > 2) {
                            // A member that missed a rebalance: older generation, claims what it used to own.
                            memberGeneration = generation - 1 - r.nextInt(2);
                            claimSome(r, allAssigned, owned);
                        } else if (roll == 1) {
                            // Two members of the same generation claiming one partition (invalid, but Java copes).
                            claimSome(r, allAssigned, owned);
                        }
                        own.onAssignment(new Assignment(owned), new ConsumerGroupMetadata("group", memberGeneration,
                            m.id(), Optional.ofNullable(m.instance())));
                        userData = own.subscriptionUserData(new LinkedHashSet<>(m.topics()));
                        if (round == 2) {
                            lines.add(userDataLine(name + "-" + c + "-r2-" + m.id(), name, owned, memberGeneration,
                                userData));
                        }
                    } else {
                        userData = own.subscriptionUserData(new LinkedHashSet<>(m.topics()));
                    }
                    // An eager member has given everything up before it joins; a cooperative one keeps it.
                    List<TopicPartition> reported = cooperative || r.nextInt(2) == 0 ? owned : Collections.emptyList();
                    // Older members leave the subscription's generation unset and rely on the user data.
                    int reportedGeneration = r.nextInt(8) == 0 ? -1 : memberGeneration;
                    subs2.add(serialize(new Subscription(m.topics(), userData, reported, reportedGeneration,
                        Optional.ofNullable(m.rack()))));
                }
                GroupAssignment result = run(make.get(), topics, next, subs2);
                lines.add(assignLine(name + "-" + c + "-r" + round, name, result, topics, next, subs2));
                members = next;
                last = result;
            }
        }
    }

    private static void claimSome(Random r, List<TopicPartition> all, List<TopicPartition> owned) {
        if (all.isEmpty()) {
            return;
        }
        int n = 1 + r.nextInt(3);
        for (int i = 0; i < n; i++) {
            TopicPartition tp = all.get(r.nextInt(all.size()));
            if (!owned.contains(tp)) {
                owned.add(tp);
            }
        }
    }

    /** Topic name to partition count, in insertion order. */
    private static Map<String, Integer> randomTopics(Random r) {
        List<String> names = new ArrayList<>(List.of(TOPIC_NAMES));
        Collections.shuffle(names, r);
        int n = 1 + r.nextInt(6);
        Map<String, Integer> topics = new LinkedHashMap<>();
        for (int i = 0; i < n; i++) {
            topics.put(names.get(i), 1 + r.nextInt(12));
        }
        return topics;
    }

    private static List<Member> randomMembers(Random r, List<String> topics, Set<String> usedIds) {
        int n = 1 + r.nextInt(8);
        boolean statics = r.nextInt(3) == 0;
        int mode = r.nextInt(4); // 0, 1: everybody the same topics; 2: random subsets; 3: two camps
        List<String> common = mode == 0 ? topics : randomSubset(r, topics);
        List<String> other = randomSubset(r, topics);
        Set<String> ids = new TreeSet<>(usedIds);
        List<Member> members = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            String id;
            do {
                id = randomId(r);
            } while (!ids.add(id));
            String instance = statics && r.nextInt(3) != 0 ? "instance-" + r.nextInt(1000) : null;
            List<String> mt = switch (mode) {
                case 2 -> randomSubset(r, topics);
                case 3 -> r.nextBoolean() ? common : other;
                default -> common;
            };
            if (r.nextInt(15) == 0) {
                mt = new ArrayList<>(mt);
                mt.add("missing-topic"); // not in the metadata
            }
            String rack = r.nextInt(10) == 0 ? "rack-" + r.nextInt(3) : null;
            members.add(new Member(id, instance, mt, rack));
        }
        // Static instance ids must be unique in a group.
        Set<String> instances = new TreeSet<>();
        List<Member> out = new ArrayList<>();
        for (Member m : members) {
            boolean unique = m.instance() == null || instances.add(m.instance());
            out.add(unique ? m : new Member(m.id(), null, m.topics(), m.rack()));
        }
        return out;
    }

    private static List<String> randomSubset(Random r, List<String> topics) {
        List<String> out = new ArrayList<>();
        for (String t : topics) {
            if (r.nextBoolean()) {
                out.add(t);
            }
        }
        if (out.isEmpty()) {
            out.add(topics.get(r.nextInt(topics.size())));
        }
        return out;
    }

    private static String randomId(Random r) {
        String alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-";
        StringBuilder sb = new StringBuilder(r.nextBoolean() ? "consumer-" : "");
        int len = 1 + r.nextInt(10);
        for (int i = 0; i < len; i++) {
            sb.append(alphabet.charAt(r.nextInt(alphabet.length())));
        }
        return sb.toString();
    }

    private static byte[] serialize(Subscription subscription) {
        ByteBuffer b = ConsumerProtocol.serializeSubscription(subscription);
        byte[] out = new byte[b.remaining()];
        b.get(out);
        return out;
    }

    /** What a Java leader does with the JoinGroup response: read each subscription, keep the join order. */
    private static GroupAssignment run(ConsumerPartitionAssignor assignor, Map<String, Integer> topics,
                                       List<Member> members, List<byte[]> subs) {
        Map<String, Subscription> subscriptions = new HashMap<>();
        for (int i = 0; i < members.size(); i++) {
            Subscription s = ConsumerProtocol.deserializeSubscription(ByteBuffer.wrap(subs.get(i)));
            s.setGroupInstanceId(Optional.ofNullable(members.get(i).instance()));
            subscriptions.put(members.get(i).id(), s);
        }
        List<PartitionInfo> partitions = new ArrayList<>();
        topics.forEach((t, n) -> {
            for (int p = 0; p < n; p++) {
                partitions.add(new PartitionInfo(t, p, NODE, new Node[] {NODE}, new Node[] {NODE}));
            }
        });
        Cluster cluster = new Cluster("cluster", List.of(NODE), partitions, Collections.emptySet(),
            Collections.emptySet());
        try {
            return assignor.assign(cluster, new GroupSubscription(subscriptions));
        } catch (RuntimeException e) {
            lastFailure = e.getClass().getSimpleName();
            return null;
        }
    }

    private static String assignLine(String name, String assignorName, ConsumerPartitionAssignor assignor,
                                     Map<String, Integer> topics, List<Member> members, List<byte[]> subs) {
        return assignLine(name, assignorName, run(assignor, topics, members, subs), topics, members, subs);
    }

    private static String assignLine(String name, String assignorName, GroupAssignment result,
                                     Map<String, Integer> topics, List<Member> members, List<byte[]> subs) {
        ObjectNode input = JSON.objectNode();
        ObjectNode cluster = input.putObject("topics");
        topics.forEach(cluster::put);
        ArrayNode list = input.putArray("members");
        for (int i = 0; i < members.size(); i++) {
            ObjectNode m = list.addObject();
            m.put("id", members.get(i).id());
            m.put("instance", members.get(i).instance());
            m.put("subscription", Hex.of(subs.get(i)));
        }
        ObjectNode output = JSON.objectNode();
        if (result == null) {
            output.put("error", lastFailure);
        } else {
            ObjectNode assignments = output.putObject("assignments");
            for (Map.Entry<String, Assignment> e : new TreeMap<>(result.groupAssignment()).entrySet()) {
                ObjectNode byTopic = assignments.putObject(e.getKey());
                Map<String, List<Integer>> sorted = new TreeMap<>();
                for (TopicPartition tp : e.getValue().partitions()) {
                    sorted.computeIfAbsent(tp.topic(), k -> new ArrayList<>()).add(tp.partition());
                }
                sorted.forEach((t, ps) -> {
                    Collections.sort(ps);
                    ArrayNode a = byTopic.putArray(t);
                    ps.forEach(a::add);
                });
            }
        }
        return "assign\t" + name + "\t" + assignorName + "\t" + Json.write(input) + "\t" + Json.write(output);
    }

    private static String userDataLine(String name, String assignorName, List<TopicPartition> owned, int generation,
                                       ByteBuffer userData) {
        ObjectNode input = JSON.objectNode();
        if (owned == null) {
            input.putNull("partitions");
        } else {
            ArrayNode a = input.putArray("partitions");
            for (TopicPartition tp : owned) {
                a.addArray().add(tp.topic()).add(tp.partition());
            }
        }
        input.put("generation", generation);
        return "user_data\t" + name + "\t" + assignorName + "\t" + Json.write(input) + "\t"
            + (userData == null ? "null" : Hex.of(userData));
    }
}
