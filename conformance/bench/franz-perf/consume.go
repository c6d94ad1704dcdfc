// The consume mode: `franz-perf consume ...` reads a topic with franz-go like Kafka's
// ConsumerPerformance (kafka-consumer-perf-test) reads it, for `compare consume`.
//
// Same flags (--bootstrap-server, --topic, --num-records/--messages, --group,
// --command-config/--consumer.config, --command-property, --timeout, --fetch-size,
// --from-latest), the same settings where franz-go has them (check.crcs=false unless given:
// ConsumerPerformance turns checksums off), the same count (records, and key + value bytes).
// Every partition of the topic is consumed directly (kgo.ConsumeTopics, no group) from its start
// (its end with --from-latest): franz-go reads and commits group offsets only as a group
// member, so --group is accepted and not used, and nothing is committed. The time runs from
// just before the client is created to the poll that brought the last wanted record.
// Output: `N records consumed, X records/sec (Y MB/sec) in S s`, then `cpu:` from getrusage.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

const consumeUsage = "usage: franz-perf consume --bootstrap-server HOST:PORT,... --topic TOPIC " +
	"--num-records N [--group G] [--command-config FILE] [--command-property K=V ...] " +
	"[--timeout MS] [--fetch-size BYTES] [--from-latest]"

type consumeArgs struct {
	topic      string
	numRecords int64
	timeout    time.Duration
	fromLatest bool
	props      map[string]string
}

func consumeDie(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "franz-perf consume: "+format+"\n%s\n", append(a, consumeUsage)...)
	os.Exit(2)
}

func parseConsumeArgs(argv []string) consumeArgs {
	a := consumeArgs{numRecords: -1, timeout: 10 * time.Second, props: map[string]string{}}
	var cliProps []string
	var configFile, bootstrap string
	fetchSize := "1048576"
	value := func(i int) string {
		if i+1 >= len(argv) {
			consumeDie("%s needs a value", argv[i])
		}
		return argv[i+1]
	}
	for i := 0; i < len(argv); i += 2 {
		var err error
		switch argv[i] {
		case "--topic":
			a.topic = value(i)
		case "--num-records", "--messages":
			a.numRecords, err = strconv.ParseInt(value(i), 10, 64)
		case "--group":
			_ = value(i) // accepted, not used (see the file's comment)
		case "--command-config", "--consumer.config":
			configFile = value(i)
		case "--bootstrap-server":
			bootstrap = value(i)
		case "--timeout":
			var ms int64
			ms, err = strconv.ParseInt(value(i), 10, 64)
			a.timeout = time.Duration(ms) * time.Millisecond
		case "--fetch-size":
			fetchSize = value(i)
		case "--from-latest":
			a.fromLatest = true
			i--
		case "--command-property":
			j := i + 1
			for ; j < len(argv) && !strings.HasPrefix(argv[j], "--"); j++ {
				cliProps = append(cliProps, argv[j])
			}
			if j == i+1 {
				consumeDie("%s needs K=V", argv[i])
			}
			i = j - 2
		case "-h", "--help":
			fmt.Println(consumeUsage)
			os.Exit(0)
		default:
			consumeDie("unknown argument '%s'", argv[i])
		}
		if err != nil {
			consumeDie("bad %s: %v", argv[i], err)
		}
	}
	// Precedence as in ConsumerPerformance: file < --command-property < the flags.
	if configFile != "" {
		readPropsFile(configFile, a.props)
	}
	for _, p := range cliProps {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" || strings.Contains(v, "=") {
			consumeDie("invalid property: %s", p)
		}
		a.props[k] = v
	}
	a.props["bootstrap.servers"] = bootstrap
	a.props["max.partition.fetch.bytes"] = fetchSize
	if _, ok := a.props["check.crcs"]; !ok {
		a.props["check.crcs"] = "false"
	}
	if _, ok := a.props["client.id"]; !ok {
		a.props["client.id"] = "perf-consumer-client"
	}
	switch {
	case a.topic == "":
		consumeDie("--topic is required")
	case a.numRecords <= 0:
		consumeDie("--num-records is required and must be greater than zero")
	case bootstrap == "":
		consumeDie("--bootstrap-server is required")
	}
	return a
}

