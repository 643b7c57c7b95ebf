package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/frostdev/frost/api"
)

// apps runs `frost apps`.
func (r *runner) apps(ctx context.Context, args []string) int {
	c := r.newCommand("apps", "[--json]", "List every app with its current release, mode, shape, URL and when it last changed.")
	asJSON := c.fs.Bool("json", false, "print the JSON array the control API returns")
	if _, code, ok := c.parse(args, 0, 0); !ok {
		return code
	}
	cl, err := c.client()
	if err != nil {
		return c.failMsg(err.Error())
	}
	apps, err := cl.Apps(ctx)
	if err != nil {
		return c.fail(err, "")
	}
	if apps == nil {
		apps = []api.App{}
	}
	if *asJSON {
		return c.printJSON(apps)
	}
	if len(apps) == 0 {
		fmt.Fprintln(r.stdout, "No apps yet. Deploy one with `frost deploy NAME FILE.wasm`.")
		return exitOK
	}
	sort.Slice(apps, func(i, j int) bool { return apps[i].Name < apps[j].Name })
	now := r.now()
	tw := tabwriter.NewWriter(r.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVERSION\tMODE\tSHAPE\tURL\tUPDATED")
	for _, a := range apps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n",
			a.Name, formatVersion(a.Version), dash(a.Mode), dash(a.Shape), dash(a.URL), ago(now, a.UpdatedAt))
	}
	tw.Flush()
	return exitOK
}

// app runs `frost app NAME`.
func (r *runner) app(ctx context.Context, args []string) int {
	c := r.newCommand("app", "NAME [--json]", "Show app NAME: URL, current release, mode, shape, limits, environment keys (never values), counters since the server started, and its releases, newest first.")
	asJSON := c.fs.Bool("json", false, "print the JSON object the control API returns")
	name, cl, code, ok := c.appClient(args)
	if !ok {
		return code
	}
	d, err := cl.App(ctx, name)
	if err != nil {
		return c.fail(err, name)
	}
	if *asJSON {
		return c.printJSON(d)
	}
	r.printApp(r.stdout, d)
	return exitOK
}

func (r *runner) printApp(w io.Writer, d api.AppDetail) {
	now := r.now()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\n", d.Name)
	fmt.Fprintf(tw, "  URL\t%s\n", dash(d.URL))
	release := "none yet: deploy one with `frost deploy " + d.Name + " FILE.wasm`"
	if d.Release != "" {
		release = fmt.Sprintf("%s %s, updated %s", formatVersion(d.Version), short(d.Release, 12), ago(now, d.UpdatedAt))
	}
	fmt.Fprintf(tw, "  release\t%s\n", release)
	fmt.Fprintf(tw, "  mode\t%s\n", dash(d.Mode))
	state := dash(d.State)
	if d.Release != "" {
		state += fmt.Sprintf(" (frozen after %s idle)", time.Duration(d.Idle))
	}
	fmt.Fprintf(tw, "  state\t%s\n", state)
	snap := "none"
	if s := d.Snapshot; s != nil {
		snap = fmt.Sprintf("%s, baked %s, used %s", humanSize(s.Size), ago(now, s.Created), ago(now, s.LastUsed))
	}
	fmt.Fprintf(tw, "  snapshot\t%s\n", snap)
	if s := d.SharedSnapshot; s != nil {
		fmt.Fprintf(tw, "  shared snapshot\t%s packed (%s), baked on %s, uploaded %s, woken from %s\n",
			humanSize(s.Size), humanSize(s.Bytes), dash(s.Node), ago(now, s.Uploaded), ago(now, s.Used))
	}
	fmt.Fprintf(tw, "  shape\t%s\n", dash(d.Shape))
	fmt.Fprintf(tw, "  limits\t%s\n", formatLimits(d.Limits))
	if rel, ok := findRelease(d, d.Release); ok && rel.Assets != "" {
		fmt.Fprintf(tw, "  assets\tsha256:%s (%s) at /assets\n", short(rel.Assets, 12), humanSize(rel.AssetsSize))
	}
	keys := append([]string(nil), d.EnvKeys...)
	sort.Strings(keys)
	env := "none"
	if len(keys) > 0 {
		env = strings.Join(keys, ", ")
	}
	fmt.Fprintf(tw, "  env\t%s (env version %d)\n", env, d.EnvVersion)
	k := d.Counters
	fmt.Fprintf(tw, "  requests\t%d (%d errors), %d in flight\n", k.Requests, k.Errors, k.InFlight)
	fmt.Fprintf(tw, "  instances\t%d\n", k.Instances)
	fmt.Fprintf(tw, "  boots\t%s (%s mode)\n", formatCounts(k.Boots, "warm", "thaw", "cold"), dash(d.Mode))
	fmt.Fprintf(tw, "  freezes\t%d; snapshot fallbacks: %s\n", k.Freezes, formatCounts(k.Fallbacks))
	fmt.Fprintf(tw, "  limit kills\t%s\n", formatCounts(k.LimitKills))
	fmt.Fprintf(tw, "  created\t%s\n", ago(now, d.CreatedAt))
	tw.Flush()
	if len(d.Releases) == 0 {
		return
	}
	fmt.Fprintln(w, "\nReleases:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  VERSION\tID\tSHAPE\tMODE\tMODULE\tSIZE\tCREATED")
	for _, rel := range d.Releases {
		cur := ""
		if rel.ID == d.Release {
			cur = " (serving)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s%s\n", formatVersion(rel.Version), short(rel.ID, 12), dash(rel.Shape), dash(rel.Mode),
			short(rel.Module, 12), humanSize(rel.ModuleSize), ago(now, rel.CreatedAt), cur)
	}
	tw.Flush()
}

