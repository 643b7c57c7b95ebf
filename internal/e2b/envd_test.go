package e2b

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/e2b/envdpb/processpb"
	"github.com/frostdev/frost/internal/e2b/envdpb/processpb/processpbconnect"
	"github.com/frostdev/frost/internal/sandbox"
	"github.com/frostdev/frost/internal/sandbox/sandboxtest"
)

func newManager(t testing.TB) *sandbox.Manager {
	t.Helper()
	return newManagerWith(t, sandboxtest.New())
}

func newManagerWith(t testing.TB, rt *sandboxtest.Runtime) *sandbox.Manager {
	t.Helper()
	return sandboxtest.NewManager(t, rt).Manager
}

// envelopes splits a Connect stream into (flag, message) pairs.
func envelopes(t *testing.T, b []byte) (flags []byte, msgs []string) {
	t.Helper()
	for len(b) > 0 {
		if len(b) < 5 {
			t.Fatalf("truncated envelope: %q", b)
		}
		n := binary.BigEndian.Uint32(b[1:5])
		flags = append(flags, b[0])
		msgs = append(msgs, string(b[5:5+n]))
		b = b[5+n:]
	}
	return flags, msgs
}

func TestEnvdRoutingAuthAndStart(t *testing.T) {
	m := newManager(t)
	sb, err := m.Create(context.Background(), api.SandboxCreateRequest{Env: map[string]string{"K": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "next") })
	srv := httptest.NewServer(NewEnvd(m, 0).Wrap("frost.test", next))
	defer srv.Close()

	do := func(host string, hdr map[string]string, path string, body []byte) (int, []byte) {
		req, _ := http.NewRequest("POST", srv.URL+path, bytes.NewReader(body))
		if host != "" {
			req.Host = host
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	// Not for envd: the next handler.
	if _, b := do("", nil, "/", nil); string(b) != "next" {
		t.Fatalf("plain request: %q", b)
	}
	if _, b := do("", map[string]string{"E2b-Sandbox-Id": sb.ID, "E2b-Sandbox-Port": "8000"}, "/", nil); string(b) != "next" {
		t.Fatalf("another port: %q", b)
	}
	// For envd, without and with the access token.
	if st, _ := do("", map[string]string{"E2b-Sandbox-Id": sb.ID}, "/filesystem.Filesystem/Stat", []byte(`{"path":"/x"}`)); st != 401 {
		t.Fatalf("no token: %d", st)
	}
	if st, _ := do("49983-"+sb.ID+".frost.test", map[string]string{"X-Access-Token": "bogus"}, "/filesystem.Filesystem/Stat", []byte(`{"path":"/x"}`)); st != 401 {
		t.Fatalf("bad token by host: %d", st)
	}
	tok := map[string]string{"E2b-Sandbox-Id": sb.ID, "X-Access-Token": sb.Token, "Content-Type": "application/json"}
	if st, b := do("", tok, "/filesystem.Filesystem/Stat", []byte(`{"path":"/nope"}`)); st != 404 || !strings.Contains(string(b), `"not_found"`) {
		t.Fatalf("stat of a missing file: %d %s", st, b)
	}
	if st, b := do("", tok, "/process.Process/Update", []byte(`{"process":{"pid":4242},"pty":{"size":{"cols":0,"rows":24}}}`)); st != 400 || !strings.Contains(string(b), "invalid_argument") {
		t.Fatalf("resize to no columns: %d %s", st, b)
	}
	if st, b := do("", tok, "/process.Process/Update", []byte(`{"process":{"pid":4242},"pty":{"size":{"cols":80,"rows":24}}}`)); st != 404 || !strings.Contains(string(b), `"not_found"`) {
		t.Fatalf("resize of no process: %d %s", st, b)
	}
	if st, b := do("", tok, "/process.Process/SendSignal", []byte(`{"process":{"pid":4242},"signal":"SIGNAL_SIGKILL"}`)); st != 404 || !strings.Contains(string(b), `"not_found"`) {
		t.Fatalf("signal to no process: %d %s", st, b)
	}

	// Start on the wire, as the SDK sends it (Connect, JSON envelopes):
	// start first, then output, then end, then end-of-stream.
	req, _ := json.Marshal(map[string]any{"process": map[string]any{"cmd": "/bin/bash", "args": []string{"-l", "-c", "echo hi"}}, "stdin": false})
	env := append([]byte{0, 0, 0, 0, 0}, req...)
	binary.BigEndian.PutUint32(env[1:5], uint32(len(req)))
	tok["Content-Type"] = "application/connect+json"
	st, b := do("", tok, "/process.Process/Start", env)
	if st != 200 {
		t.Fatalf("start: %d %s", st, b)
	}
	flags, msgs := envelopes(t, b)
	if len(msgs) != 4 || !strings.Contains(msgs[0], `"start"`) || !strings.Contains(msgs[1], `"stdout"`) ||
		!strings.Contains(msgs[2], `"end"`) || !strings.Contains(msgs[2], `"exited":true`) || flags[3] != 2 || msgs[3] != "{}" {
		t.Fatalf("stream: flags %v, messages %q", flags, msgs)
	}
	// The sandbox's environment reached the command (the fake echoes K).
	var ev struct {
		Event struct {
			Data struct {
				Stdout []byte `json:"stdout"`
			} `json:"data"`
		} `json:"event"`
	}
	json.Unmarshal([]byte(msgs[1]), &ev)
	if !strings.Contains(string(ev.Event.Data.Stdout), "env=v") {
		t.Fatalf("stdout %q: the sandbox's env did not reach the command", ev.Event.Data.Stdout)
	}
}

// clients returns connect clients for sandbox id's envd, speaking JSON as
// the SDK does.
// blockedSandbox creates a sandbox on a fake runtime whose commands
// block until its box's Block is closed, and a process client for it.
func blockedSandbox(t *testing.T) (*sandboxtest.Runtime, *sandbox.Manager, api.Sandbox, processpbconnect.ProcessClient) {
	t.Helper()
	fake := sandboxtest.New()
	m := newManagerWith(t, fake)
	sb, err := m.Create(context.Background(), api.SandboxCreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	fake.Live[sb.ID].Block = make(chan struct{})
	return fake, m, sb, clients(t, NewEnvd(m, 0), sb.ID, sb.Token)
}

func clients(t *testing.T, e *Envd, id, tok string) processpbconnect.ProcessClient {
	t.Helper()
	srv := httptest.NewServer(e.Wrap("frost.test", http.NotFoundHandler()))
	t.Cleanup(srv.Close)
	hc := &http.Client{Transport: headerTransport{"E2b-Sandbox-Id": id, "X-Access-Token": tok}}
	return processpbconnect.NewProcessClient(hc, srv.URL, connect.WithProtoJSON())
}

type headerTransport map[string]string

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range h {
		r.Header.Set(k, v)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestProcessOutlivesItsStream: a command keeps running when the stream
// that started it goes; Connect re-attaches by pid or tag and gets its
// output and end; then it is gone from List and from Connect.
func TestProcessOutlivesItsStream(t *testing.T) {
	fake, _, sb, pc := blockedSandbox(t)
	box := fake.Live[sb.ID]
	ctx := context.Background()

	sctx, drop := context.WithCancel(ctx)
	tag := "server"
	stream, err := pc.Start(sctx, connect.NewRequest(&processpb.StartRequest{Process: &processpb.ProcessConfig{Cmd: "serve"}, Tag: &tag}))
	if err != nil {
		t.Fatal(err)
	}
	if !stream.Receive() {
		t.Fatal(stream.Err())
	}
	pid := stream.Msg().GetEvent().GetStart().GetPid()
	if pid == 0 {
		t.Fatalf("first event %v, want start with a pid", stream.Msg())
	}
	drop() // the SDK's disconnect
	stream.Close()

	list, err := pc.List(ctx, connect.NewRequest(&processpb.ListRequest{}))
	if err != nil || len(list.Msg.Processes) != 1 || list.Msg.Processes[0].Pid != pid || list.Msg.Processes[0].GetTag() != tag {
		t.Fatalf("list after the stream went: %v %v", list, err)
	}
	for _, sel := range []*processpb.ProcessSelector{{Selector: &processpb.ProcessSelector_Tag{Tag: tag}}, {Selector: &processpb.ProcessSelector_Pid{Pid: pid}}} {
		again, err := pc.Connect(ctx, connect.NewRequest(&processpb.ConnectRequest{Process: sel}))
		if err != nil {
			t.Fatal(err)
		}
		if !again.Receive() || again.Msg().GetEvent().GetStart().GetPid() != pid {
			t.Fatalf("connect %v: first event %v (%v)", sel, again.Msg(), again.Err())
		}
		if sel.GetTag() != "" {
			again.Close() // leave once more; the last one stays to the end
			continue
		}
		close(box.Block)
		var out string
		var end *processpb.ProcessEvent_EndEvent
		for again.Receive() {
			ev := again.Msg().GetEvent()
			out += string(ev.GetData().GetStdout())
			if ev.GetEnd() != nil {
				end = ev.GetEnd()
			}
		}
		if again.Err() != nil || end == nil || !end.Exited || end.ExitCode != 0 || !strings.Contains(out, "ran serve") {
			t.Fatalf("re-attached stream: out %q end %v err %v", out, end, again.Err())
		}
	}
	list, _ = pc.List(ctx, connect.NewRequest(&processpb.ListRequest{}))
	if len(list.Msg.Processes) != 0 {
		t.Fatalf("list after the end: %v", list.Msg.Processes)
	}
	gone, err := pc.Connect(ctx, connect.NewRequest(&processpb.ConnectRequest{Process: &processpb.ProcessSelector{Selector: &processpb.ProcessSelector_Pid{Pid: pid}}}))
	if err == nil {
		gone.Receive()
		err = gone.Err()
	}
	if connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("connect to an ended process: %v, want not_found", err)
	}
}

// TestPauseKeepsProcesses: pausing the sandbox ends the streams of its
// commands (unavailable, not hanging) but not the commands: after the
// resume they are listed from the sandbox's own table, by their pid and
// tag, fed, re-attached to their end, and signalled.
func TestPauseKeepsProcesses(t *testing.T) {
	fake, m, sb, pc := blockedSandbox(t)
	box := fake.Live[sb.ID]
	ctx := context.Background()
	yes := true
	start := func(tag string) (*connect.ServerStreamForClient[processpb.StartResponse], uint32) {
		t.Helper()
		stream, err := pc.Start(ctx, connect.NewRequest(&processpb.StartRequest{Process: &processpb.ProcessConfig{Cmd: "serve", Args: []string{tag}}, Tag: &tag, Stdin: &yes}))
		if err != nil || !stream.Receive() {
			t.Fatal(err, stream.Err())
		}
		return stream, stream.Msg().GetEvent().GetStart().GetPid()
	}
	s1, pid1 := start("one")
	s2, pid2 := start("two")
	if pid1 == 0 || pid2 == 0 || pid1 == pid2 {
		t.Fatalf("pids %d, %d", pid1, pid2)
	}
	box.WaitBlocked(2)
	if _, err := m.Pause(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*connect.ServerStreamForClient[processpb.StartResponse]{s1, s2} {
		for s.Receive() {
		}
		if connect.CodeOf(s.Err()) != connect.CodeUnavailable {
			t.Fatalf("stream of a command whose sandbox paused: %v, want unavailable", s.Err())
		}
	}
	// The list resumes the sandbox; its table has both.
	list, err := pc.List(ctx, connect.NewRequest(&processpb.ListRequest{}))
	if err != nil || len(list.Msg.Processes) != 2 {
		t.Fatalf("list after the pause: %v %v", list, err)
	}
	for _, p := range list.Msg.Processes {
		if want := map[uint32]string{pid1: "one", pid2: "two"}[p.Pid]; p.GetTag() != want || p.Config.GetArgs()[0] != want {
			t.Fatalf("listed %v", p)
		}
	}
	box = fake.Live[sb.ID]
	box.Block = make(chan struct{})
	byPid := &processpb.ProcessSelector{Selector: &processpb.ProcessSelector_Pid{Pid: pid1}}
	if _, err := pc.SendInput(ctx, connect.NewRequest(&processpb.SendInputRequest{Process: byPid, Input: &processpb.ProcessInput{Input: &processpb.ProcessInput_Stdin{Stdin: []byte("hi")}}})); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.CloseStdin(ctx, connect.NewRequest(&processpb.CloseStdinRequest{Process: byPid})); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.SendInput(ctx, connect.NewRequest(&processpb.SendInputRequest{Process: byPid, Input: &processpb.ProcessInput{Input: &processpb.ProcessInput_Stdin{Stdin: []byte("more")}}})); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("input after closing it: %v, want failed_precondition", err)
	}
	again, err := pc.Connect(ctx, connect.NewRequest(&processpb.ConnectRequest{Process: &processpb.ProcessSelector{Selector: &processpb.ProcessSelector_Tag{Tag: "one"}}}))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		box.WaitBlocked(1)
		close(box.Block)
	}()
	var events []string
	for again.Receive() {
		ev := again.Msg().GetEvent()
		switch {
		case ev.GetStart() != nil:
			events = append(events, fmt.Sprint("start ", ev.GetStart().GetPid()))
		case ev.GetData() != nil:
			events = append(events, "data "+string(ev.GetData().GetStdout()))
		case ev.GetEnd() != nil:
			events = append(events, fmt.Sprint("end ", ev.GetEnd().GetExitCode()))
		}
	}
	if want := []string{fmt.Sprint("start ", pid1), "data ran serve one", "end 0"}; again.Err() != nil || !slices.Equal(events, want) {
		t.Fatalf("re-attached after the pause: %q (%v), want %q", events, again.Err(), want)
	}
	bySecondPid := &processpb.ProcessSelector{Selector: &processpb.ProcessSelector_Pid{Pid: pid2}}
	if _, err := pc.SendSignal(ctx, connect.NewRequest(&processpb.SendSignalRequest{Process: bySecondPid, Signal: processpb.Signal_SIGNAL_SIGKILL})); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.SendSignal(ctx, connect.NewRequest(&processpb.SendSignalRequest{Process: bySecondPid, Signal: processpb.Signal_SIGNAL_SIGKILL})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("signal to an ended process: %v, want not_found", err)
	}
	if list, _ := pc.List(ctx, connect.NewRequest(&processpb.ListRequest{})); len(list.Msg.Processes) != 0 {
		t.Fatalf("list after both ended: %v", list.Msg.Processes)
	}
	if got := box.Processes(); len(got) != 0 {
		t.Fatalf("the box still runs %v", got)
	}
}

// TestPTY: a process started with a PTY runs on a terminal of that size
// (the box is asked for one); its output comes as pty data, streaming
// here and after a pause through init alike; Update resizes it; its input
// does not close; a process on pipes cannot be resized, and a PTY of no
// size is refused.
func TestPTY(t *testing.T) {
	fake, m, sb, pc := blockedSandbox(t)
	box := fake.Live[sb.ID]
	ctx := context.Background()
	size := func(cols, rows uint32) *processpb.PTY {
		return &processpb.PTY{Size: &processpb.PTY_Size{Cols: cols, Rows: rows}}
	}
	if s, _ := pc.Start(ctx, connect.NewRequest(&processpb.StartRequest{Process: &processpb.ProcessConfig{Cmd: "bash"}, Pty: size(0, 24)})); s.Receive() || connect.CodeOf(s.Err()) != connect.CodeInvalidArgument {
		t.Fatalf("a PTY of no columns: %v, want invalid_argument", s.Err())
	}
	stream, err := pc.Start(ctx, connect.NewRequest(&processpb.StartRequest{Process: &processpb.ProcessConfig{Cmd: "bash", Args: []string{"-i", "-l"}}, Pty: size(80, 24)}))
	if err != nil || !stream.Receive() {
		t.Fatal(err, stream.Err())
	}
	pid := stream.Msg().GetEvent().GetStart().GetPid()
	byPid := &processpb.ProcessSelector{Selector: &processpb.ProcessSelector_Pid{Pid: pid}}
	running := func() api.Process {
		t.Helper()
		list, err := m.Processes(ctx, sb.ID)
		if err != nil || len(list) != 1 {
			t.Fatalf("processes: %v %v", list, err)
		}
		return list[0]
	}
	if p := running(); p.TTY == nil || *p.TTY != (api.TTY{Cols: 80, Rows: 24}) || !p.Stdin {
		t.Fatalf("the box runs %+v, want it on an 80x24 terminal, its input open", p)
	}
	if _, err := pc.Update(ctx, connect.NewRequest(&processpb.UpdateRequest{Process: byPid, Pty: size(120, 40)})); err != nil {
		t.Fatal(err)
	}
	if p := running(); *p.TTY != (api.TTY{Cols: 120, Rows: 40}) {
		t.Fatalf("after the resize: %+v", p.TTY)
	}
	if _, err := pc.SendInput(ctx, connect.NewRequest(&processpb.SendInputRequest{Process: byPid, Input: &processpb.ProcessInput{Input: &processpb.ProcessInput_Pty{Pty: []byte("ls\r")}}})); err != nil {
		t.Fatalf("pty input: %v", err)
	}
	if _, err := pc.CloseStdin(ctx, connect.NewRequest(&processpb.CloseStdinRequest{Process: byPid})); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("closing a terminal's input: %v, want failed_precondition", err)
	}
	close(box.Block)
	var data []string
	for stream.Receive() {
		if d := stream.Msg().GetEvent().GetData(); d != nil {
			if d.GetStdout() != nil || d.GetStderr() != nil {
				t.Fatalf("a terminal's output came as stdout/stderr: %v", d)
			}
			data = append(data, string(d.GetPty()))
		}
	}
	if !slices.Equal(data, []string{"ran bash -i -l env= cwd=/root"}) {
		t.Fatalf("pty data %q", data)
	}

	// After a pause: through init, its output as pty data still.
	box.Block = make(chan struct{})
	stream, err = pc.Start(ctx, connect.NewRequest(&processpb.StartRequest{Process: &processpb.ProcessConfig{Cmd: "top"}, Pty: size(80, 24)}))
	if err != nil || !stream.Receive() {
		t.Fatal(err, stream.Err())
	}
	byPid = &processpb.ProcessSelector{Selector: &processpb.ProcessSelector_Pid{Pid: stream.Msg().GetEvent().GetStart().GetPid()}}
	box.WaitBlocked(1)
	if _, err := m.Pause(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	for stream.Receive() {
	}
	box = fake.Live[sb.ID] // resumed by the call below
	if _, err := pc.Update(ctx, connect.NewRequest(&processpb.UpdateRequest{Process: byPid, Pty: size(100, 30)})); err != nil {
		t.Fatal(err)
	}
	box = fake.Live[sb.ID]
	if p := running(); *p.TTY != (api.TTY{Cols: 100, Rows: 30}) {
		t.Fatalf("resized after the pause: %+v", p.TTY)
	}
	if _, err := pc.CloseStdin(ctx, connect.NewRequest(&processpb.CloseStdinRequest{Process: byPid})); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("closing a terminal's input after the pause: %v, want failed_precondition", err)
	}
	box.Block = make(chan struct{})
	again, err := pc.Connect(ctx, connect.NewRequest(&processpb.ConnectRequest{Process: byPid}))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		box.WaitBlocked(1)
		close(box.Block)
	}()
	data = nil
	for again.Receive() {
		if d := again.Msg().GetEvent().GetData(); d != nil {
			data = append(data, fmt.Sprintf("%q %q", d.GetPty(), d.GetStdout()))
		}
	}
	if want := []string{`"ran top" ""`}; again.Err() != nil || !slices.Equal(data, want) {
		t.Fatalf("re-attached: %q (%v), want %q", data, again.Err(), want)
	}

	// A process on pipes has no terminal to resize.
	box.Block = make(chan struct{})
	defer close(box.Block)
	stream, err = pc.Start(ctx, connect.NewRequest(&processpb.StartRequest{Process: &processpb.ProcessConfig{Cmd: "cat"}}))
	if err != nil || !stream.Receive() {
		t.Fatal(err, stream.Err())
	}
	byPid = &processpb.ProcessSelector{Selector: &processpb.ProcessSelector_Pid{Pid: stream.Msg().GetEvent().GetStart().GetPid()}}
	if _, err := pc.Update(ctx, connect.NewRequest(&processpb.UpdateRequest{Process: byPid, Pty: size(100, 30)})); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("resizing a process on pipes: %v, want failed_precondition", err)
	}
}

