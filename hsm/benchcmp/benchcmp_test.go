package benchcmp

import "testing"

func TestMedian(t *testing.T) {
	for _, tt := range []struct {
		xs   []float64
		want float64
	}{
		{[]float64{0.9}, 0.9},
		{[]float64{0.9, 0.5}, 0.7},
		{[]float64{0.2, 0.9, 0.8}, 0.8},
		{[]float64{0.85, 0.1, 0.86, 0.87, 3}, 0.86}, // bursts at either end do not move it
	} {
		if got := median(tt.xs); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.xs, got, tt.want)
		}
	}
}
