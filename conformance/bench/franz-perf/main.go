// franz-perf: franz-go's producer driven like Kafka's ProducerPerformance
// (kafka-producer-perf-test), for conformance/bench/compare.
//
// Same command line (--topic, --num-records, --record-size, --throughput, --producer-props,
// --producer.config, --bootstrap-server), same payloads (A-Z bytes from a SplitMix64 generator
// seeded with 0, the algorithm of java.util.SplittableRandom, so the bytes equal the Java
// tool's; drawn once into an 8 MiB pool that record i takes the i-th slice of, as
// `sansa perf produce` does, so that no client's CPU carries a draw per byte), same latency (from the Produce call to the promise, whole
// milliseconds, sampled into at most 500,000 slots), same final line, then a `cpu:` line
// from getrusage.
//
// franz-go takes options, not properties: the Java property names below are mapped to them,
// any other name is an error. With acks other than all, idempotent writes are turned off
// (franz-go refuses the combination; KafkaProducer turns them off implicitly the same way).
package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

const usage = "usage: franz-perf --topic TOPIC --num-records N --record-size BYTES " +
	"--throughput RECORDS_PER_SEC|-1 [--producer-props K=V ...] [--producer.config FILE] " +
	"[--bootstrap-server HOST:PORT,...]"

func die(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "franz-perf: "+format+"\n%s\n", append(a, usage)...)
	os.Exit(2)
}

type args struct {
	topic      string
	numRecords int64
	recordSize int
	throughput float64
	props      map[string]string
}

// readPropsFile reads k=v lines of a Java properties file (comments and blank lines skipped).
func readPropsFile(path string, into map[string]string) {
	f, err := os.Open(path)
	if err != nil {
		die("%v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '!' {
			continue
		}
		i := strings.IndexAny(line, "=:")
		if i < 0 {
			die("%s: not a key=value line: %s", path, line)
		}
		into[strings.TrimSpace(line[:i])] = strings.TrimSpace(line[i+1:])
	}
}

func parseArgs() args {
	argv := os.Args[1:]
	a := args{numRecords: -1, recordSize: -1, props: map[string]string{}}
	var cliProps []string
	var configFile, bootstrap string
	haveTput := false
	value := func(i int) string {
		if i+1 >= len(argv) {
			die("%s needs a value", argv[i])
		}
		return argv[i+1]
	}
	for i := 0; i < len(argv); i += 2 {
		var err error
		switch argv[i] {
		case "--topic":
			a.topic = value(i)
		case "--num-records":
			a.numRecords, err = strconv.ParseInt(value(i), 10, 64)
		case "--record-size":
			a.recordSize, err = strconv.Atoi(value(i))
		case "--throughput":
			a.throughput, err = strconv.ParseFloat(value(i), 64)
			haveTput = true
		case "--producer.config", "--command-config":
			configFile = value(i)
		case "--bootstrap-server":
			bootstrap = value(i)
		case "--producer-props", "--command-property":
			// one or more K=V words, up to the next --flag
			j := i + 1
			for ; j < len(argv) && !strings.HasPrefix(argv[j], "--"); j++ {
				cliProps = append(cliProps, argv[j])
			}
			if j == i+1 {
				die("%s needs K=V", argv[i])
			}
			i = j - 2
		case "-h", "--help":
			fmt.Println(usage)
			os.Exit(0)
		default:
			die("unknown argument '%s'", argv[i])
		}
		if err != nil {
			die("bad %s: %v", argv[i], err)
		}
	}
	// Precedence as in ProducerPerformance: config file < --producer-props < --bootstrap-server.
	if configFile != "" {
		readPropsFile(configFile, a.props)
	}
	for _, p := range cliProps {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" || strings.Contains(v, "=") {
			die("invalid property: %s", p)
		}
		a.props[k] = v
	}
	if bootstrap != "" {
		a.props["bootstrap.servers"] = bootstrap
	}
	if _, ok := a.props["client.id"]; !ok {
		a.props["client.id"] = "perf-producer-client"
	}
	switch {
	case a.topic == "":
		die("--topic is required")
	case a.numRecords <= 0:
		die("--num-records is required and must be greater than zero")
	case a.recordSize <= 0:
		die("--record-size is required and must be greater than zero")
	case !haveTput:
		die("--throughput is required")
	case a.props["bootstrap.servers"] == "":
		die("no bootstrap.servers (give --bootstrap-server or --producer-props bootstrap.servers=...)")
	}
	return a
}

