//go:build !unix

package cli

import (
	"context"
	"os"
	"time"

	"github.com/frostdev/frost/api"
)

// windowChanges says when the local terminal's window is resized, until
// ctx ends. With no SIGWINCH here (Windows' consoles have none), it looks
// at the size four times a second.
func windowChanges(ctx context.Context, size func() api.TTY) <-chan os.Signal {
	changed := make(chan os.Signal, 1)
	go func() {
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		last := size()
		for {
			select {
			case <-tick.C:
			case <-ctx.Done():
				return
			}
			if now := size(); now != last {
				last = now
				select {
				case changed <- os.Interrupt: // a token: only its arrival counts
				default:
				}
			}
		}
	}()
	return changed
}
