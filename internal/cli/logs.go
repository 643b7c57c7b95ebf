package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/frostdev/frost/api"
)

// logs runs `frost logs NAME`.
func (r *runner) logs(ctx context.Context, args []string) int {
	c := r.newCommand("logs", "NAME [-f] [--tail N]", `
Print app NAME's most recent log lines as TIME STREAM MESSAGE, where STREAM is
stdout or stderr (the guest's), guest (its log calls) or frost (the platform's
own lines about the app). With -f, keep printing new lines until Ctrl-C.`)
	var follow bool
	c.fs.BoolVar(&follow, "f", false, "follow: keep printing new lines until Ctrl-C")
	c.fs.BoolVar(&follow, "follow", false, "same as -f")
	tail := c.fs.Int("tail", 100, "print the last `N` lines first")
	asJSON := c.fs.Bool("json", false, "print each line as the JSON object the control API sends")
	pos, code, ok := c.parse(args, 1, 1)
	if !ok {
		return code
	}
	name := pos[0]
	if code, ok := c.appName(name); !ok {
		return code
	}
	if *tail < 0 {
		return c.usageError("--tail %d is negative", *tail)
	}
	cl, err := c.client()
	if err != nil {
		return c.failMsg(err.Error())
	}
	err = cl.Logs(ctx, name, *tail, follow, func(l api.LogLine) error {
		if *asJSON {
			b, err := json.Marshal(l)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(r.stdout, "%s\n", b)
			return err
		}
		msg := strings.TrimRight(l.Message, "\n")
		if l.Level != "" {
			msg = l.Level + " " + msg
		}
		_, err := fmt.Fprintf(r.stdout, "%s %-6s %s\n", l.Time.In(r.loc).Format("2006-01-02T15:04:05.000Z07:00"), l.Stream, msg)
		return err
	})
	switch {
	case follow && errors.Is(err, context.Canceled) && ctx.Err() != nil:
		return exitOK // Ctrl-C ends -f
	case err != nil:
		return c.fail(err, name)
	case follow:
		return c.failMsg("the server ended the stream (did it stop?); run the command again to resume")
	}
	return exitOK
}