// clientOpts maps Java producer properties to franz-go options.
func clientOpts(props map[string]string) []kgo.Opt {
	var opts []kgo.Opt
	idempotence := ""
	acksAll := true
	keys := make([]string, 0, len(props))
	for k := range props {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := props[k]
		num := func() int {
			n, err := strconv.Atoi(v)
			if err != nil {
				die("property %s=%s: not a number", k, v)
			}
			return n
		}
		switch k {
		case "bootstrap.servers":
			opts = append(opts, kgo.SeedBrokers(strings.Split(v, ",")...))
		case "client.id":
			opts = append(opts, kgo.ClientID(v))
		case "acks":
			switch v {
			case "all", "-1":
				opts = append(opts, kgo.RequiredAcks(kgo.AllISRAcks()))
			case "1":
				opts = append(opts, kgo.RequiredAcks(kgo.LeaderAck()))
				acksAll = false
			case "0":
				opts = append(opts, kgo.RequiredAcks(kgo.NoAck()))
				acksAll = false
			default:
				die("acks=%s: want all, -1, 1 or 0", v)
			}
		case "linger.ms":
			opts = append(opts, kgo.ProducerLinger(time.Duration(num())*time.Millisecond))
		case "compression.type":
			var c kgo.CompressionCodec
			switch v {
			case "none":
				c = kgo.NoCompression()
			case "gzip":
				c = kgo.GzipCompression()
			case "snappy":
				c = kgo.SnappyCompression()
			case "lz4":
				c = kgo.Lz4Compression()
			case "zstd":
				c = kgo.ZstdCompression()
			default:
				die("compression.type=%s: want none, gzip, snappy, lz4 or zstd", v)
			}
			opts = append(opts, kgo.ProducerBatchCompression(c))
		case "enable.idempotence":
			idempotence = v
		case "batch.size":
			opts = append(opts, kgo.ProducerBatchMaxBytes(int32(num())))
		case "max.in.flight.requests.per.connection":
			opts = append(opts, kgo.MaxProduceRequestsInflightPerBroker(num()))
		case "buffer.memory":
			opts = append(opts, kgo.MaxBufferedBytes(num()))
		default:
			die("property %s: no franz-go equivalent known to franz-perf", k)
		}
	}
	switch {
	case idempotence == "false":
		opts = append(opts, kgo.DisableIdempotentWrite())
	case idempotence == "true" && !acksAll:
		die("enable.idempotence=true needs acks=all")
	case idempotence == "" && !acksAll:
		opts = append(opts, kgo.DisableIdempotentWrite())
	}
	return opts
}

// splitMix64 is java.util.SplittableRandom: nextInt(bound) as the JDK computes it.
type splitMix64 struct{ seed uint64 }

func (r *splitMix64) nextInt() int32 {
	r.seed += 0x9e3779b97f4a7c15
	z := r.seed
	z = (z ^ (z >> 33)) * 0x62a9d9ed799705f5
	return int32(((z ^ (z >> 28)) * 0xcb24d0a5c88c35b3) >> 32)
}

func (r *splitMix64) nextIntBounded(bound int32) int32 {
	m := bound - 1
	x := r.nextInt()
	if bound&m == 0 {
		return x & m
	}
	for u := int32(uint32(x) >> 1); ; u = int32(uint32(r.nextInt()) >> 1) {
		x = u % bound
		if u+m-x >= 0 { // int32 overflow wraps, as in Java
			return x
		}
	}
}

// stats are ProducerPerformance's: totals, a 5 s progress window, sampled latencies.
type stats struct {
	mu                                     sync.Mutex
	start, windowStart                     time.Time
	latencies                              []int32
	sampling, iteration                    int64
	count, bytes, totalLatency             int64
	maxLatency                             int32
	windowCount, windowBytes, windowTotLat int64
	windowMaxLatency                       int32
	errors                                 int64
}

const reportingInterval = 5 * time.Second

func newStats(numRecords int64, now time.Time) *stats {
	sampling := numRecords / min(numRecords, 500000)
	return &stats{start: now, windowStart: now, sampling: sampling,
		latencies: make([]int32, 0, numRecords/sampling+1)}
}

