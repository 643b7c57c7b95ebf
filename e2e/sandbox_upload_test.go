package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/frostdev/frost/api"
)

// TestSandboxCutUpload: an upload into a real gVisor sandbox that stops
// part way, its body stalled (408 after --body-timeout) or its client
// gone, leaves the file it was replacing as it was, and nothing beside
// it: runsc ends the write's input the same way for a whole body and a
// cut one, so the upload is framed and kept only once its end came.
func TestSandboxCutUpload(t *testing.T) {
	s, c := startSandboxServer(t, "", "--body-timeout", "1s")
	ctx := context.Background()
	sb, err := c.CreateSandbox(ctx, api.SandboxCreateRequest{Timeout: api.Duration(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	const p = "/root/work/notes.txt"
	if _, err := c.WriteFile(ctx, sb.ID, p, 0, strings.NewReader("the old notes\n")); err != nil {
		t.Fatal(err)
	}
	upload := func() net.Conn {
		t.Helper()
		conn, err := net.Dial("tcp", s.api)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "PUT /v1/sandboxes/%s/files?path=%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n",
			sb.ID, p, s.token, 4<<20)
		conn.Write(bytes.Repeat([]byte("new\n"), 256<<10)) // a quarter of it
		return conn
	}
	intact := func(when string) {
		t.Helper()
		var got bytes.Buffer
		if err := c.ReadFile(ctx, sb.ID, p, &got); err != nil || got.String() != "the old notes\n" {
			t.Fatalf("%s: the file holds %d bytes (%.20q), %v", when, got.Len(), got.String(), err)
		}
		if out, _, _ := sbExec(t, c, sb.ID, "", "ls", "-A", "/root/work"); out != "notes.txt\n" {
			t.Fatalf("%s: beside it: %q", when, out)
		}
	}

	// Stalled: 408, the old file kept.
	conn := upload()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	conn.Close()
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("stalled upload: %s, want 408", resp.Status)
	}
	intact("after a stalled upload")

	// The client gone: the server's write fails; once it has, the old
	// file is still there.
	failed := func() int { return strings.Count(s.stderr.String(), "api error") }
	before := failed()
	upload().Close()
	for deadline := time.Now().Add(20 * time.Second); failed() == before; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the server never saw the upload fail:\n%s", s.stderr.String())
		}
	}
	intact("after the client went")

	// And a whole upload replaces it.
	if info, err := c.WriteFile(ctx, sb.ID, p, 0, strings.NewReader("new notes\n")); err != nil || info.Size != 10 {
		t.Fatalf("whole upload: %+v %v", info, err)
	}
}
