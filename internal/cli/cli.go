// Package cli implements the frost command: `frost server` and the verbs that
// talk to a server's control API (deploy, apps, app, rm, logs, env). Each verb
// parses its own flags with one flag.FlagSet, lets flags follow positional
// arguments, and turns every error into a sentence that says what to do next.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/agent"
)

// DefaultAPI is the control API the CLI talks to when neither --api nor
// FROST_API says otherwise.
const DefaultAPI = "http://127.0.0.1:7070"

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// Run runs the frost command with args (without the program name) and returns
// its exit code: 0 ok, 1 failure, 2 usage error. It stops when ctx is done
// (the main package cancels it on Ctrl-C).
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	r := &runner{
		stdout:  stdout,
		stderr:  stderr,
		getenv:  os.Getenv,
		dataDir: DefaultDataDir,
		now:     time.Now,
		loc:     time.Local,
	}
	return r.run(ctx, args)
}

// runner carries what a verb needs from the process, so tests can run verbs
// with their own environment, clock and HTTP client.
type runner struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	dataDir        func() string // the data directory when --data is not given
	now            func() time.Time
	loc            *time.Location // for printed times
	hc             *http.Client   // nil: http.DefaultClient
	stdin          io.Reader      // what sandbox exec and cp - read; nil: os.Stdin
}

// verb is one frost sub-command.
type verb struct {
	name  string
	short string // one line for `frost help`
	run   func(r *runner, ctx context.Context, args []string) int
}

// verbs lists the sub-commands in the order `frost help` shows them. (A
// function, not a variable, since help refers back to it.)
func verbs() []verb {
	return []verb{
		{"server", "run the Frost server: control API and app traffic", func(r *runner, ctx context.Context, args []string) int {
			return serverCmd(ctx, args, r.stdout, r.stderr)
		}},
		{"deploy", "deploy a Wasm module as a new release of an app", (*runner).deploy},
		{"apps", "list apps", (*runner).apps},
		{"app", "show an app: URL, release, limits, env keys, counters", (*runner).app},
		{"rm", "delete an app and all its releases", (*runner).rm},
		{"freeze", "freeze an app to zero now: snapshot baked, instances and memory gone", (*runner).freeze},
		{"logs", "print an app's logs, or follow them with -f", (*runner).logs},
		{"env", "set, unset or list an app's environment", (*runner).env},
		{"sandbox", "agent sandboxes: create, exec, files, pause, resume, ls, kill", (*runner).sandbox},
		{"template", "sandbox templates: build (boot, run setup, checkpoint), ls", (*runner).template},
		{"tenant", "tenants (admin only): create (prints the tenant's token), ls, rm", (*runner).tenant},
		{"status", "show the server's role and its shared storage: reachable, upload backlog, cache (every node's, through a gateway)", (*runner).status},
		{"version", "print the versions of this client and of the server", (*runner).version},
		{"help", "print help on frost or on one verb", (*runner).help},
	}
}

func findVerb(name string) *verb {
	for _, v := range verbs() {
		if v.name == name {
			return &v
		}
	}
	return nil
}

func (r *runner) run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		r.usage(r.stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help":
		r.usage(r.stdout)
		return exitOK
	case "-v", "-version", "--version":
		name = "version"
	case "agent":
		// Not a user's verb: what Frost runs inside an agent sandbox to
		// reach its files and ports (package agent).
		return agent.Main(args[1:], os.Stdin, r.stdout, r.stderr)
	}
	v := findVerb(name)
	if v == nil {
		fmt.Fprintf(r.stderr, "frost: unknown verb %q; run `frost help` for the list\n", name)
		return exitUsage
	}
	return v.run(r, ctx, args[1:])
}

func (r *runner) usage(w io.Writer) {
	fmt.Fprint(w, `frost runs sandboxed apps: deploy a WebAssembly module, get a URL.

Usage:
  frost VERB [ARGUMENTS] [FLAGS]

Verbs:
`)
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	for _, v := range verbs() {
		fmt.Fprintf(tw, "  %s\t%s\n", v.name, v.short)
	}
	tw.Flush()
	fmt.Fprintf(w, `
Verbs that talk to a server take:
  --api URL    its control API (default $FROST_API, else %s)
  --token T    the admin token (default $FROST_TOKEN, else DATA/%s)
  --data DIR   the data directory holding the token (default %s)

Run `+"`frost VERB -h`"+` for a verb's arguments and flags.
`, DefaultAPI, AdminTokenFile, r.dataDir())
}

// help runs `frost help [VERB]`.
func (r *runner) help(ctx context.Context, args []string) int {
	if len(args) == 0 {
		r.usage(r.stdout)
		return exitOK
	}
	v := findVerb(args[0])
	if v == nil || v.name == "help" {
		if v == nil {
			fmt.Fprintf(r.stderr, "frost help: unknown verb %q\n", args[0])
			r.usage(r.stderr)
			return exitUsage
		}
		r.usage(r.stdout)
		return exitOK
	}
	return v.run(r, ctx, append(args[1:len(args):len(args)], "-h"))
}

