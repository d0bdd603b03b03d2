// Command etcd is a thin wrapper that builds the upstream etcd server from Go modules
// for the OrderFlow envtest harness (tests/envtest). See tests/envtest/README.md.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