// consumerOpts maps Java consumer properties to franz-go options.
func consumerOpts(props map[string]string) []kgo.Opt {
	var opts []kgo.Opt
	keys := make([]string, 0, len(props))
	for k := range props {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := props[k]
		num := func() int32 {
			n, err := strconv.ParseInt(v, 10, 32)
			if err != nil {
				consumeDie("property %s=%s: not a number", k, v)
			}
			return int32(n)
		}
		switch k {
		case "bootstrap.servers":
			opts = append(opts, kgo.SeedBrokers(strings.Split(v, ",")...))
		case "client.id":
			opts = append(opts, kgo.ClientID(v))
		case "fetch.min.bytes":
			opts = append(opts, kgo.FetchMinBytes(num()))
		case "fetch.max.bytes":
			opts = append(opts, kgo.FetchMaxBytes(num()))
		case "max.partition.fetch.bytes":
			opts = append(opts, kgo.FetchMaxPartitionBytes(num()))
		case "fetch.max.wait.ms":
			opts = append(opts, kgo.FetchMaxWait(time.Duration(num())*time.Millisecond))
		case "check.crcs":
			if v == "false" {
				opts = append(opts, kgo.DisableFetchCRCValidation())
			}
		case "isolation.level":
			switch v {
			case "read_committed":
				opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
			case "read_uncommitted":
				opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadUncommitted()))
			default:
				consumeDie("isolation.level=%s: want read_committed or read_uncommitted", v)
			}
		case "group.id", "auto.offset.reset", "enable.auto.commit":
			// no meaning without group membership (see the file's comment)
		default:
			consumeDie("property %s: no franz-go equivalent known to franz-perf", k)
		}
	}
	return opts
}

func consumeMain(argv []string) {
	a := parseConsumeArgs(argv)
	ctx := context.Background()
	offset := kgo.NewOffset().AtStart()
	if a.fromLatest {
		offset = kgo.NewOffset().AtEnd()
	}
	start := time.Now()
	// Without a group, ConsumeTopics consumes every partition of the topic directly.
	opts := append(consumerOpts(a.props), kgo.ConsumeTopics(a.topic), kgo.ConsumeResetOffset(offset))
	client, err := kgo.NewClient(opts...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "franz-perf: cannot create the client: %v\n", err)
		os.Exit(1)
	}
	var records, bytes int64
	last := time.Now()
	for records < a.numRecords {
		pollCtx, cancel := context.WithDeadline(ctx, last.Add(a.timeout))
		fetches := client.PollFetches(pollCtx)
		cancel()
		for _, e := range fetches.Errors() {
			if errors.Is(e.Err, context.DeadlineExceeded) {
				continue
			}
			fmt.Fprintf(os.Stderr, "franz-perf: fetch %s[%d]: %v\n", e.Topic, e.Partition, e.Err)
			os.Exit(1)
		}
		n := int64(0)
		fetches.EachRecord(func(r *kgo.Record) {
			n++
			bytes += int64(len(r.Key) + len(r.Value))
		})
		records += n
		if n > 0 {
			last = time.Now()
		} else if time.Since(last) > a.timeout {
			fmt.Fprintf(os.Stderr, "WARNING: Exiting before consuming the expected number of records: timeout (%d ms) exceeded.\n",
				a.timeout.Milliseconds())
			break
		}
	}
	elapsed := max(time.Since(start).Seconds(), 1e-3)
	client.Close()
	fmt.Printf("%d records consumed, %.1f records/sec (%.2f MB/sec) in %.3f s\n",
		records, float64(records)/elapsed, float64(bytes)/elapsed/(1024*1024), elapsed)
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	user := float64(ru.Utime.Sec) + float64(ru.Utime.Usec)/1e6
	sys := float64(ru.Stime.Sec) + float64(ru.Stime.Usec)/1e6
	fmt.Printf("cpu: %.2f s user, %.2f s system, %.2f s per million records\n",
		user, sys, (user+sys)*1e6/float64(max(records, 1)))
	if records < a.numRecords {
		os.Exit(1)
	}
}
