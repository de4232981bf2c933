package harness

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
)

// TestHarness is the k8s-harness command: built with `go test -c`, run with
// `-test.run '^TestHarness$' -test.timeout 0 -args --kubeconfig F ...`. It runs until SIGTERM or
// SIGINT; SIGUSR1 restarts the apiserver on the same etcd.
func TestHarness(t *testing.T) {
	nodes, out, kubeconfig, signerKubeconfig, signerSA, threshold, poll, restartDown := Flags()
	if kubeconfig == "" {
		t.Skip("no --kubeconfig: not running as the harness")
	}
	dir, err := os.MkdirTemp("", "k8s-harness")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	h, err := Start(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := WriteKubeconfig(kubeconfig, "admin", h.Admin); err != nil {
		t.Fatal(err)
	}
	if signerKubeconfig != "" {
		ns, name, ok := strings.Cut(signerSA, "/")
		if !ok {
			t.Fatalf("--signer-sa %q: want NAMESPACE/NAME", signerSA)
		}
		// The x509 authenticator takes the CN and O as given, so this is exactly the
		// identity RBAC sees for a token of that service account.
		cfg, err := h.UserConfig("system:serviceaccount:"+ns+":"+name,
			"system:serviceaccounts", "system:serviceaccounts:"+ns)
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteKubeconfig(signerKubeconfig, "signer", cfg); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.StartCleaner(ctx, threshold, poll); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < nodes; i++ {
		if _, err := h.StartNode(ctx, fmt.Sprintf("node-%d", i), out); err != nil {
			t.Fatal(err)
		}
	}
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
	fmt.Printf("ready %s\n", kubeconfig)
	for s := range sig {
		if s != syscall.SIGUSR1 {
			t.Logf("%v: tearing down", s)
			return
		}
		t.Logf("SIGUSR1: restarting kube-apiserver after %v", restartDown)
		h.StopAPIServer()
		fmt.Println("apiserver stopped")
		waitOrSignal(restartDown)
		if err := h.RestartAPIServer(t); err != nil {
			t.Fatal(err)
		}
		fmt.Println("apiserver restarted")
	}
}
