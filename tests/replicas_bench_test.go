package tests

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// BenchmarkDisableVisibility measures how long a DisableKey acknowledged
// by one replica takes to be refused by another: each iteration disables
// the key on replica 0 and asks replica 1 for a data key every 2 ms until
// it is refused, then enables the key again the same way. It reports the
// p50 and p99 of the time from the acknowledgement to the first refusal
// (the bound: 1 s).
func BenchmarkDisableVisibility(b *testing.B) {
	c := newCluster(b, 2)
	ctx := ctxT(b)
	k0, k1 := c.replicas[0].kms(c.root), c.replicas[1].kms(c.root)
	out, err := k0.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		b.Fatal(err)
	}
	id := out.KeyMetadata.KeyId
	gdk := &kms.GenerateDataKeyInput{KeyId: id, NumberOfBytes: aws.Int32(32)}
	var seen []time.Duration
	b.ResetTimer()
	for b.Loop() {
		if _, err := k0.DisableKey(ctx, &kms.DisableKeyInput{KeyId: id}); err != nil {
			b.Fatal(err)
		}
		acked := time.Now()
		for {
			_, err := k1.GenerateDataKey(ctx, gdk)
			var disabled *types.DisabledException
			if errors.As(err, &disabled) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			time.Sleep(2 * time.Millisecond)
		}
		seen = append(seen, time.Since(acked))
		if _, err := k0.EnableKey(ctx, &kms.EnableKeyInput{KeyId: id}); err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := k1.GenerateDataKey(ctx, gdk); err == nil {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	slices.Sort(seen)
	at := func(p int) float64 { return float64(seen[min(len(seen)*p/100, len(seen)-1)].Microseconds()) / 1000 }
	b.ReportMetric(at(50), "p50-ms")
	b.ReportMetric(at(99), "p99-ms")
	b.ReportMetric(float64(seen[len(seen)-1].Microseconds())/1000, "max-ms")
}