// TestUploadBatches: the SDK's files.write([...]) (one multipart POST
// /files, each part's filename its path) is written as one tree, one
// call into the sandbox for the lot; one file alone, and a part too big
// to gather, go as files; the answer lists every file in order.
func TestUploadBatches(t *testing.T) {
	u := newUploads(t)
	fake, m, sb, env, srv := u.fake, u.m, u.sb, u.env, u.srv
	post := func(query string, files ...[2]string) (int, string) { return u.post(t, query, files...) }
	read := func(p string) string {
		var b bytes.Buffer
		if err := m.ReadFile(context.Background(), sb.ID, p, &b); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		return b.String()
	}
	box := fake.Live[sb.ID]
	st, b := post("", [2]string{"/root/app/a.py", "A"}, [2]string{"/root/app/lib/b.py", "B"}, [2]string{"/root/notes.txt", "N"}, [2]string{"rel.txt", "R"})
	if st != 200 || b != `[{"path":"/root/app/a.py","name":"a.py","type":"file"},{"path":"/root/app/lib/b.py","name":"b.py","type":"file"},{"path":"/root/notes.txt","name":"notes.txt","type":"file"},{"path":"/root/rel.txt","name":"rel.txt","type":"file"}]`+"\n" {
		t.Fatalf("four files: %d %s", st, b)
	}
	if box.Untars != 1 {
		t.Fatalf("four files made %d trees, want 1", box.Untars)
	}
	for p, want := range map[string]string{"/root/app/a.py": "A", "/root/app/lib/b.py": "B", "/root/notes.txt": "N", "/root/rel.txt": "R"} {
		if got := read(p); got != want {
			t.Errorf("%s holds %q, want %q", p, got, want)
		}
	}
	// Files in different trees share "/" as their directory.
	if st, b := post("", [2]string{"/etc/x.conf", "X"}, [2]string{"/root/y", "Y"}); st != 200 || box.Untars != 2 || read("/etc/x.conf") != "X" || read("/root/y") != "Y" {
		t.Fatalf("files under / : %d %s, %d trees", st, b, box.Untars)
	}
	// One file: a file write. A part too big to gather: the ones before
	// it as a tree, it on its own.
	if st, b := post("?path=/root/one.txt", [2]string{"ignored-name", "1"}); st != 200 || box.Untars != 2 || read("/root/one.txt") != "1" {
		t.Fatalf("one file: %d %s, %d trees", st, b, box.Untars)
	}
	big := strings.Repeat("b", uploadBatch+1)
	if st, b := post("", [2]string{"/root/s1", "1"}, [2]string{"/root/s2", "2"}, [2]string{"/root/big", big}, [2]string{"/root/after", "a"}); st != 200 || box.Untars != 3 {
		t.Fatalf("with a big part: %d %.200s, %d trees", st, b, box.Untars)
	}
	if read("/root/big") != big || read("/root/s2") != "2" || read("/root/after") != "a" {
		t.Fatal("with a big part: files missing")
	}
	// Every byte gathered is given back, a body cut short included.
	if cut, _ := http.NewRequest("POST", srv.URL+"/files", strings.NewReader("--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"/root/cut\"\r\n\r\nhalf")); cut != nil {
		cut.Header.Set("Content-Type", "multipart/form-data; boundary=x")
		cut.Header.Set("E2b-Sandbox-Id", sb.ID)
		cut.Header.Set("X-Access-Token", sb.Token)
		if resp, err := http.DefaultClient.Do(cut); err != nil || resp.StatusCode != 400 {
			t.Fatalf("a cut body: %v %v", resp, err)
		}
	}
	if left := env.gathering.leftNow(); left != gatherBudget {
		t.Fatalf("after the uploads the budget is %d, want %d", left, gatherBudget)
	}
}

