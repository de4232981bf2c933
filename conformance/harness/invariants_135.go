//go:build k8s135

package harness

import kubeapiservertesting "k8s.io/kubernetes/cmd/kube-apiserver/app/testing"

// 1.35 has no invariant checks.
func disableInvariantChecks(*kubeapiservertesting.TestServerInstanceOptions) {}
