package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/frostdev/frost/api"
)

// TestSandboxForkCLI: `frost sandbox fork` and `snapshot` on real gVisor
// sandboxes: each fork starts with the sandbox's files and its running
// server (listed, answering on its port), and goes its own way after; the
// sandbox runs on, expiring when it would have; a snapshot is a template
// that `create --template` starts from; `template rm` deletes it.
func TestSandboxForkCLI(t *testing.T) {
	s, c := startSandboxServer(t, "")
	ctx := context.Background()
	sb, err := c.CreateSandbox(ctx, api.SandboxCreateRequest{Timeout: api.Duration(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteFile(ctx, sb.ID, "/root/site/state.txt", 0, strings.NewReader("before the fork\n")); err != nil {
		t.Fatal(err)
	}
	s.mustFrost("sandbox", "exec", sb.ID, "--background", "--tag", "site", "--", "python3", "-m", "http.server", "8000", "--directory", "/root/site")
	if status, body := waitPort(s, sb.ID, 8000, sb.Token, "/state.txt"); status != 200 || body != "before the fork\n" {
		t.Fatalf("the server before: %d %q", status, body)
	}

	ids := strings.Fields(s.mustFrost("sandbox", "fork", sb.ID, "-n", "2"))
	if len(ids) != 2 || ids[0] == ids[1] || ids[0] == sb.ID {
		t.Fatalf("fork -n 2 printed %q", ids)
	}
	for i, id := range ids {
		f, err := c.Sandbox(ctx, id)
		if err != nil || f.State != api.SandboxRunning {
			t.Fatalf("fork %s: %+v %v", id, f, err)
		}
		if ps := s.mustFrost("sandbox", "ps", id); !strings.Contains(ps, "site") || !strings.Contains(ps, "http.server") {
			t.Fatalf("fork %s runs:\n%s", id, ps)
		}
		// Its own way: a file of its own, served by the server it carried.
		if _, _, code := sbExec(t, c, id, "", "sh", "-c", "echo fork "+string(rune('a'+i))+" > /root/site/state.txt"); code != 0 {
			t.Fatalf("write in fork %s: %d", id, code)
		}
		if status, body := portGet(s, id, 8000, f.Token, "/state.txt"); status != 200 || body != "fork "+string(rune('a'+i))+"\n" {
			t.Fatalf("fork %s's server: %d %q", id, status, body)
		}
	}
	got, err := c.Sandbox(ctx, sb.ID)
	if err != nil || got.State != api.SandboxRunning || !got.ExpiresAt.Equal(sb.ExpiresAt) {
		t.Fatalf("the sandbox after its forks: %s, expires %v (was %v), %v", got.State, got.ExpiresAt, sb.ExpiresAt, err)
	}
	if status, body := portGet(s, sb.ID, 8000, sb.Token, "/state.txt"); status != 200 || body != "before the fork\n" {
		t.Fatalf("the sandbox's own server after: %d %q", status, body)
	}

	if out := s.mustFrost("sandbox", "snapshot", sb.ID, "site-ready"); !strings.Contains(out, "Template site-ready from "+sb.ID) {
		t.Fatalf("snapshot: %s", out)
	}
	id := strings.TrimSpace(s.mustFrost("sandbox", "create", "--template", "site-ready"))
	n, err := c.Sandbox(ctx, id)
	if err != nil || n.Template != "site-ready" {
		t.Fatalf("from the snapshot: %+v %v", n, err)
	}
	if status, body := waitPort(s, id, 8000, n.Token, "/state.txt"); status != 200 || body != "before the fork\n" {
		t.Fatalf("the server from the snapshot: %d %q", status, body)
	}
	if out := s.mustFrost("template", "ls"); !strings.Contains(out, "snapshot of "+sb.ID) {
		t.Fatalf("template ls:\n%s", out)
	}
	if _, e, code := s.frost("sandbox", "snapshot", sb.ID, "site-ready"); code == 0 || !strings.Contains(e, "exists") {
		t.Fatalf("a snapshot over a template: exit %d %s", code, e)
	}
	s.mustFrost("template", "rm", "site-ready")
	if out := s.mustFrost("template", "ls"); strings.Contains(out, "site-ready") {
		t.Fatalf("after rm:\n%s", out)
	}
}

// TestSandboxTemplateNamesPerTenant: template names are each tenant's own,
// on real gVisor sandboxes. Two tenants each snapshot a sandbox as "env";
// each one's `create --template env` starts with its own files; the
// admin's `template ls` lists both as TENANT/env, and `template rm
// bob/env` removes bob's alone.
func TestSandboxTemplateNamesPerTenant(t *testing.T) {
	s, _ := startSandboxServer(t, "")
	as := func(tok string, args ...string) string {
		t.Helper()
		out, errs, code := s.frostWithToken(tok, args...)
		if code != 0 {
			t.Fatalf("frost %s: exit %d: %s", strings.Join(args, " "), code, errs)
		}
		return strings.TrimSpace(out)
	}
	toks := map[string]string{}
	for _, who := range []string{"alice", "bob"} {
		toks[who] = strings.TrimSpace(s.mustFrost("tenant", "create", who))
		id := as(toks[who], "sandbox", "create")
		as(toks[who], "sandbox", "exec", id, "--", "sh", "-c", "echo "+who+" > /root/who")
		as(toks[who], "sandbox", "snapshot", id, "env")
	}
	for who, tok := range toks {
		id := as(tok, "sandbox", "create", "--template", "env")
		if got := as(tok, "sandbox", "exec", id, "--", "cat", "/root/who"); got != who {
			t.Errorf("%s's sandbox from env has %q", who, got)
		}
	}
	if out := s.mustFrost("template", "ls"); !strings.Contains(out, "alice/env ") || !strings.Contains(out, "bob/env ") {
		t.Fatalf("the admin's template ls:\n%s", out)
	}
	s.mustFrost("template", "rm", "bob/env")
	if _, errs, code := s.frostWithToken(toks["bob"], "sandbox", "create", "--template", "env"); code == 0 || !strings.Contains(errs, `no template "env"`) {
		t.Errorf("bob's create from env after the admin removed it: exit %d %s", code, errs)
	}
	id := as(toks["alice"], "sandbox", "create", "--template", "env")
	if got := as(toks["alice"], "sandbox", "exec", id, "--", "cat", "/root/who"); got != "alice" {
		t.Errorf("alice's env after bob's went: %q", got)
	}
}
