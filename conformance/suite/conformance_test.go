package suite

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/watch"
)

var keyTypes = []string{"RSA3072", "RSA4096", "ECDSAP256", "ECDSAP384", "ECDSAP521", "ED25519"}

// firstPCR remembers a request from the first case, for the cleaner case.
var firstPCR struct{ ns, name string }

// checkBundle verifies a kubelet-written credential bundle: one PKCS#8 key, then the chain
// (leaf first) that verifies against the published ClusterTrustBundle, the leaf's key is the
// bundle's key, and its only URI SAN is the pod's SPIFFE ID.
func checkBundle(t *testing.T, file, ns, sa string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(file); err == nil && fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: mode %v, want 0600", file, fi.Mode().Perm())
	}
	blk, rest := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		t.Fatalf("%s: first block is not a PRIVATE KEY", file)
	}
	key, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := parseCerts(rest)
	if err != nil || len(chain) == 0 {
		t.Fatalf("%s: chain: %v (%d certificates)", file, err, len(chain))
	}
	leaf := chain[0]
	type pub interface{ Equal(crypto.PublicKey) bool }
	var kp crypto.PublicKey
	switch k := key.(type) {
	case *rsa.PrivateKey:
		kp = &k.PublicKey
	case *ecdsa.PrivateKey:
		kp = &k.PublicKey
	case ed25519.PrivateKey:
		kp = k.Public()
	}
	if p, ok := kp.(pub); !ok || !p.Equal(leaf.PublicKey) {
		t.Errorf("%s: the leaf's public key is not the bundle's key", file)
	}
	roots, _ := trustBundle(t)
	rp, ip := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range roots {
		rp.AddCert(r)
	}
	for _, c := range chain[1:] {
		ip.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: rp, Intermediates: ip,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("%s: does not verify against %s: %v", file, ctbName, err)
	}
	want := fmt.Sprintf("spiffe://%s/ns/%s/sa/%s", trustDomain, ns, sa)
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != want {
		t.Errorf("%s: URI SANs %v, want exactly [%s]", file, leaf.URIs, want)
	}
	return leaf
}

// pcrsFor lists the requests for ns/pod.
func pcrsFor(t *testing.T, ns, pod string) []unstructured.Unstructured {
	t.Helper()
	l, err := E.dyn.Resource(E.pcrGVR()).Namespace(ns).List(context.Background(),
		metav1.ListOptions{FieldSelector: "spec.podName=" + pod})
	if err != nil {
		t.Fatal(err)
	}
	return l.Items
}

func TestIssuance(t *testing.T) {
	const ns, sa = "issue", "app"
	for i, kt := range keyTypes {
		t.Run(kt, func(t *testing.T) {
			pod := "p-" + strings.ToLower(kt)
			createPod(t, ns, pod, sa, fmt.Sprintf("node-%d", i%2), source{volume: "cert", keyType: kt})
			v := waitVolume(t, ns, pod, "cert-0", wait)
			if v.State != "issued" {
				t.Fatalf("state %s reason %s message %s", v.State, v.Reason, v.Message)
			}
			checkBundle(t, v.File, ns, sa)
			// The key carrier the real kubelet of this release sends.
			reqs := pcrsFor(t, ns, pod)
			if len(reqs) == 0 {
				t.Fatal("no PodCertificateRequest for the pod")
			}
			spec := reqs[0].Object["spec"].(map[string]any)
			_, stub := spec["stubPKCS10Request"]
			_, pkix := spec["pkixPublicKey"]
			if E.pcrVersion == "v1" && (!stub || pkix) {
				t.Errorf("v1 request: stubPKCS10Request %v pkixPublicKey %v, want the stub only", stub, pkix)
			}
			// Only 1.35 is run without v1: its kubelet sends pkix + proof.
			if E.pcrVersion == "v1beta1" && (stub || !pkix) {
				t.Errorf("v1beta1 request: stubPKCS10Request %v pkixPublicKey %v, want pkix (1.35 kubelet)", stub, pkix)
			}
			t.Logf("%s: carrier stub=%v pkix=%v", E.pcrVersion, stub, pkix)
			if i == 0 {
				firstPCR.ns, firstPCR.name = ns, reqs[0].GetName()
			}
		})
	}
}

