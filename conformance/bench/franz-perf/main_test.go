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
