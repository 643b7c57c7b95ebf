package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/frostdev/frost/api"
)

// deploy runs `frost deploy NAME FILE.wasm`.
func (r *runner) deploy(ctx context.Context, args []string) int {
	c := r.newCommand("deploy", "NAME FILE.wasm [--assets DIR] [flags]", `
Deploy the WebAssembly module FILE.wasm as a new release of app NAME, creating
the app on its first deploy. The module is uploaded only if the server does not
have it yet. The new release serves new requests as soon as the command returns;
if the server refuses the module, nothing changes and the previous release keeps
serving.

NAME is 1 to 63 lower-case letters, digits and '-', starting with a letter; the
app is served at http://NAME.DOMAIN/.

A module is either an http-wasm handler (exports handle_request) or a WASI
command that speaks CGI (WAGI): for example GOOS=wasip1 GOARCH=wasm go build.

With --assets DIR, the regular files and directories under DIR are packed
into an archive (at most 64 MiB), uploaded unless the server has it, and shown
to every instance read-only at /assets: DIR/index.html is /assets/index.html.
DIR may hold nothing else: a symbolic link, a socket or a device is refused
before anything is uploaded. New assets make a new release.

Sizes are bytes or a number with a unit: 64MiB, 512KiB, 1GiB, 1048576, 64M
(K, M, G are powers of 1024; kB, MB, GB powers of 1000). A limit left out
takes the server's default.`)
	var (
		mode        string
		env         = envFlag{}
		memory      sizeFlag
		timeout     time.Duration
		concurrency int
		maxBody     sizeFlag
		fsSize      sizeFlag
		assetsDir   string
		idle        time.Duration
		bake        bool
		warm        int
	)
	c.fs.StringVar(&mode, "mode", "", "how instances live, a `MODE`: request (a fresh instance per request; the default) or session (a long-lived instance, frozen when idle)")
	c.fs.Var(env, "env", "set environment variable `K=V` (repeatable); merged into the app's environment")
	c.fs.Var(&memory, "memory", "memory limit of an instance, a `SIZE` such as 128MiB")
	c.fs.DurationVar(&timeout, "timeout", 0, "time limit of a request, a `DURATION` such as 30s")
	c.fs.IntVar(&concurrency, "concurrency", 0, "at most `N` requests in flight at once; beyond it the app answers 503")
	c.fs.Var(&maxBody, "max-body", "largest request body, a `SIZE`; beyond it the app answers 413")
	c.fs.Var(&fsSize, "fs", "size of an instance's writable file system, a `SIZE`")
	c.fs.StringVar(&assetsDir, "assets", "", "read-only files for every instance at /assets: the regular files and directories under `DIR`")
	c.fs.DurationVar(&idle, "idle", 0, "freeze the app to zero after this `DURATION` without requests (default: the server's --idle)")
	c.fs.BoolVar(&bake, "bake", false, "write the release's snapshot now instead of on its first idle period")
	c.fs.IntVar(&warm, "warm", 0, "in a cluster, keep the app ready (never idle-frozen) on its first `N` nodes in ring order: a shallow warm pool")
	pos, code, ok := c.parse(args, 2, 2)
	if !ok {
		return code
	}
	name, file := pos[0], pos[1]
	if code, ok := c.appName(name); !ok {
		return code
	}
	switch mode {
	case "", "request", "session":
	default:
		return c.usageError("--mode %q: want request or session", mode)
	}
	if timeout < 0 {
		return c.usageError("--timeout %v is negative", timeout)
	}
	if concurrency < 0 {
		return c.usageError("--concurrency %d is negative", concurrency)
	}
	if idle < 0 {
		return c.usageError("--idle %v is negative", idle)
	}
	if warm < 0 {
		return c.usageError("--warm %d is negative", warm)
	}
	cl, err := c.client(api.WithUploadProgress(progress(r.stderr, "uploading "+filepath.Base(file))))
	if err != nil {
		return c.failMsg(err.Error())
	}
	req := api.DeployRequest{
		Mode: mode,
		Idle: api.Duration(idle),
		Bake: bake,
		Warm: warm,
		Limits: api.Limits{
			MemoryBytes:  int64(memory),
			Timeout:      api.Duration(timeout),
			Concurrency:  concurrency,
			MaxBodyBytes: int64(maxBody),
			FSBytes:      int64(fsSize),
		},
	}
	if len(env) > 0 {
		req.Env = env
	}
	if assetsDir != "" {
		if req.Assets, err = cl.UploadAssets(ctx, assetsDir); err != nil {
			return c.failMsg(c.explainAssets(err, name, assetsDir))
		}
	}
	d, err := cl.DeployFile(ctx, name, file, req)
	if err != nil {
		return c.failMsg(c.explainDeploy(err, name, file))
	}

	tw := tabwriter.NewWriter(r.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Deployed %s v%d (release %s)\n", d.Name, d.Version, short(d.Release, 12))
	fmt.Fprintf(tw, "  shape\t%s\n", d.Shape)
	fmt.Fprintf(tw, "  mode\t%s\n", d.Mode)
	if rel, ok := findRelease(d, d.Release); ok {
		fmt.Fprintf(tw, "  module\tsha256:%s (%s)\n", short(rel.Module, 12), humanSize(rel.ModuleSize))
		if rel.Assets != "" {
			fmt.Fprintf(tw, "  assets\tsha256:%s (%s) at /assets\n", short(rel.Assets, 12), humanSize(rel.AssetsSize))
		}
	}
	fmt.Fprintf(tw, "  limits\t%s\n", formatLimits(d.Limits))
	fmt.Fprintf(tw, "  idle\tfrozen after %s without requests\n", time.Duration(d.Idle))
	if d.Warm > 0 {
		fmt.Fprintf(tw, "  warm\tkept ready on its first %d nodes\n", d.Warm)
	}
	if d.Snapshot != nil {
		fmt.Fprintf(tw, "  snapshot\tbaked (%s)\n", humanSize(d.Snapshot.Size))
	}
	fmt.Fprintf(tw, "  URL\t%s\n", d.URL)
	tw.Flush()
	if d.URL != "" {
		fmt.Fprintf(r.stdout, "\nTry it: curl %s\n", d.URL)
	}
	return exitOK
}

// explainDeploy adds to explain what a failed deploy means for the app.
func (c *command) explainDeploy(err error, name, file string) string {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Sprintf("%v: give the path of a .wasm file (for example from GOOS=wasip1 GOARCH=wasm go build -o app.wasm)", err)
	}
	msg := c.explain(err, "")
	var se *api.StatusError
	if errors.As(err, &se) && se.Err.Code != "" && se.Status != http.StatusUnauthorized {
		switch se.Status {
		case http.StatusUnprocessableEntity:
			msg = fmt.Sprintf("the server refused %s: %s", file, msg)
		case http.StatusRequestEntityTooLarge:
			msg = fmt.Sprintf("%s is too large for the server: %s", file, msg)
		}
		msg += fmt.Sprintf("\nNothing was changed: the previous release of %s, if any, keeps serving.", name)
	}
	return msg
}

