package cli

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/frostdev/frost/api"
)

func (r *runner) status(ctx context.Context, args []string) int {
	c := r.newCommand("status", "[--json]", "Show the server's role and, when it uses shared storage (frost server --s3), whether the storage answers, the uploads and deletions waiting for it (the backlog, which drains once it answers again) and the local cache. Through a gateway, every node's.")
	asJSON := c.fs.Bool("json", false, "print the JSON object the control API returns")
	if _, code, ok := c.parse(args, 0, 0); !ok {
		return code
	}
	cl, err := c.client()
	if err != nil {
		return c.failMsg(err.Error())
	}
	st, err := cl.Status(ctx)
	if err != nil {
		return c.fail(err, "")
	}
	if *asJSON {
		return c.printJSON(st)
	}
	if st.Role == "gateway" {
		fmt.Fprintf(r.stdout, "gateway, %d nodes\n", len(st.Nodes))
		for _, n := range st.Nodes {
			fmt.Fprintln(r.stdout)
			r.printStatus(r.stdout, n)
		}
		return exitOK
	}
	r.printStatus(r.stdout, st)
	return exitOK
}

func (r *runner) printStatus(w io.Writer, st api.Status) {
	now := r.now()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	name := st.Node
	if name == "" {
		name = "this server"
	}
	fmt.Fprintf(tw, "%s (role %s)\n", name, st.Role)
	if st.Error != "" {
		fmt.Fprintf(tw, "  error\tdid not answer: %s\n", st.Error)
		tw.Flush()
		return
	}
	s := st.Shared
	if s == nil {
		fmt.Fprintf(tw, "  shared storage\tnone (releases and snapshots stay on this node; frost server --s3 URL shares them)\n")
		tw.Flush()
		return
	}
	reach := "reachable"
	if !s.Reachable {
		reach = "UNREACHABLE since " + ago(now, s.LastErrorAt) + ": " + s.LastError
	}
	fmt.Fprintf(tw, "  shared storage\t%s, %s\n", s.Remote, reach)
	backlog := "empty"
	if s.Backlog > 0 {
		backlog = fmt.Sprintf("%d tasks, %s to upload, oldest queued %s", s.Backlog, humanSize(s.BacklogBytes), ago(now, s.Oldest))
	}
	fmt.Fprintf(tw, "  backlog\t%s\n", backlog)
	fmt.Fprintf(tw, "  uploads\t%d blobs, %d snapshots; %d deleted\n", s.Uploads, s.SnapshotUploads, s.Deletes)
	fmt.Fprintf(tw, "  fetches\t%d blobs, %d snapshots; %d failed\n", s.Fetches, s.SnapshotFetches, s.FetchFailures)
	cache := humanSize(s.CacheBytes)
	if s.CacheCap > 0 {
		cache += " of " + humanSize(s.CacheCap)
	}
	fmt.Fprintf(tw, "  blob cache\t%s, %d evicted\n", cache, s.Evictions)
	if s.Dropped > 0 {
		fmt.Fprintf(tw, "  dropped\t%d tasks whose source was gone (see the server log)\n", s.Dropped)
	}
	tw.Flush()
}
