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

// The pool continues the generator's stream from one record to the next and wraps.
func TestPayloadsContinueTheStreamAndWrap(t *testing.T) {
	p := newPayloads(1000)
	r := splitMix64{}
	stream := make([]byte, 2000)
	for i := range stream {
		stream[i] = byte(r.nextIntBounded(26) + 65)
	}
	if string(p.get(1)) != string(stream[1000:]) {
		t.Fatalf("record 1 is not the stream's second thousand bytes")
	}
	if string(p.get(p.perPool)) != string(p.get(0)) {
		t.Fatalf("the pool does not wrap")
	}
}

// The cost of drawing a 1 KB payload per record, which the pool saves.
func BenchmarkPayload1KB(b *testing.B) {
	r := splitMix64{}
	p := make([]byte, 1024)
	for i := 0; i < b.N; i++ {
		for j := range p {
			p[j] = byte(r.nextIntBounded(26) + 65)
		}
	}
}
