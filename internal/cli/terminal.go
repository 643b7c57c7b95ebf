package cli

import (
	"context"
	"fmt"
	"os"

	"golang.org/x/term"

	"github.com/frostdev/frost/api"
)

// terminalFile returns v as a file if it is a terminal.
func terminalFile(v any) (*os.File, bool) {
	f, ok := v.(*os.File)
	return f, ok && term.IsTerminal(int(f.Fd()))
}

// terminalSize is the size of the terminal frost writes to: 80x24 when
// stdout is not one.
func (r *runner) terminalSize() api.TTY {
	if f, ok := terminalFile(r.stdout); ok {
		if cols, rows, err := term.GetSize(int(f.Fd())); err == nil && cols > 0 && rows > 0 {
			return api.TTY{Cols: cols, Rows: rows}
		}
	}
	return api.TTY{Cols: 80, Rows: 24}
}

// localTerminal is this side of `frost sandbox exec --tty`: the streams
// of a command on a terminal in sandbox id. A local terminal on stdin is
// put in raw mode, so that every key goes to the command; a resize of the
// one on stdout resizes the command's. done restores both.
func (r *runner) localTerminal(ctx context.Context, cl *api.Client, id string, noStdin bool) (stdio api.Stdio, done func(), err error) {
	stdio = api.Stdio{Out: r.stdout, Err: r.stderr}
	var undo []func()
	done = func() {
		for _, f := range undo {
			f()
		}
	}
	if !noStdin {
		stdio.In = r.input()
		if f, ok := terminalFile(stdio.In); ok {
			state, err := term.MakeRaw(int(f.Fd()))
			if err != nil {
				return stdio, nil, fmt.Errorf("put this terminal in raw mode: %w", err)
			}
			undo = append(undo, func() { term.Restore(int(f.Fd()), state) })
		}
	}
	if _, ok := terminalFile(r.stdout); !ok {
		return stdio, done, nil
	}
	started := make(chan int, 1)
	stdio.Started = func(pid int) { started <- pid }
	ctx, cancel := context.WithCancel(ctx)
	winch := windowChanges(ctx, r.terminalSize)
	undo = append(undo, cancel)
	go func() {
		var pid int
		select {
		case pid = <-started:
		case <-ctx.Done():
			return
		}
		for {
			select {
			case <-winch:
				cl.Resize(ctx, id, pid, r.terminalSize()) // best effort, as a window's resize is
			case <-ctx.Done():
				return
			}
		}
	}()
	return stdio, done, nil
}
