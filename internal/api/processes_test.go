package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	wire "github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/sandbox/sandboxtest"
)

// TestProcessRoutes: an exec's first event is its pid; a pause ends the
// exec's stream but not the command, which is then listed (with its tag),
// fed, followed to its end and signalled through the process routes, and
// bad requests get clear errors.
func TestProcessRoutes(t *testing.T) {
	fake, e, cl, sb := blockedSandbox(t)
	ctx := context.Background()

	// Two commands, started over the raw route to see their first event.
	var pids []int
	var streams []*bufio.Reader
	for _, tag := range []string{"web", "worker"} {
		req, _ := http.NewRequest("POST", e.url+"/v1/sandboxes/"+sb.ID+"/exec", strings.NewReader(`{"cmd":["serve","`+tag+`"],"tag":"`+tag+`","stdin":true}`+"\n"))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		r := bufio.NewReader(resp.Body)
		var first wire.ExecEvent
		if line, err := r.ReadBytes('\n'); err != nil || json.Unmarshal(line, &first) != nil || first.Pid == 0 {
			t.Fatalf("first exec event %q %v, want the pid", line, err)
		}
		pids = append(pids, first.Pid)
		streams = append(streams, r)
	}
	fake.Live[sb.ID].WaitBlocked(2)
	if _, err := cl.PauseSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	for i, r := range streams {
		line, _ := r.ReadBytes('\n')
		var last wire.ExecEvent
		if json.Unmarshal(line, &last) != nil || last.Error == nil || last.Exit != nil {
			t.Fatalf("exec %d after the pause: %q, want an error event", i, line)
		}
	}

	list, err := cl.Processes(ctx, sb.ID) // resumes the sandbox
	if err != nil || len(list) != 2 {
		t.Fatalf("processes after the pause: %+v %v", list, err)
	}
	for i, p := range list {
		if p.Pid != pids[i] || p.Tag != []string{"web", "worker"}[i] || p.Cmd[0] != "serve" || !p.Stdin {
			t.Fatalf("listed %+v", p)
		}
	}
	web, worker := pids[0], pids[1]
	box := fake.Live[sb.ID]
	box.Block = make(chan struct{})
	if err := cl.Input(ctx, sb.ID, web, strings.NewReader("hello"), false); err != nil {
		t.Fatal(err)
	}
	if err := cl.Input(ctx, sb.ID, web, nil, true); err != nil {
		t.Fatal(err)
	}
	var se *wire.StatusError
	if err := cl.Input(ctx, sb.ID, web, strings.NewReader("more"), false); !errors.As(err, &se) || se.Status != http.StatusConflict {
		t.Fatalf("input after closing it: %v, want 409", err)
	}
	attached := make(chan error, 1)
	var out bytes.Buffer
	go func() {
		code, err := cl.Attach(ctx, sb.ID, web, &out, nil)
		if err == nil && code != 0 {
			err = fmt.Errorf("exit %d", code)
		}
		attached <- err
	}()
	box.WaitBlocked(1)
	close(box.Block)
	if err := <-attached; err != nil || out.String() != "ran serve web" {
		t.Fatalf("attach: %q %v", out.String(), err)
	}
	if err := cl.Signal(ctx, sb.ID, worker, "SIGKILL"); err != nil {
		t.Fatal(err)
	}
	if list, err := cl.Processes(ctx, sb.ID); err != nil || len(list) != 0 {
		t.Fatalf("processes after both ended: %+v %v", list, err)
	}
	for what, err := range map[string]error{
		"signal": cl.Signal(ctx, sb.ID, worker, "TERM"),
		"attach": func() error { _, err := cl.Attach(ctx, sb.ID, worker, nil, nil); return err }(),
		"input":  cl.Input(ctx, sb.ID, worker, strings.NewReader("x"), false),
	} {
		if !errors.As(err, &se) || se.Status != http.StatusNotFound || !strings.Contains(err.Error(), "no running command") {
			t.Errorf("%s of an ended command: %v, want 404", what, err)
		}
	}
	if err := cl.Signal(ctx, sb.ID, worker, "SIGBOGUS"); !errors.As(err, &se) || se.Status != http.StatusBadRequest {
		t.Errorf("an unknown signal: %v, want 400", err)
	}
	// A background exec answers with the pid and leaves the command in
	// the table; it takes no timeout.
	box.Block = make(chan struct{})
	bg, err := cl.ExecBackground(ctx, sb.ID, wire.ExecRequest{Cmd: []string{"serve"}, Tag: "bg", Stdin: true})
	if err != nil || bg == 0 {
		t.Fatalf("background exec: %d %v", bg, err)
	}
	if list, err := cl.Processes(ctx, sb.ID); err != nil || len(list) != 1 || list[0].Pid != bg || list[0].Tag != "bg" || !list[0].Stdin {
		t.Fatalf("processes after a background exec: %+v %v", list, err)
	}
	if _, err := cl.ExecBackground(ctx, sb.ID, wire.ExecRequest{Cmd: []string{"serve"}, Timeout: wire.Duration(time.Second)}); !errors.As(err, &se) || se.Status != http.StatusBadRequest {
		t.Errorf("a background exec with a timeout: %v, want 400", err)
	}
	// One that cannot start says why.
	if _, err := cl.ExecBackground(ctx, sb.ID, wire.ExecRequest{Cmd: []string{"missing-server"}}); !errors.As(err, &se) || se.Status != http.StatusBadRequest ||
		!strings.Contains(err.Error(), "did not start (exit 127): missing-server: command not found") {
		t.Errorf("a background exec of a command not found: %v, want 400 saying so", err)
	}
	for _, path := range []string{"/processes/abc/signal", "/processes/0/stdin", "/processes/-3/stdin?close=maybe"} {
		resp, body := e.do(t, "POST", "/v1/sandboxes/"+sb.ID+path, "Bearer "+token, strings.NewReader(`{}`))
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("POST %s: %d %s, want 400", path, resp.StatusCode, body)
		}
	}
}

