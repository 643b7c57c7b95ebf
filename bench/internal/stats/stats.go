// Package stats is the arithmetic the benchmark programs under bench/ report
// with: medians over rounds and percentiles of latencies.
package stats

import (
	"slices"
	"time"
)

// Median is the median of v (the mean of the middle two for an even count;
// 0 for none). v is not modified.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Percentile is the p-th percentile of d by nearest rank below: element
// (len-1)*p/100 of d sorted. d is not modified; it must not be empty.
func Percentile(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}
