// Command etcd is the etcd server Frost's tests and clusters run, built from
// the pinned go.etcd.io/etcd/server/v3 module by scripts/etcd.sh. It is a
// separate module so that Frost itself does not depend on the etcd server.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
