//go:build !k8s135

package harness

import kubeapiservertesting "k8s.io/kubernetes/cmd/kube-apiserver/app/testing"

// 1.37's TearDownFn scrapes metrics for invariants; a harness that stops the server on
// purpose does not want that.
func disableInvariantChecks(o *kubeapiservertesting.TestServerInstanceOptions) {
	o.DisableInvariantChecks = true
}
