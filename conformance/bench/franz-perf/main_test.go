package main

import "testing"

// The first 64 payload bytes of Kafka's ProducerPerformance: new SplittableRandom(0),
// nextInt(26) + 65 per byte (printed by a three-line Java program on JDK 17).
func TestPayloadMatchesJava(t *testing.T) {
	r := splitMix64{}
	b := make([]byte, 64)
	for i := range b {
		b[i] = byte(r.nextIntBounded(26) + 65)
	}
	if want := "YQHHNEBSEPDNSEIFGAMSUJXKOLTXSPLGHDIOYZJFNIDSPWHZMKVJAXDBZFCOXYKY"; string(b) != want {
		t.Fatalf("got %s, want %s", b, want)
	}
}

// The payload generator's own cost, which every client of the benchmark pays per record.
func BenchmarkPayload1KB(b *testing.B) {
	r := splitMix64{}
	p := make([]byte, 1024)
	for i := 0; i < b.N; i++ {
		for j := range p {
			p[j] = byte(r.nextIntBounded(26) + 65)
		}
	}
}
