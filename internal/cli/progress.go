package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// progressMin is the smallest upload that reports its progress.
const progressMin = 1 << 20

// progress returns an upload progress callback that writes to w: a bar
// redrawn in place on a terminal, at most ten times a second; plain lines
// at every quarter otherwise (a log, a pipe). Uploads under progressMin
// say nothing.
func progress(w io.Writer, what string) func(done, total int64) {
	tty := isTerminal(w)
	var last time.Time
	lastQuarter := -1
	start := time.Now()
	return func(done, total int64) {
		if total < progressMin {
			return
		}
		finished := done >= total
		if !tty {
			if q := int(4 * done / total); q > lastQuarter {
				lastQuarter = q
				fmt.Fprintf(w, "%s: %d%% (%s of %s)\n", what, 25*q, mib(done), mib(total))
			}
			return
		}
		if !finished && time.Since(last) < 100*time.Millisecond {
			return
		}
		last = time.Now()
		const width = 30
		fill := int(width * done / total)
		rate := float64(done) / (1 << 20) / max(time.Since(start).Seconds(), 1e-3)
		fmt.Fprintf(w, "\r%s [%s%s] %3d%% %s/%s %.0f MiB/s", what,
			strings.Repeat("=", fill), strings.Repeat(" ", width-fill), 100*done/total, mib(done), mib(total), rate)
		if finished {
			fmt.Fprintln(w)
		}
	}
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// isTerminal says whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
