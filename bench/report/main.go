// Command report turns raw benchmark output into the Markdown tables of
// BENCHMARKS.md: medians over rounds, and ratios against the baseline
// measured in the same run.
//
//	report ROUNDS.txt           wrk rounds: "name rps p50 p99 non2xx" lines
//	report -gobench BENCH.txt   `go test -bench` output
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/frostdev/frost/bench/internal/stats"
)

func main() {
	gobench := flag.Bool("gobench", false, "input is go test -bench output")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: report [-gobench] FILE")
		os.Exit(2)
	}
	f, err := os.Open(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer f.Close()
	if *gobench {
		goBench(bufio.NewScanner(f))
	} else {
		wrkRounds(bufio.NewScanner(f))
	}
}

// wrkDur parses wrk's latency strings ("25.10us", "1.20ms", "2.00s").
func wrkDur(s string) float64 {
	s = strings.Replace(s, "us", "µs", 1)
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0
	}
	return float64(d) / float64(time.Microsecond)
}

func wrkRounds(sc *bufio.Scanner) {
	rps, p50, p99 := map[string][]float64{}, map[string][]float64{}, map[string][]float64{}
	bad := map[string]float64{}
	var names []string
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 4 {
			continue
		}
		n := fs[0]
		if _, ok := rps[n]; !ok {
			names = append(names, n)
		}
		v, _ := strconv.ParseFloat(fs[1], 64)
		rps[n] = append(rps[n], v)
		p50[n] = append(p50[n], wrkDur(fs[2]))
		p99[n] = append(p99[n], wrkDur(fs[3]))
		if len(fs) > 4 {
			b, _ := strconv.ParseFloat(fs[4], 64)
			bad[n] += b
		}
	}
	if len(names) < 2 {
		fmt.Println("not enough rounds")
		return
	}
	base := names[0]
	fmt.Printf("| server | rounds | req/s (median) | × %s | p50 µs | p99 µs | p50 added µs | non-2xx |\n", base)
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for _, n := range names {
		fmt.Printf("| %s | %d | %.0f | %.3f | %.1f | %.1f | %+.1f | %.0f |\n", n, len(rps[n]), stats.Median(rps[n]),
			stats.Median(rps[n])/stats.Median(rps[base]), stats.Median(p50[n]), stats.Median(p99[n]), stats.Median(p50[n])-stats.Median(p50[base]), bad[n])
	}
	fmt.Println()
	fmt.Printf("Per-round req/s: ")
	for _, n := range names {
		fmt.Printf("%s %v; ", n, rps[n])
	}
	fmt.Println()
}

func goBench(sc *bufio.Scanner) {
	type row struct{ ns, allocs, bytes []float64 }
	rows := map[string]*row{}
	var names []string
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 4 || !strings.HasPrefix(fs[0], "Benchmark") {
			continue
		}
		name := fs[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			name = name[:i]
		}
		r := rows[name]
		if r == nil {
			r = &row{}
			rows[name] = r
			names = append(names, name)
		}
		for i := 2; i+1 < len(fs); i += 2 {
			v, err := strconv.ParseFloat(fs[i], 64)
			if err != nil {
				continue
			}
			switch fs[i+1] {
			case "ns/op":
				r.ns = append(r.ns, v)
			case "allocs/op":
				r.allocs = append(r.allocs, v)
			case "B/op":
				r.bytes = append(r.bytes, v)
			}
		}
	}
	fmt.Println("| benchmark | runs | µs/op (median) | allocs/op | B/op |")
	fmt.Println("|---|---|---|---|---|")
	for _, n := range names {
		r := rows[n]
		fmt.Printf("| %s | %d | %.2f | %.0f | %.0f |\n", strings.TrimPrefix(n, "Benchmark"), len(r.ns), stats.Median(r.ns)/1000, stats.Median(r.allocs), stats.Median(r.bytes))
	}
	// Ratios: a benchmark named X/limit=on against X/limit=off, etc.
	fmt.Println()
	for _, n := range names {
		for _, pair := range [][2]string{{"/interrupt", "/none"}, {"/ctxdone", "/none"}, {"/frost", "/vanilla"}} {
			if base, ok := strings.CutSuffix(n, pair[0]); ok {
				if b := rows[base+pair[1]]; b != nil {
					fmt.Printf("- %s%s vs %s%s: **%.2f×** time\n", strings.TrimPrefix(base, "Benchmark"), pair[0], strings.TrimPrefix(base, "Benchmark"), pair[1],
						stats.Median(rows[n].ns)/stats.Median(b.ns))
				}
			}
		}
	}
}