// TestUploadBudgetSpent: while the server holds its budget of gathered
// files (other uploads'), an upload's files stream in one by one, as a
// large file does, rather than wait in memory; all land.
func TestUploadBudgetSpent(t *testing.T) {
	u := newUploads(t)
	want := map[string]string{"/root/a": "A", "/root/b": strings.Repeat("b", 200<<10), "/root/c": "C", "/root/d": "D"}
	upload := func() {
		t.Helper()
		var files [][2]string
		for _, p := range []string{"/root/a", "/root/b", "/root/c", "/root/d"} {
			files = append(files, [2]string{p, want[p]})
		}
		if st, b := u.post(t, "", files...); st != 200 || strings.Count(b, `"type":"file"`) != 4 {
			t.Fatalf("upload: %d %s", st, b)
		}
		for p, w := range want {
			var got bytes.Buffer
			if err := u.m.ReadFile(context.Background(), u.sb.ID, p, &got); err != nil || got.String() != w {
				t.Errorf("%s: %d bytes, %v; want %d", p, got.Len(), err, len(w))
			}
		}
	}
	fake, sb, env := u.fake, u.sb, u.env
	box := fake.Live[sb.ID]
	// All of it held elsewhere: each file alone.
	env.gathering.take(gatherBudget)
	upload()
	if box.Untars != 0 || env.gathering.leftNow() != 0 {
		t.Errorf("with the budget spent: %d trees written (want 0), %d bytes left", box.Untars, env.gathering.leftNow())
	}
	// 100 KiB left, one chunk: a is gathered (a chunk reserved, a byte
	// kept); b's first chunk too, the next refused: a goes alone, b
	// streams; c and d are gathered again, one tree.
	env.gathering.give(100 << 10)
	upload()
	if box.Untars != 1 {
		t.Errorf("%d trees written, want 1 (c and d)", box.Untars)
	}
	if left := env.gathering.leftNow(); left != 100<<10 {
		t.Errorf("after the upload %d bytes left, want %d", left, 100<<10)
	}
}

