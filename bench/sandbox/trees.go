package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/tree"
)

// treeFigures are copies of a directory tree into and out of a sandbox:
// through the tree routes (PUT/GET .../files/archive: the agent unpacks
// staged, whole or not at all) and, as the baseline, the way to do it
// before them: tar piped through an exec (`tar x` reading the exec's
// input, `tar c` writing its output).
type treeFigures struct {
	files           int
	bytes           int64
	in, out         []time.Duration
	inExec, outExec []time.Duration
}

// measureTrees copies the tree under dir into sandbox id and back n
// times each way, alternating with the exec baseline.
func measureTrees(ctx context.Context, c *api.Client, id, dir string, n int) treeFigures {
	var packed bytes.Buffer
	st, err := tree.Pack(dir, &packed)
	if err != nil {
		log.Fatal(err)
	}
	f := treeFigures{files: st.Files, bytes: st.Bytes}
	timed := func(into *[]time.Duration, fn func() error) {
		t0 := time.Now()
		if err := fn(); err != nil {
			log.Fatal(err)
		}
		*into = append(*into, time.Since(t0))
	}
	for i := range n {
		dst := fmt.Sprintf("/root/trees/%d", i)
		timed(&f.in, func() error {
			_, err := c.WriteTree(ctx, id, dst+"/api", bytes.NewReader(packed.Bytes()))
			return err
		})
		timed(&f.inExec, func() error {
			return tarExec(ctx, c, id, bytes.NewReader(packed.Bytes()), "sh", "-c", "mkdir -p "+dst+"/exec && tar x -C "+dst+"/exec")
		})
		timed(&f.out, func() error {
			rc, err := c.ReadTree(ctx, id, dst+"/api")
			if err != nil {
				return err
			}
			defer rc.Close()
			_, err = io.Copy(io.Discard, rc)
			return err
		})
		timed(&f.outExec, func() error { return tarExec(ctx, c, id, nil, "tar", "c", "-C", dst+"/exec", ".") })
	}
	run(ctx, c, id, "rm", "-rf", "/root/trees")
	return f
}

// tarExec runs the baseline's tar in sandbox id, its input from stdin
// (nil: none), its output dropped.
func tarExec(ctx context.Context, c *api.Client, id string, stdin io.Reader, cmd ...string) error {
	var errb bytes.Buffer
	code, err := c.Exec(ctx, id, api.ExecRequest{Cmd: cmd}, stdin, io.Discard, &errb)
	if err == nil && code != 0 {
		err = fmt.Errorf("%v: exit %d: %s", cmd, code, errb.String())
	}
	return err
}
