package cli

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/frostdev/frost/api"
)

// template runs `frost template build|ls`.
func (r *runner) template(ctx context.Context, args []string) int {
	sub := ""
	if len(args) > 0 {
		sub = args[0]
	}
	switch sub {
	case "build":
		return r.templateBuild(ctx, args[1:])
	case "ls", "list":
		return r.templateList(ctx, args[1:])
	case "rm":
		return r.templateRemove(ctx, args[1:])
	}
	fmt.Fprintln(r.stderr, "usage: frost template build NAME --from-rootfs DIR [--run CMD]... | frost template ls | frost template rm NAME")
	if sub == "" || sub == "help" || sub == "-h" || sub == "--help" {
		return exitUsage
	}
	fmt.Fprintf(r.stderr, "frost template: unknown sub-command %q\n", sub)
	return exitUsage
}

func (r *runner) templateBuild(ctx context.Context, args []string) int {
	c := r.newCommand("template build", "NAME --from-rootfs DIR [--run CMD]...",
		"Build sandbox template NAME: a sandbox boots DIR (a root file system on the server), runs each --run command once with sh -c, in order, and is checkpointed. `frost sandbox create --template NAME` then restores that checkpoint instead of booting. Building an existing name replaces it (--from-rootfs may then be left out).")
	rootfs := c.fs.String("from-rootfs", "", "root file system `DIR` on the server")
	var runs multiFlag
	c.fs.Var(&runs, "run", "setup `CMD` to run once (repeatable)")
	pos, cl, code, ok := c.clientArgs(args, 1, 1)
	if !ok {
		return code
	}
	start := time.Now()
	t, err := cl.BuildTemplate(ctx, api.TemplateBuildRequest{Name: pos[0], FromRootFS: *rootfs, Run: runs})
	if err != nil {
		return c.fail(err, "")
	}
	fmt.Fprintf(r.stdout, "Built template %s in %s (checkpoint %s).\n", t.Name, time.Since(start).Round(time.Millisecond), checkpointSize(t))
	return exitOK
}

func (r *runner) templateRemove(ctx context.Context, args []string) int {
	c := r.newCommand("template rm", "NAME|TENANT/NAME", "Delete sandbox template NAME and its checkpoint (not base). Sandboxes made from it go on. A tenant's template is its own NAME; the admin names it TENANT/NAME.")
	pos, cl, code, ok := c.clientArgs(args, 1, 1)
	if !ok {
		return code
	}
	if err := cl.DeleteTemplate(ctx, pos[0]); err != nil {
		return c.fail(err, "")
	}
	fmt.Fprintf(r.stdout, "Deleted template %s.\n", pos[0])
	return exitOK
}

func (r *runner) templateList(ctx context.Context, args []string) int {
	c := r.newCommand("template ls", "", "List sandbox templates.")
	if _, code, ok := c.parse(args, 0, 0); !ok {
		return code
	}
	cl, err := c.client()
	if err != nil {
		return c.fail(err, "")
	}
	list, err := cl.Templates(ctx)
	if err != nil {
		return c.fail(err, "")
	}
	tw := tabwriter.NewWriter(r.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSNAPSHOT\tMADE BY\tROOTFS")
	for _, t := range list {
		snap := "- (boots)"
		if t.Snapshot != nil {
			snap = checkpointSize(t)
		}
		made := fmt.Sprintf("%d setup commands", len(t.Setup))
		if t.From != "" {
			made = "snapshot of " + t.From
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", api.TemplateRef(t), snap, made, t.RootFS)
	}
	tw.Flush()
	return exitOK
}