func TestDenied(t *testing.T) {
	const ns, sa = "deny", "app"
	t.Run("UnknownUserAnnotation", func(t *testing.T) {
		createPod(t, ns, "annotated", sa, "node-0", source{volume: "cert", keyType: "ED25519",
			annotations: map[string]string{"example.com/spiffe-path": "/admin"}})
		v := waitVolume(t, ns, "annotated", "cert-0", wait)
		if v.State != "denied" || v.Reason != "UnknownUserAnnotation" {
			t.Fatalf("got %+v, want denied UnknownUserAnnotation", v)
		}
	})
	t.Run("KeyTypeExcluded", func(t *testing.T) {
		replaceMain(t, "--key-types", "ECDSAP256,ED25519")
		defer replaceMain(t)
		createPod(t, ns, "rsa", sa, "node-1", source{volume: "cert", keyType: "RSA3072"})
		v := waitVolume(t, ns, "rsa", "cert-0", wait)
		if v.State != "denied" || v.Reason != "UnsupportedKeyType" {
			t.Fatalf("got %+v, want denied UnsupportedKeyType", v)
		}
		// An allowed type in the same pod spec shape is still issued.
		createPod(t, ns, "ec", sa, "node-1", source{volume: "cert", keyType: "ECDSAP256"})
		if v := waitVolume(t, ns, "ec", "cert-0", wait); v.State != "issued" {
			t.Fatalf("ECDSAP256: %+v", v)
		}
	})
}

// workload runs podcert-workload with args; returns the process.
func workload(t *testing.T, name string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	log := filepath.Join(E.dir, "workload-"+name+".log")
	f, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	c := exec.Command(E.workloadBin, args...)
	c.Stdout, c.Stderr = f, f
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return c, log
}