// explainAssets says what a failure to pack or upload --assets DIR means.
func (c *command) explainAssets(err error, name, dir string) string {
	var se *api.StatusError
	var ue *api.UnreachableError
	var msg string
	switch {
	case errors.As(err, &ue), errors.Is(err, context.Canceled):
		return c.explain(err, "")
	case errors.As(err, &se):
		msg = c.explain(err, "")
		if se.Err.Code == "" || se.Status == http.StatusUnauthorized {
			return msg
		}
		if se.Status == http.StatusRequestEntityTooLarge {
			msg = fmt.Sprintf("the assets in %s are too large for the server: %s", dir, msg)
		}
	case errors.Is(err, fs.ErrNotExist):
		msg = fmt.Sprintf("--assets: %v: give the directory whose files the app reads at /assets", err)
	default:
		msg = err.Error() // PackAssets says which directory and what is wrong
	}
	return msg + fmt.Sprintf("\nNothing was changed: the previous release of %s, if any, keeps serving.", name)
}

// envFlag is a repeatable K=V flag.
type envFlag map[string]string

func (e envFlag) String() string {
	keys := make([]string, 0, len(e))
	for k := range e {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return strings.Join(keys, ",")
}

func (e envFlag) Set(s string) error {
	k, v, err := parseEnvPair(s)
	if err != nil {
		return err
	}
	e[k] = v
	return nil
}

// parseEnvPair splits "K=V" at the first '='.
func parseEnvPair(s string) (k, v string, err error) {
	k, v, ok := strings.Cut(s, "=")
	if !ok {
		return "", "", fmt.Errorf("%q: want KEY=VALUE", s)
	}
	if err := validEnvKey(k); err != nil {
		return "", "", err
	}
	if strings.IndexByte(v, 0) >= 0 {
		return "", "", fmt.Errorf("the value of %s contains a NUL byte", k)
	}
	return k, v, nil
}

func validEnvKey(k string) error {
	switch {
	case k == "":
		return errors.New("empty environment variable name: want KEY=VALUE")
	case strings.ContainsAny(k, "=\x00"):
		return fmt.Errorf("environment variable name %q contains '=' or a NUL byte", k)
	}
	return nil
}

func findRelease(d api.AppDetail, id string) (api.Release, bool) {
	for _, rel := range d.Releases {
		if rel.ID == id {
			return rel, true
		}
	}
	return api.Release{}, false
}

// formatLimits writes limits on one line; zero fields are the server's defaults.
func formatLimits(l api.Limits) string {
	var parts []string
	add := func(name string, set bool, value string) {
		if set {
			parts = append(parts, name+" "+value)
		}
	}
	add("memory", l.MemoryBytes > 0, FormatSize(l.MemoryBytes))
	add("timeout", l.Timeout > 0, time.Duration(l.Timeout).String())
	add("concurrency", l.Concurrency > 0, fmt.Sprint(l.Concurrency))
	add("max body", l.MaxBodyBytes > 0, FormatSize(l.MaxBodyBytes))
	add("fs", l.FSBytes > 0, FormatSize(l.FSBytes))
	if len(parts) == 0 {
		return "server defaults"
	}
	return strings.Join(parts, ", ")
}

// short cuts s to n bytes.
func short(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