// uploads is a sandbox of the fake runtime behind an Envd, for the
// upload tests.
type uploads struct {
	fake *sandboxtest.Runtime
	m    *sandbox.Manager
	sb   api.Sandbox
	env  *Envd
	srv  *httptest.Server
}

func newUploads(t *testing.T) *uploads {
	u := &uploads{fake: sandboxtest.New()}
	u.m = newManagerWith(t, u.fake)
	var err error
	if u.sb, err = u.m.Create(context.Background(), api.SandboxCreateRequest{}); err != nil {
		t.Fatal(err)
	}
	u.env = NewEnvd(u.m, 0)
	u.srv = httptest.NewServer(u.env.Wrap("frost.test", http.NotFoundHandler()))
	t.Cleanup(u.srv.Close)
	return u
}

// post sends files, [path, content] pairs, as the SDK's files.write does:
// one POST /files?query, a part a file.
func (u *uploads) post(t *testing.T, query string, files ...[2]string) (int, string) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, f := range files {
		fw, _ := mw.CreateFormFile("file", f[0])
		io.WriteString(fw, f[1])
	}
	mw.Close()
	req, _ := http.NewRequest("POST", u.srv.URL+"/files"+query, &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("E2b-Sandbox-Id", u.sb.ID)
	req.Header.Set("X-Access-Token", u.sb.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