// formatCounts writes counts as "warm 3, thaw 1, cold 0": the names in
// always first, even at zero, then any other non-zero counts by name;
// "none" when there is nothing to write.
func formatCounts(m map[string]uint64, always ...string) string {
	var parts []string
	for _, k := range always {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	var rest []string
	for k, n := range m {
		if n > 0 && !slices.Contains(always, k) {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	for _, k := range rest {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// rm runs `frost rm NAME`.
func (r *runner) rm(ctx context.Context, args []string) int {
	c := r.newCommand("rm", "NAME", "Delete app NAME and all its releases. Its URL stops answering at once. There is no undo.")
	name, cl, code, ok := c.appClient(args)
	if !ok {
		return code
	}
	if err := cl.DeleteApp(ctx, name); err != nil {
		return c.fail(err, name)
	}
	fmt.Fprintf(r.stdout, "Deleted %s.\n", name)
	return exitOK
}

func (r *runner) freeze(ctx context.Context, args []string) int {
	c := r.newCommand("freeze", "NAME", "Freeze app NAME to zero now: its snapshot is written if it has none, then its instances and their memory are dropped. The next request thaws it from the snapshot (or boots it cold if the snapshot cannot be used).")
	name, cl, code, ok := c.appClient(args)
	if !ok {
		return code
	}
	d, err := cl.Freeze(ctx, name)
	if err != nil {
		return c.fail(err, name)
	}
	snap := "no snapshot (the next request boots cold)"
	if d.Snapshot != nil {
		snap = "snapshot " + humanSize(d.Snapshot.Size)
	}
	fmt.Fprintf(r.stdout, "Froze %s: %s, %s.\n", name, d.State, snap)
	return exitOK
}

func (c *command) printJSON(v any) int {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return c.failMsg(err.Error())
	}
	fmt.Fprintf(c.r.stdout, "%s\n", b)
	return exitOK
}

func formatVersion(v int) string {
	if v <= 0 {
		return "-"
	}
	return fmt.Sprintf("v%d", v)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ago says how long before now t was: "just now", "42s ago", "3m ago",
// "5h ago", "12d ago", or the date when it is older than 30 days.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d/time.Hour))
	case d < 30*24*time.Hour:
		return fmt.Sprintf("%dd ago", int(d/(24*time.Hour)))
	}
	return t.Format("2006-01-02")
}