// command is one run of a verb: its flags, how it reaches the server and how
// it reports errors.
type command struct {
	r        *runner
	name     string // "deploy", "env set"
	synopsis string // after "frost NAME "
	about    string // what the verb does, for -h
	fs       *flag.FlagSet

	apiURL, token, data string // the connection flags

	// Set by client: where the server and the token came from, for messages.
	base      string
	tokenFrom string
	tokenFile string
}

// newCommand returns a command with its FlagSet and the connection flags
// (--api, --token, --data) every verb takes.
func (r *runner) newCommand(name, synopsis, about string) *command {
	c := &command{r: r, name: name, synopsis: synopsis, about: about}
	c.fs = flag.NewFlagSet("frost "+name, flag.ContinueOnError)
	c.fs.SetOutput(io.Discard)
	c.fs.StringVar(&c.apiURL, "api", "", "control API `URL` (default $FROST_API, else "+DefaultAPI+")")
	c.fs.StringVar(&c.token, "token", "", "admin token `T` (default $FROST_TOKEN, else DATA/"+AdminTokenFile+")")
	c.fs.StringVar(&c.data, "data", "", "server data `DIR` to read "+AdminTokenFile+" from (default "+r.dataDir()+")")
	return c
}

// parse parses args, flags and positionals in any order ("--" ends flags),
// and checks that between min and max positionals remain (max < 0: no
// limit). When it returns ok false, the verb returns code: 0 after -h, 2 after
// a usage error (already printed).
func (c *command) parse(args []string, min, max int) (pos []string, code int, ok bool) {
	pos, err := parseInterspersed(c.fs, args)
	if errors.Is(err, flag.ErrHelp) {
		c.printUsage(c.r.stdout)
		return nil, exitOK, false
	}
	if err != nil {
		return nil, c.usageError("%v", err), false
	}
	switch {
	case len(pos) < min:
		return nil, c.usageError("missing arguments"), false
	case max >= 0 && len(pos) > max:
		return nil, c.usageError("too many arguments: %s", strings.Join(pos[max:], " ")), false
	}
	return pos, 0, true
}

// parseInterspersed moves every flag (and its value) in front of the
// positional arguments, so `frost deploy NAME FILE --mode session` works,
// then parses the flags. Everything after "--" is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			continue // Parse reports it
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			continue
		}
		if i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	if err := fs.Parse(flags); err != nil {
		return nil, err
	}
	return pos, nil
}

// usageError prints a usage error and returns exitUsage.
func (c *command) usageError(format string, a ...any) int {
	fmt.Fprintf(c.r.stderr, "frost %s: %s\nUsage: frost %s %s\nRun `frost %s -h` for help.\n",
		c.name, fmt.Sprintf(format, a...), c.name, c.synopsis, c.name)
	return exitUsage
}

func (c *command) printUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: frost %s %s\n\n%s\n", c.name, c.synopsis, strings.TrimSpace(c.about))
	var own, conn []*flag.Flag
	c.fs.VisitAll(func(f *flag.Flag) {
		switch f.Name {
		case "api", "token", "data":
			conn = append(conn, f)
		default:
			own = append(own, f)
		}
	})
	if len(own) > 0 {
		fmt.Fprintln(w, "\nFlags:")
		printFlags(w, own)
	}
	fmt.Fprintln(w, "\nConnection flags:")
	printFlags(w, conn)
}

