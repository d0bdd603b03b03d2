// Command kube-apiserver is a thin wrapper that builds the upstream kube-apiserver from Go modules
// for the OrderFlow envtest harness (tests/envtest). It mirrors cmd/kube-apiserver/apiserver.go.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics registration
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric registration
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	command := app.NewAPIServerCommand()
	code := cli.Run(command)
	os.Exit(code)
}
