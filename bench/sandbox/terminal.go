package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"os/exec"
	"sync"
	"time"

	"github.com/frostdev/frost/api"
)

// typingFigures are the round trips of a line typed at `cat`: through an
// exec's streamed input on pipes and on a terminal (to its echo, and to
// cat's answer), and on the host through a pipe.
type typingFigures struct {
	pipe, echo, terminal, host []time.Duration
}

// lines collects output and wakes whoever waits for a count of a line.
type lines struct {
	mu   sync.Mutex
	b    bytes.Buffer
	wake chan struct{}
}

func newLines() *lines { return &lines{wake: make(chan struct{}, 1)} }

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.b.Write(p)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	return len(p), nil
}

// await waits until s has appeared n times in all.
func (l *lines) await(s string, n int) {
	deadline := time.After(10 * time.Second)
	for {
		l.mu.Lock()
		k := bytes.Count(l.b.Bytes(), []byte(s))
		l.mu.Unlock()
		if k >= n {
			return
		}
		select {
		case <-l.wake:
		case <-deadline:
			log.Fatalf("typing: %q never came back (%q)", s, l.b.String())
		}
	}
}

// session is `cat` running in the sandbox with its input streamed.
type session struct {
	in  *io.PipeWriter
	out *lines
}

func openSession(ctx context.Context, c *api.Client, id string, tty *api.TTY) session {
	pr, pw := io.Pipe()
	s := session{in: pw, out: newLines()}
	started := make(chan struct{})
	go func() {
		_, err := c.ExecStdio(ctx, id, api.ExecRequest{Cmd: []string{"cat"}, TTY: tty},
			api.Stdio{In: pr, Out: s.out, Started: func(int) { close(started) }})
		if err != nil && ctx.Err() == nil {
			log.Fatalf("typing: cat: %v", err)
		}
	}()
	<-started
	return s
}

// measureTyping types n lines at cat on pipes and on a terminal in the
// sandbox, alternating, and at cat on the host.
func measureTyping(ctx context.Context, c *api.Client, id string, n int) typingFigures {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pipe := openSession(ctx, c, id, nil)
	term := openSession(ctx, c, id, &api.TTY{Cols: 80, Rows: 24})
	host := exec.Command("cat")
	hostIn, _ := host.StdinPipe()
	hostOut := newLines()
	host.Stdout = hostOut
	if err := host.Start(); err != nil {
		log.Fatal(err)
	}
	defer func() { hostIn.Close(); host.Wait() }()
	var f typingFigures
	for i := 0; i < n; i++ {
		line := fmt.Sprintf("line %d", i)
		t0 := time.Now()
		io.WriteString(pipe.in, line+"\n")
		pipe.out.await(line+"\n", 1)
		f.pipe = append(f.pipe, time.Since(t0))

		t0 = time.Now()
		io.WriteString(term.in, line+"\n")
		term.out.await(line+"\r\n", 1) // the terminal's echo
		f.echo = append(f.echo, time.Since(t0))
		term.out.await(line+"\r\n", 2) // cat's answer
		f.terminal = append(f.terminal, time.Since(t0))

		t0 = time.Now()
		io.WriteString(hostIn, line+"\n")
		hostOut.await(line+"\n", 1)
		f.host = append(f.host, time.Since(t0))
	}
	pipe.in.Close()
	term.in.Write([]byte{4}) // ^D: end of file for cat on its terminal
	return f
}