func printFlags(w io.Writer, fl []*flag.Flag) {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	for _, f := range fl {
		arg, usage := flag.UnquoteUsage(f)
		dash := "--"
		if len(f.Name) == 1 {
			dash = "-"
		}
		if arg != "" {
			arg = " " + arg
		}
		switch f.DefValue {
		case "", "0", "false", "0s":
		default:
			usage += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(tw, "  %s%s%s\t%s\n", dash, f.Name, arg, usage)
	}
	tw.Flush()
}

// appName checks a positional app name; a bad one is a usage error.
func (c *command) appName(name string) (int, bool) {
	if err := api.ValidAppName(name); err != nil {
		return c.usageError("%v", err), false
	}
	return 0, true
}

// client returns a client of the server the flags and environment point at,
// with the token found by itself: --token, else $FROST_TOKEN, else the
// admin.token file in --data or the default data directory.
// appClient parses exactly one NAME argument, checks it, and returns it with
// a client; on failure ok is false and code is the exit code.
func (c *command) appClient(args []string) (name string, cl *api.Client, code int, ok bool) {
	pos, code, ok := c.parse(args, 1, 1)
	if !ok {
		return "", nil, code, false
	}
	name = pos[0]
	if code, ok := c.appName(name); !ok {
		return "", nil, code, false
	}
	cl, err := c.client()
	if err != nil {
		return "", nil, c.failMsg(err.Error()), false
	}
	return name, cl, exitOK, true
}

func (c *command) client(opts ...api.ClientOption) (*api.Client, error) {
	c.base = c.apiURL
	if c.base == "" {
		c.base = c.r.getenv("FROST_API")
	}
	if c.base == "" {
		c.base = DefaultAPI
	}
	dir := c.data
	if dir == "" {
		dir = c.r.dataDir()
	}
	c.tokenFile = filepath.Join(dir, AdminTokenFile)
	tok := c.token
	c.tokenFrom = "--token"
	if tok == "" {
		tok, c.tokenFrom = c.r.getenv("FROST_TOKEN"), "$FROST_TOKEN"
	}
	if tok == "" {
		b, err := os.ReadFile(c.tokenFile)
		switch {
		case errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("no admin token: found no $FROST_TOKEN, no --token and no %s; "+
				"set FROST_TOKEN or --token to the token in the server's DATA/%s, or pass --data DIR "+
				"(a server started with `frost server` writes it on first start)", c.tokenFile, AdminTokenFile)
		case err != nil:
			return nil, fmt.Errorf("read the admin token: %w; set FROST_TOKEN or --token instead", err)
		}
		tok, c.tokenFrom = strings.TrimSpace(string(b)), c.tokenFile
		if tok == "" {
			return nil, fmt.Errorf("%s is empty: set FROST_TOKEN or --token to the server's admin token", c.tokenFile)
		}
	}
	cl := api.NewClient(c.base, tok, append(clientOpts(c.r), opts...)...)
	c.base = cl.BaseURL()
	return cl, nil
}

// fail prints err as a sentence that says what to do next and returns
// exitFailure. app names the app the verb was about ("" if none), so that a
// 404 can say which app is missing.
func (c *command) fail(err error, app string) int {
	return c.failMsg(c.explain(err, app))
}

func (c *command) failMsg(msg string) int {
	fmt.Fprintf(c.r.stderr, "frost %s: %s\n", c.name, msg)
	return exitFailure
}

// explain turns an error from the client into a message for the user.
func (c *command) explain(err error, app string) string {
	var se *api.StatusError
	var ue *api.UnreachableError
	switch {
	case errors.Is(err, context.Canceled):
		return "interrupted"
	case errors.As(err, &ue):
		return ue.Error()
	case !errors.As(err, &se):
		return err.Error()
	}
	msg := se.Error()
	switch {
	case se.Status == http.StatusForbidden && se.Err.Code == api.CodeForbidden:
		// A tenant's token: valid, but not for this.
		return se.Err.Message + " (the token is a tenant's)"
	case se.Status == http.StatusUnauthorized || se.Status == http.StatusForbidden:
		return fmt.Sprintf("the server at %s refused the token from %s: set FROST_TOKEN or --token to the token in the server's DATA/%s (on this machine: %s)",
			c.base, c.tokenFrom, AdminTokenFile, c.tokenFile)
	case se.Err.Code == "":
		// Not a Frost error body: some other server answers at this address.
		return fmt.Sprintf("the server at %s answered %s: is FROST_API (or --api) the address of a frost server's control API?", c.base, msg)
	case se.Status == http.StatusNotFound && app != "":
		return fmt.Sprintf("no app named %q; list apps with `frost apps`", app)
	case se.Err.Code == api.CodeUnavailable:
		return msg + "; try again once the cluster's etcd answers"
	case se.Status == http.StatusServiceUnavailable:
		return msg + "; the server is busy or starting: try again shortly"
	case se.Status >= 500:
		return msg + "; the server failed: see its log (the output of `frost server`) and try again"
	}
	return msg
}

// version runs `frost version`.
func (r *runner) version(ctx context.Context, args []string) int {
	c := r.newCommand("version", "", "Print the version of this client and, if it answers, of the server.")
	if _, code, ok := c.parse(args, 0, 0); !ok {
		return code
	}
	fmt.Fprintf(r.stdout, "client  frost %s (%s %s/%s)\n", clientVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	cl, err := c.client()
	if err != nil {
		// Health needs no token.
		cl = api.NewClient(c.base, "", clientOpts(r)...)
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	h, err := cl.Health(ctx)
	if err != nil {
		fmt.Fprintf(r.stdout, "server  %s\n", c.explain(err, ""))
		return exitOK
	}
	fmt.Fprintf(r.stdout, "server  frost %s at %s (%s; apps at http://NAME.%s%s/)\n", h.Version, cl.BaseURL(), h.Status, h.Domain, portOf(h.HTTP))
	return exitOK
}

// portOf returns ":PORT" of a listen address, or "" for port 80 or none.
func portOf(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" || port == "80" {
		return ""
	}
	return ":" + port
}

func clientOpts(r *runner) []api.ClientOption {
	if r.hc == nil {
		return nil
	}
	return []api.ClientOption{api.WithHTTPClient(r.hc)}
}

// clientVersion is the version of this binary: the package's version
// variable when set at link time (see server.go), else the module version,
// else "dev" with the VCS revision when known.
func clientVersion() string {
	if version != "" && version != "dev" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return "dev-" + s.Value[:12]
		}
	}
	return "dev"
}
