package cli

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/frostdev/frost/api"
)

// tenant runs `frost tenant create|ls|rm`.
func (r *runner) tenant(ctx context.Context, args []string) int {
	sub := ""
	if len(args) > 0 {
		sub = args[0]
	}
	switch sub {
	case "create":
		return r.tenantCreate(ctx, args[1:])
	case "ls", "list":
		return r.tenantList(ctx, args[1:])
	case "rm":
		return r.tenantRemove(ctx, args[1:])
	}
	fmt.Fprintln(r.stderr, "usage: frost tenant create NAME | frost tenant ls | frost tenant rm NAME   (admin token only)")
	if sub == "" || sub == "help" || sub == "-h" || sub == "--help" {
		return exitUsage
	}
	fmt.Fprintf(r.stderr, "frost tenant: unknown sub-command %q\n", sub)
	return exitUsage
}

func (r *runner) tenantCreate(ctx context.Context, args []string) int {
	c := r.newCommand("tenant create", "NAME",
		"Create tenant NAME and print its token, once: the token deploys, sees and manages only NAME's apps and sandboxes (FROST_TOKEN=TOKEN frost …). Only the admin token may manage tenants.")
	pos, cl, code, ok := c.clientArgs(args, 1, 1)
	if !ok {
		return code
	}
	t, err := cl.CreateTenant(ctx, pos[0])
	if err != nil {
		return c.fail(err, "")
	}
	fmt.Fprintf(r.stderr, "Created tenant %s. Its token (shown once; give it to the tenant; as E2B_API_KEY for the E2B SDK: %s):\n", t.Name, api.E2BKey(t.Token))
	fmt.Fprintln(r.stdout, t.Token)
	return exitOK
}

func (r *runner) tenantList(ctx context.Context, args []string) int {
	c := r.newCommand("tenant ls", "", "List tenants (not their tokens: only their hashes are kept).")
	if _, code, ok := c.parse(args, 0, 0); !ok {
		return code
	}
	cl, err := c.client()
	if err != nil {
		return c.fail(err, "")
	}
	ts, err := cl.Tenants(ctx)
	if err != nil {
		return c.fail(err, "")
	}
	now := r.now()
	tw := tabwriter.NewWriter(r.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tCREATED")
	for _, t := range ts {
		fmt.Fprintf(tw, "%s\t%s\n", t.Name, ago(now, t.CreatedAt))
	}
	tw.Flush()
	return exitOK
}

func (r *runner) tenantRemove(ctx context.Context, args []string) int {
	c := r.newCommand("tenant rm", "NAME", "Delete tenant NAME, which must own no app and no sandbox; its token stops working at once.")
	pos, cl, code, ok := c.clientArgs(args, 1, 1)
	if !ok {
		return code
	}
	if err := cl.DeleteTenant(ctx, pos[0]); err != nil {
		return c.fail(err, "")
	}
	fmt.Fprintf(r.stdout, "Deleted tenant %s.\n", pos[0])
	return exitOK
}
