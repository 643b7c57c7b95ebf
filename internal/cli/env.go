package cli

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/frostdev/frost/api"
)

// env runs `frost env set|unset|ls`.
func (r *runner) env(ctx context.Context, args []string) int {
	sub := ""
	if len(args) > 0 {
		sub = args[0]
	}
	switch sub {
	case "set":
		return r.envSet(ctx, args[1:])
	case "unset":
		return r.envUnset(ctx, args[1:])
	case "ls", "list":
		return r.envList(ctx, args[1:])
	case "-h", "-help", "--help":
		r.envUsage(r.stdout)
		return exitOK
	case "":
		fmt.Fprintln(r.stderr, "frost env: missing sub-command")
	default:
		fmt.Fprintf(r.stderr, "frost env: unknown sub-command %q\n", sub)
	}
	r.envUsage(r.stderr)
	return exitUsage
}

func (r *runner) envUsage(w io.Writer) {
	fmt.Fprint(w, `Usage:
  frost env set NAME KEY=VALUE...   set variables of app NAME
  frost env unset NAME KEY...       remove variables of app NAME
  frost env ls NAME                 list the variable names of app NAME (values are never shown)

The environment belongs to the app, not to a release: a change needs no
redeploy, and instances started after it see it.
Run `+"`frost env set -h`"+` (or unset, ls) for flags.
`)
}

func (r *runner) envSet(ctx context.Context, args []string) int {
	c := r.newCommand("env set", "NAME KEY=VALUE...", "Set environment variables of app NAME; other variables stay as they are. Instances started after the change see it.")
	pos, code, ok := c.parse(args, 2, -1)
	if !ok {
		return code
	}
	name := pos[0]
	if code, ok := c.appName(name); !ok {
		return code
	}
	set := map[string]string{}
	for _, p := range pos[1:] {
		k, v, err := parseEnvPair(p)
		if err != nil {
			return c.usageError("%v", err)
		}
		set[k] = v
	}
	return c.patchEnv(ctx, name, api.EnvRequest{Set: set}, "set", keysOf(set))
}

func (r *runner) envUnset(ctx context.Context, args []string) int {
	c := r.newCommand("env unset", "NAME KEY...", "Remove environment variables of app NAME. Removing a variable that is not set is not an error.")
	pos, code, ok := c.parse(args, 2, -1)
	if !ok {
		return code
	}
	name := pos[0]
	if code, ok := c.appName(name); !ok {
		return code
	}
	for _, k := range pos[1:] {
		if err := validEnvKey(k); err != nil {
			return c.usageError("%v", err)
		}
	}
	return c.patchEnv(ctx, name, api.EnvRequest{Unset: pos[1:]}, "unset", pos[1:])
}

func (c *command) patchEnv(ctx context.Context, name string, req api.EnvRequest, did string, keys []string) int {
	cl, err := c.client()
	if err != nil {
		return c.failMsg(err.Error())
	}
	a, err := cl.SetEnv(ctx, name, req)
	if err != nil {
		return c.fail(err, name)
	}
	fmt.Fprintf(c.r.stdout, "%s: %s %s (env version %d); instances started from now on see the change.\n",
		a.Name, did, strings.Join(keys, ", "), a.EnvVersion)
	return exitOK
}

func (r *runner) envList(ctx context.Context, args []string) int {
	c := r.newCommand("env ls", "NAME [--json]", "List the names of app NAME's environment variables, one a line. Values are never shown.")
	asJSON := c.fs.Bool("json", false, "print the names as a JSON array")
	name, cl, code, ok := c.appClient(args)
	if !ok {
		return code
	}
	d, err := cl.App(ctx, name)
	if err != nil {
		return c.fail(err, name)
	}
	keys := append([]string{}, d.EnvKeys...)
	sort.Strings(keys)
	if *asJSON {
		return c.printJSON(keys)
	}
	for _, k := range keys {
		fmt.Fprintln(r.stdout, k)
	}
	return exitOK
}

func keysOf(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
