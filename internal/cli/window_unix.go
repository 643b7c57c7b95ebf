//go:build unix

package cli

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/frostdev/frost/api"
)

// windowChanges says when the local terminal's window is resized (the
// kernel's SIGWINCH), until ctx ends.
func windowChanges(ctx context.Context, _ func() api.TTY) <-chan os.Signal {
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	context.AfterFunc(ctx, func() { signal.Stop(winch) })
	return winch
}
