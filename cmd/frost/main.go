// Command frost runs Frost: `frost server` serves apps, and the other verbs
// (deploy, apps, app, rm, logs, env) drive a server's control API. All of it
// lives in internal/cli; `frost help` lists the verbs.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/frostdev/frost/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}