func TestMTLS(t *testing.T) {
	if E.workloadBin == "" {
		t.Skip("WORKLOAD_BIN not set")
	}
	createPod(t, "mtls-a", "server", "server", "node-0", source{volume: "cert", keyType: "ECDSAP256"})
	createPod(t, "mtls-b", "client", "client", "node-1", source{volume: "cert", keyType: "ED25519"})
	sv := waitVolume(t, "mtls-a", "server", "cert-0", wait)
	cv := waitVolume(t, "mtls-b", "client", "cert-0", wait)
	if sv.State != "issued" || cv.State != "issued" {
		t.Fatalf("server %+v client %+v", sv, cv)
	}
	_, bundle := trustBundle(t)
	tb := filepath.Join(E.dir, "trust-bundle.pem")
	if err := os.WriteFile(tb, []byte(bundle), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort())
	srv, slog := workload(t, "server", "--listen", addr, "--credential-bundle", sv.File, "--trust-bundle", tb,
		"--allow-spiffe-id", "spiffe://cluster.local/ns/mtls-b/sa/client")
	defer func() { srv.Process.Signal(syscall.SIGTERM); srv.Wait() }()
	call := func(allow string) error {
		var err error
		for i := 0; i < 50; i++ {
			c := exec.Command(E.workloadBin, "--connect", addr, "--once", "--credential-bundle", cv.File,
				"--trust-bundle", tb, "--allow-spiffe-id", allow)
			var out []byte
			out, err = c.CombinedOutput()
			if err == nil {
				return nil
			}
			if !strings.Contains(string(out), "onnection refused") {
				return fmt.Errorf("%v: %s", err, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
		return err
	}
	t.Run("exchange", func(t *testing.T) {
		if err := call("spiffe://cluster.local/ns/mtls-a/sa/server"); err != nil {
			t.Fatalf("client: %v; server log:\n%s", err, tail(slog))
		}
		// The server logs after the client has its answer: give the line a moment to land
		// (a CI run on a busy machine read the log before it did).
		want := "exchange ok peer=spiffe://cluster.local/ns/mtls-b/sa/client"
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(tail(slog), want) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if !strings.Contains(tail(slog), want) {
			t.Errorf("server did not log the exchange:\n%s", tail(slog))
		}
	})
	t.Run("wrong-peer-refused", func(t *testing.T) {
		if err := call("spiffe://cluster.local/ns/mtls-a/sa/other"); err == nil {
			t.Fatal("a client that allows only another ID accepted the server")
		}
	})
}

// statusWrites watches every PodCertificateRequest from now on and counts, per request, the
// events whose status differs from the previous one.
type statusWrites struct {
	mu     sync.Mutex
	last   map[string]any
	writes map[string]int
	stop   func()
}

func watchStatusWrites(t *testing.T) *statusWrites {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w, err := E.dyn.Resource(E.pcrGVR()).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sw := &statusWrites{last: map[string]any{}, writes: map[string]int{}, stop: func() { cancel(); w.Stop() }}
	go func() {
		for ev := range w.ResultChan() {
			u, ok := ev.Object.(*unstructured.Unstructured)
			if !ok || ev.Type == watch.Deleted {
				continue
			}
			k := u.GetNamespace() + "/" + u.GetName()
			st := u.Object["status"]
			sw.mu.Lock()
			if prev, seen := sw.last[k]; (seen && !reflect.DeepEqual(prev, st)) || (!seen && st != nil && len(st.(map[string]any)) > 0) {
				sw.writes[k]++
			}
			sw.last[k] = st
			sw.mu.Unlock()
		}
	}()
	return sw
}

func leaseHolder(t *testing.T) string {
	l, err := E.kc.CoordinationV1().Leases(signerNS).Get(context.Background(), "podcert-signer", metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

func burst(t *testing.T, ns, prefix string, n int) []string {
	var pods []string
	for i := 0; i < n; i++ {
		p := fmt.Sprintf("%s-%d", prefix, i)
		createPod(t, ns, p, "app", fmt.Sprintf("node-%d", i%2), source{volume: "cert", keyType: keyTypes[i%len(keyTypes)]})
		pods = append(pods, p)
	}
	return pods
}

func TestLeaderFailover(t *testing.T) {
	const ns = "ha"
	E.main.stop()
	E.main = nil
	sw := watchStatusWrites(t)
	defer sw.stop()
	// Leader mode: what is tested is the Lease handover (TestActiveActive covers the default).
	a, err := E.startSigner("replica-0", "--ha-mode", "leader")
	if err != nil {
		t.Fatal(err)
	}
	b, err := E.startSigner("replica-1", "--ha-mode", "leader")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*signer{a, b} {
		if err := s.waitReady(wait); err != nil {
			t.Fatal(err)
		}
	}
	var holder string
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if holder = leaseHolder(t); holder == "replica-0" || holder == "replica-1" {
			break
		}
	}
	leader, standby := a, b
	if holder == "replica-1" {
		leader, standby = b, a
	} else if holder != "replica-0" {
		t.Fatalf("lease holder %q", holder)
	}
	E.main = standby
	before := burst(t, ns, "before", 6)
	for _, p := range before {
		if v := waitVolume(t, ns, p, "cert-0", wait); v.State != "issued" {
			t.Fatalf("%s: %+v", p, v)
		}
	}
	t.Run("leader-killed", func(t *testing.T) {
		leader.kill()
		after := burst(t, ns, "after", 6)
		for _, p := range after {
			if v := waitVolume(t, ns, p, "cert-0", wait); v.State != "issued" {
				t.Fatalf("%s: %+v", p, v)
			}
		}
		if h := leaseHolder(t); h != standby.name {
			t.Errorf("lease holder %q, want %q", h, standby.name)
		}
	})
	t.Run("nothing-written-twice", func(t *testing.T) { writtenOnce(t, sw, ns, 12) })
}

// writtenOnce checks that at least `want` requests of namespace ns were decided, each with one
// status write.
func writtenOnce(t *testing.T, sw *statusWrites, ns string, want int) {
	time.Sleep(2 * time.Second) // let the watch catch up
	sw.mu.Lock()
	defer sw.mu.Unlock()
	n := 0
	for k, c := range sw.writes {
		if strings.HasPrefix(k, ns+"/") {
			n++
			if c != 1 {
				t.Errorf("%s: %d status writes, want 1", k, c)
			}
		}
	}
	if n < want {
		t.Errorf("saw %d decided requests in %s, want %d", n, ns, want)
	}
}

// issuedTotal sums podcert_issued_total over its series in a signer's /metrics.
func issuedTotal(t *testing.T, s *signer) float64 {
	r, err := http.Get("http://" + s.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, "podcert_issued_total{") {
			if v, err := strconv.ParseFloat(l[strings.LastIndex(l, " ")+1:], 64); err == nil {
				sum += v
			}
		}
	}
	return sum
}

// memberLeases lists the holders of the signers' member Leases (active-active).
func memberLeases(t *testing.T) []string {
	l, err := E.kc.CoordinationV1().Leases(signerNS).List(context.Background(),
		metav1.ListOptions{LabelSelector: "podcert.dev/member-of=podcert-signer"})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, lease := range l.Items {
		if lease.Spec.HolderIdentity != nil {
			out = append(out, *lease.Spec.HolderIdentity)
		}
	}
	sort.Strings(out)
	return out
}

// TestActiveActive: two replicas in the default mode against the real apiserver, under the
// chart's RBAC. Both announce a member Lease and both decide requests; one is SIGKILLed and the
// other decides its share; every request's status is written once.
func TestActiveActive(t *testing.T) {
	const ns = "aa"
	E.main.stop()
	E.main = nil
	sw := watchStatusWrites(t)
	defer sw.stop()
	a, err := E.startSigner("aa-0")
	if err != nil {
		t.Fatal(err)
	}
	b, err := E.startSigner("aa-1")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*signer{a, b} {
		if err := s.waitReady(wait); err != nil {
			t.Fatal(err)
		}
	}
	E.main = b
	has := func(list []string, who string) bool {
		for _, l := range list {
			if l == who {
				return true
			}
		}
		return false
	}
	for deadline := time.Now().Add(wait); ; time.Sleep(200 * time.Millisecond) {
		m := memberLeases(t)
		if has(m, "aa-0") && has(m, "aa-1") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("member leases %v", m)
		}
	}
	// 16 requests: the chance that one replica owns none is 2^-15.
	before := burst(t, ns, "before", 16)
	for _, p := range before {
		if v := waitVolume(t, ns, p, "cert-0", wait); v.State != "issued" {
			t.Fatalf("%s: %+v", p, v)
		}
	}
	for _, s := range []*signer{a, b} {
		if n := issuedTotal(t, s); n < 1 {
			t.Errorf("%s issued %v certificates, want some of the 16", s.name, n)
		}
	}
	t.Run("replica-killed", func(t *testing.T) {
		a.kill()
		after := burst(t, ns, "after", 8)
		for _, p := range after {
			if v := waitVolume(t, ns, p, "cert-0", wait); v.State != "issued" {
				t.Fatalf("%s: %+v", p, v)
			}
		}
	})
	t.Run("nothing-written-twice", func(t *testing.T) { writtenOnce(t, sw, ns, 24) })
}

func TestAPIServerRestart(t *testing.T) {
	const ns = "restart"
	t.Run("mid-burst", func(t *testing.T) {
		pods := burst(t, ns, "a", 4)
		if err := E.harness.Process.Signal(syscall.SIGUSR1); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"apiserver stopped", "apiserver restarted"} {
			select {
			case l := <-E.harnessLines:
				if l != want {
					t.Fatalf("harness: %q, want %q", l, want)
				}
			case <-time.After(3 * time.Minute):
				t.Fatalf("harness did not say %q", want)
			}
		}
		pods = append(pods, burst(t, ns, "b", 4)...)
		for _, p := range pods {
			if v := waitVolume(t, ns, p, "cert-0", 2*wait); v.State != "issued" {
				t.Fatalf("%s: %+v", p, v)
			}
		}
		if !E.main.running() {
			t.Fatalf("the signer exited: %s", tail(E.main.log))
		}
	})
}

func TestKubectl(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed")
	}
	run := func(t *testing.T, args ...string) string {
		t.Helper()
		out, err := exec.Command(kubectl, append([]string{"--kubeconfig", E.kubeconfig}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	t.Run("get-pcr", func(t *testing.T) {
		// A fresh request: the cleaner removes older ones within a minute.
		createPod(t, "kubectl", "p", "app", "node-0", source{volume: "cert", keyType: "ED25519"})
		if v := waitVolume(t, "kubectl", "p", "cert-0", wait); v.State != "issued" {
			t.Fatalf("%+v", v)
		}
		out := run(t, "get", "podcertificaterequests."+E.pcrVersion+".certificates.k8s.io", "-A")
		if !strings.Contains(out, "kubectl ") {
			t.Errorf("the request of namespace kubectl is not listed:\n%s", out)
		}
	})
	t.Run("create-namespace", func(t *testing.T) {
		run(t, "create", "namespace", "kubectl-made")
		run(t, "get", "namespace", "kubectl-made")
	})
}

func TestCleaner(t *testing.T) {
	t.Run("old-request-deleted", func(t *testing.T) {
		if firstPCR.name == "" {
			t.Skip("no request from TestIssuance")
		}
		// The harness runs the cleaner with a 60 s threshold and a 2 s poll.
		deadline := time.Now().Add(2 * time.Minute)
		for time.Now().Before(deadline) {
			_, err := E.dyn.Resource(E.pcrGVR()).Namespace(firstPCR.ns).Get(context.Background(), firstPCR.name, metav1.GetOptions{})
			if err != nil && strings.Contains(err.Error(), "not found") {
				return
			}
			time.Sleep(time.Second)
		}
		t.Fatalf("%s/%s still exists", firstPCR.ns, firstPCR.name)
	})
}

func TestCARotation(t *testing.T) {
	const ns, sa = "rotate", "app"
	createPod(t, ns, "old", sa, "node-0", source{volume: "cert", keyType: "ECDSAP256"})
	ov := waitVolume(t, ns, "old", "cert-0", wait)
	if ov.State != "issued" {
		t.Fatalf("%+v", ov)
	}
	before, _ := trustBundle(t)
	oldLeaf := checkBundle(t, ov.File, ns, sa)
	out, err := exec.Command(E.signerBin, "ca", "rotate", "--secret", caSecret, "--kubeconfig", E.kubeconfig).CombinedOutput()
	if err != nil {
		t.Fatalf("ca rotate: %v\n%s", err, out)
	}
	t.Run("next-root-published", func(t *testing.T) {
		deadline := time.Now().Add(wait)
		for {
			if now, _ := trustBundle(t); len(now) > len(before) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the bundle still has %d roots; signer log:\n%s", len(before), tail(E.main.log))
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
	t.Run("new-ca-signs-after-propagation-delay", func(t *testing.T) {
		time.Sleep(7 * time.Second) // the suite's --ca-propagation-delay is 5 s
		createPod(t, ns, "new", sa, "node-1", source{volume: "cert", keyType: "ECDSAP256"})
		nv := waitVolume(t, ns, "new", "cert-0", wait)
		if nv.State != "issued" {
			t.Fatalf("%+v", nv)
		}
		newLeaf := checkBundle(t, nv.File, ns, sa)
		if string(newLeaf.AuthorityKeyId) == string(oldLeaf.AuthorityKeyId) {
			t.Errorf("the new leaf is still signed by the old CA")
		}
	})
	t.Run("old-leaf-still-verifies", func(t *testing.T) {
		checkBundle(t, ov.File, ns, sa)
	})
}