func (s *stats) record(latency int32, bytes int64, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count++
	s.bytes += bytes
	s.totalLatency += int64(latency)
	s.maxLatency = max(s.maxLatency, latency)
	s.windowCount++
	s.windowBytes += bytes
	s.windowTotLat += int64(latency)
	s.windowMaxLatency = max(s.windowMaxLatency, latency)
	if s.iteration%s.sampling == 0 {
		s.latencies = append(s.latencies, latency)
	}
	s.iteration++
	if now.Sub(s.windowStart) >= reportingInterval {
		ms := float64(max(now.Sub(s.windowStart).Milliseconds(), 1))
		fmt.Printf("%d records sent, %.1f records/sec (%.2f MB/sec), %.1f ms avg latency, %.1f ms max latency.\n",
			s.windowCount, 1000*float64(s.windowCount)/ms, 1000*float64(s.windowBytes)/ms/(1024*1024),
			float64(s.windowTotLat)/float64(s.windowCount), float64(s.windowMaxLatency))
		s.windowStart = now
		s.windowCount, s.windowBytes, s.windowTotLat, s.windowMaxLatency = 0, 0, 0, 0
	}
}

func (s *stats) printTotal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	ms := float64(max(time.Since(s.start).Milliseconds(), 1))
	sort.Slice(s.latencies, func(i, j int) bool { return s.latencies[i] < s.latencies[j] })
	n := len(s.latencies)
	pct := func(p float64) int32 {
		if n == 0 {
			return 0
		}
		return s.latencies[min(int(p*float64(n)), n-1)]
	}
	fmt.Printf("%d records sent, %f records/sec (%.2f MB/sec), %.2f ms avg latency, %.2f ms max latency, "+
		"%d ms 50th, %d ms 95th, %d ms 99th, %d ms 99.9th.\n",
		s.count, 1000*float64(s.count)/ms, 1000*float64(s.bytes)/ms/(1024*1024),
		float64(s.totalLatency)/float64(max(s.count, 1)), float64(s.maxLatency),
		pct(0.5), pct(0.95), pct(0.99), pct(0.999))
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "consume" {
		consumeMain(os.Args[2:])
		return
	}
	a := parseArgs()
	client, err := kgo.NewClient(clientOpts(a.props)...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "franz-perf: cannot create the client: %v\n", err)
		os.Exit(1)
	}
	epoch := time.Now()
	st := newStats(a.numRecords, epoch)
	payloads := newPayloads(a.recordSize)
	ctx := context.Background()
	recordSize := int64(a.recordSize)
	start := time.Now()
	st.start, st.windowStart = start, start
	for i := int64(0); i < a.numRecords; i++ {
		// franz-go only reads the value, so records may share the pool.
		payload := payloads.get(i)
		sendStart := time.Since(epoch).Milliseconds()
		client.Produce(ctx, &kgo.Record{Topic: a.topic, Value: payload}, func(_ *kgo.Record, err error) {
			if err != nil {
				st.mu.Lock()
				if st.errors < 10 {
					fmt.Fprintf(os.Stderr, "franz-perf: delivery failed: %v\n", err)
				}
				st.errors++
				st.mu.Unlock()
				return
			}
			now := time.Now()
			st.record(int32(now.Sub(epoch).Milliseconds()-sendStart), recordSize, now)
		})
		if a.throughput > 0 {
			// at most `throughput` records per second on average since the start
			due := start.Add(time.Duration(float64(i+1) / a.throughput * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
		}
	}
	// Like KafkaProducer.close(): wait for every promise, then shut the client down.
	if err := client.Flush(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "franz-perf: flush: %v\n", err)
	}
	client.Close()
	st.printTotal()
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	user := float64(ru.Utime.Sec) + float64(ru.Utime.Usec)/1e6
	sys := float64(ru.Stime.Sec) + float64(ru.Stime.Usec)/1e6
	fmt.Printf("cpu: %.2f s user, %.2f s system, %.2f s per million records\n",
		user, sys, (user+sys)*1e6/float64(a.numRecords))
	if st.errors > 0 {
		fmt.Fprintf(os.Stderr, "franz-perf: %d records failed\n", st.errors)
		os.Exit(1)
	}
}

// Bytes drawn into the pool once; the same size as `sansa perf produce`'s.
const payloadPool = 8 << 20

// ProducerPerformance's payload stream drawn once: record i gets the i-th slice of the pool,
// wrapping when it runs out (no batch is large enough to hold a repeat).
type payloads struct {
	pool    []byte
	perPool int64
	size    int64
}

func newPayloads(size int) payloads {
	perPool := payloadPool / max(size, 1)
	if perPool < 1 {
		perPool = 1
	}
	pool := make([]byte, perPool*size)
	random := splitMix64{}
	for j := range pool {
		pool[j] = byte(random.nextIntBounded(26) + 65)
	}
	return payloads{pool: pool, perPool: int64(perPool), size: int64(size)}
}

func (p payloads) get(record int64) []byte {
	start := (record % p.perPool) * p.size
	return p.pool[start : start+p.size : start+p.size]
}