// TestTerminalRoutes: an exec with "tty" runs on a terminal of that size
// (ExecStdio reports its pid); resize changes it (204), a bad size is a
// 400, a command on pipes a 409, as is closing a terminal's input.
func TestTerminalRoutes(t *testing.T) {
	fake, _, cl, sb := blockedSandbox(t)
	ctx := context.Background()
	box := fake.Live[sb.ID]
	started := make(chan int, 1)
	done := make(chan error, 1)
	var out bytes.Buffer
	go func() {
		_, err := cl.ExecStdio(ctx, sb.ID, wire.ExecRequest{Cmd: []string{"bash"}, TTY: &wire.TTY{Cols: 80, Rows: 24}},
			wire.Stdio{In: strings.NewReader("ls\r"), Out: &out, Started: func(pid int) { started <- pid }})
		done <- err
	}()
	pid := <-started
	list, err := cl.Processes(ctx, sb.ID)
	if err != nil || len(list) != 1 || list[0].Pid != pid || list[0].TTY == nil || *list[0].TTY != (wire.TTY{Cols: 80, Rows: 24}) {
		t.Fatalf("processes: %+v %v", list, err)
	}
	if err := cl.Resize(ctx, sb.ID, pid, wire.TTY{Cols: 132, Rows: 50}); err != nil {
		t.Fatal(err)
	}
	if list, _ := cl.Processes(ctx, sb.ID); *list[0].TTY != (wire.TTY{Cols: 132, Rows: 50}) {
		t.Fatalf("after the resize: %+v", list[0].TTY)
	}
	var se *wire.StatusError
	if err := cl.Resize(ctx, sb.ID, pid, wire.TTY{Cols: 0, Rows: 50}); !errors.As(err, &se) || se.Status != http.StatusBadRequest {
		t.Errorf("a resize to no columns: %v, want 400", err)
	}
	if err := cl.Input(ctx, sb.ID, pid, nil, true); !errors.As(err, &se) || se.Status != http.StatusConflict || !strings.Contains(err.Error(), "terminal") {
		t.Errorf("closing a terminal's input: %v, want 409", err)
	}
	if _, err := cl.Exec(ctx, sb.ID, wire.ExecRequest{Cmd: []string{"bash"}, TTY: &wire.TTY{Cols: 80, Rows: 70000}}, nil, nil, nil); !errors.As(err, &se) || se.Status != http.StatusBadRequest {
		t.Errorf("an exec on a terminal of 70000 rows: %v, want 400", err)
	}
	close(box.Block)
	if err := <-done; err != nil || out.String() != "ran bash env= cwd=/root" {
		t.Fatalf("exec on a terminal: %q %v", out.String(), err)
	}
	box.Block = make(chan struct{})
	defer close(box.Block)
	bg, err := cl.ExecBackground(ctx, sb.ID, wire.ExecRequest{Cmd: []string{"serve"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Resize(ctx, sb.ID, bg, wire.TTY{Cols: 100, Rows: 30}); !errors.As(err, &se) || se.Status != http.StatusConflict {
		t.Errorf("resizing a command on pipes: %v, want 409", err)
	}
	if err := cl.Resize(ctx, sb.ID, 4242, wire.TTY{Cols: 100, Rows: 30}); !errors.As(err, &se) || se.Status != http.StatusNotFound {
		t.Errorf("resizing no command: %v, want 404", err)
	}
}

// blockedSandbox serves the API over a fake sandbox runtime whose
// commands block until their box's Block is closed, and creates a
// sandbox through it.
func blockedSandbox(t *testing.T) (*sandboxtest.Runtime, *env, *wire.Client, wire.Sandbox) {
	t.Helper()
	fake := sandboxtest.New()
	fm := sandboxtest.NewManager(t, fake)
	e := newEnvOver(t, token, fm.Reg, fm.Manager).serve(t)
	cl := wire.NewClient(e.url, token)
	sb, err := cl.CreateSandbox(context.Background(), wire.SandboxCreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	fake.Live[sb.ID].Block = make(chan struct{})
	return fake, e, cl, sb
}
