// Package suite runs the real podcert-signer binary against a real kube-apiserver, PCR cleaner
// and kubelet PodCertificate manager (the k8s-harness binary), as child processes.
package suite

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
)

const (
	signerName  = "podcert.dev/spiffe"
	trustDomain = "cluster.local"
	signerNS    = "podcert-system"
	caSecret    = "podcert-system/podcert-signer-ca"
	ctbName     = "podcert.dev:spiffe:live"
	wait        = 90 * time.Second
)

// env is the running control plane shared by every test (one apiserver per harness process).
type env struct {
	dir              string
	repo             string
	signerBin        string
	workloadBin      string
	harness          *exec.Cmd
	harnessLines     chan string
	kubeconfig       string
	signerKubeconfig string
	out              string
	cfg              *rest.Config
	kc               kubernetes.Interface
	dyn              dynamic.Interface
	mapper           meta.RESTMapper
	pcrVersion       string // v1 where served, else v1beta1
	main             *signer
}

var E *env

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "suite setup:", err)
		code = 2
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	harnessBin := os.Getenv("HARNESS_BIN")
	if harnessBin == "" {
		fmt.Println("HARNESS_BIN not set: the conformance suite needs scripts/conformance.sh")
		return 0, nil
	}
	dir, err := os.MkdirTemp("", "conformance")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	e := &env{
		dir:              dir,
		repo:             os.Getenv("REPO_ROOT"),
		signerBin:        os.Getenv("SIGNER_BIN"),
		workloadBin:      os.Getenv("WORKLOAD_BIN"),
		kubeconfig:       filepath.Join(dir, "admin.kubeconfig"),
		signerKubeconfig: filepath.Join(dir, "signer.kubeconfig"),
		out:              filepath.Join(dir, "out"),
		harnessLines:     make(chan string, 16),
	}
	hlog, err := os.Create(filepath.Join(dir, "harness.log"))
	if err != nil {
		return 0, err
	}
	e.harness = exec.Command(harnessBin, "-test.run", "^TestHarness$", "-test.timeout", "0", "-test.v",
		"--nodes", "2", "--out", e.out, "--kubeconfig", e.kubeconfig,
		"--signer-kubeconfig", e.signerKubeconfig,
		"--cleaner-threshold", "60s", "--cleaner-poll", "2s", "--restart-down", "3s", "-v", "1")
	e.harness.Stderr = hlog
	stdout, err := e.harness.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := e.harness.Start(); err != nil {
		return 0, err
	}
	defer func() {
		e.harness.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { e.harness.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			e.harness.Process.Kill()
		}
		if os.Getenv("KEEP_LOGS") != "" {
			copyTree(dir, os.Getenv("KEEP_LOGS"))
		}
	}()
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			l := sc.Text()
			hlog.WriteString("[stdout] " + l + "\n")
			if strings.HasPrefix(l, "ready ") || strings.HasPrefix(l, "apiserver ") {
				e.harnessLines <- l
			}
		}
	}()
	select {
	case l := <-e.harnessLines:
		if !strings.HasPrefix(l, "ready ") {
			return 0, fmt.Errorf("harness said %q", l)
		}
	case <-time.After(5 * time.Minute):
		return 0, fmt.Errorf("harness not ready in 5 minutes; see its log")
	}
	if err := e.connect(); err != nil {
		return 0, err
	}
	if err := e.prepare(); err != nil {
		return 0, err
	}
	E = e
	if e.main, err = e.startSigner("main"); err != nil {
		return 0, err
	}
	if err := e.main.waitReady(wait); err != nil {
		return 0, err
	}
	code := m.Run()
	if E.main != nil {
		E.main.stop()
	}
	return code, nil
}

func copyTree(src, dst string) {
	exec.Command("cp", "-a", src+"/.", dst).Run()
}

func (e *env) connect() error {
	cfg, err := clientcmd.BuildConfigFromFlags("", e.kubeconfig)
	if err != nil {
		return err
	}
	e.cfg = cfg
	if e.kc, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	if e.dyn, err = dynamic.NewForConfig(cfg); err != nil {
		return err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	e.mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	e.pcrVersion = "v1beta1"
	if rl, err := dc.ServerResourcesForGroupVersion("certificates.k8s.io/v1"); err == nil {
		for _, r := range rl.APIResources {
			if r.Name == "podcertificaterequests" {
				e.pcrVersion = "v1"
			}
		}
	}
	return nil
}

// prepare creates the signer's namespace and applies the chart's rendered RBAC unchanged.
func (e *env) prepare() error {
	ctx := context.Background()
	if err := e.ensureNamespace(ctx, signerNS); err != nil {
		return err
	}
	rbac, err := os.ReadFile(filepath.Join(e.repo, "charts/podcert-signer/rendered/rbac.yaml"))
	if err != nil {
		return err
	}
	return e.applyYAML(ctx, rbac)
}

func (e *env) ensureNamespace(ctx context.Context, ns string) error {
	_, err := e.kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// applyYAML creates every document of a multi-document YAML stream (server-side apply).
func (e *env) applyYAML(ctx context.Context, data []byte) error {
	d := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var u unstructured.Unstructured
		if err := d.Decode(&u.Object); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		if len(u.Object) == 0 {
			continue
		}
		if err := e.apply(ctx, &u); err != nil {
			return err
		}
	}
}

func (e *env) apply(ctx context.Context, u *unstructured.Unstructured) error {
	gvk := u.GroupVersionKind()
	m, err := e.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		if dm, ok := e.mapper.(*restmapper.DeferredDiscoveryRESTMapper); ok {
			dm.Reset()
			m, err = e.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", gvk, err)
		}
	}
	var ri dynamic.ResourceInterface = e.dyn.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ri = e.dyn.Resource(m.Resource).Namespace(u.GetNamespace())
	}
	b, err := json.Marshal(u.Object)
	if err != nil {
		return err
	}
	force := true
	_, err = ri.Patch(ctx, u.GetName(), "application/apply-patch+yaml", b,
		metav1.PatchOptions{FieldManager: "conformance", Force: &force})
	if err != nil {
		return fmt.Errorf("applying %s %s/%s: %w", gvk.Kind, u.GetNamespace(), u.GetName(), err)
	}
	return nil
}

func (e *env) pcrGVR() schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: "certificates.k8s.io", Version: e.pcrVersion, Resource: "podcertificaterequests"}
}

func (e *env) ctbGVR() schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: "certificates.k8s.io", Version: e.pcrVersion, Resource: "clustertrustbundles"}
}

// --- the signer process ---

type signer struct {
	name    string
	cmd     *exec.Cmd
	log     string
	metrics string
	done    chan struct{}
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// mainArgs are the flags of the chart's deployment (bootstrapped CA Secret, leader election on
// a real Lease), with a short CA propagation delay for the rotation case.
var mainArgs = []string{
	"--signer-name", signerName, "--trust-domain", trustDomain,
	"--ca-secret", caSecret, "--ca-bootstrap",
	"--leader-election=true", "--leader-election-namespace", signerNS,
	"--ca-propagation-delay", "5s",
}

func (e *env) startSigner(name string, extra ...string) (*signer, error) {
	return e.startSignerWith(name, append(append([]string{}, mainArgs...), extra...))
}

// startSignerWith runs `podcert-signer run` as the signer's identity with exactly these flags
// (besides kubeconfig, metrics address and identity).
func (e *env) startSignerWith(name string, flags []string) (*signer, error) {
	s := &signer{name: name, log: filepath.Join(e.dir, "signer-"+name+".log"),
		metrics: fmt.Sprintf("127.0.0.1:%d", freePort()), done: make(chan struct{})}
	args := append([]string{"run", "--kubeconfig", e.signerKubeconfig, "--metrics-addr", s.metrics,
		"--identity", name}, flags...)
	f, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	s.cmd = exec.Command(e.signerBin, args...)
	s.cmd.Stdout, s.cmd.Stderr = f, f
	s.cmd.Env = append(os.Environ(), "RUST_LOG=info,podcert_signer=debug,podcert_runtime=debug,podcert_core=debug,podcert_k8s=debug", "KUBERNETES_SERVICE_HOST=")
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { s.cmd.Wait(); f.Close(); close(s.done) }()
	return s, nil
}

func (s *signer) waitReady(within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return fmt.Errorf("signer %s exited: %s", s.name, tail(s.log))
		default:
		}
		r, err := http.Get("http://" + s.metrics + "/readyz")
		if err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("signer %s not ready in %v: %s", s.name, within, tail(s.log))
}

func (s *signer) running() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// stop is a graceful stop (SIGTERM releases the Lease).
func (s *signer) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
}

// kill is a crash: no Lease release.
func (s *signer) kill() {
	s.cmd.Process.Kill()
	<-s.done
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// replaceMain swaps the shared signer for one with extra flags (and back with none).
func replaceMain(t *testing.T, extra ...string) {
	t.Helper()
	if E.main != nil {
		E.main.stop()
	}
	s, err := E.startSigner(fmt.Sprintf("main-%d", time.Now().UnixNano()), extra...)
	if err != nil {
		t.Fatal(err)
	}
	E.main = s
	if err := s.waitReady(wait); err != nil {
		t.Fatal(err)
	}
}

// --- pods and what the emulated kubelet wrote ---

type source struct {
	volume      string
	keyType     string
	annotations map[string]string
	signer      string // default: signerName
}

var nsMu sync.Mutex
var nsDone = map[string]bool{}

// ensureSA creates namespace ns and service account sa in it (once).
func ensureSA(t *testing.T, ns, sa string) {
	t.Helper()
	nsMu.Lock()
	defer nsMu.Unlock()
	if nsDone[ns+"/"+sa] {
		return
	}
	ctx := context.Background()
	if err := E.ensureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	_, err := E.kc.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	nsDone[ns+"/"+sa] = true
}

// createPod makes a pod bound to node with one projected volume per source.
func createPod(t *testing.T, ns, name, sa, node string, srcs ...source) *corev1.Pod {
	t.Helper()
	return createLabelledPod(t, ns, name, sa, node, nil, srcs...)
}

// createLabelledPod is createPod with the pod's labels.
func createLabelledPod(t *testing.T, ns, name, sa, node string, labels map[string]string, srcs ...source) *corev1.Pod {
	t.Helper()
	ensureSA(t, ns, sa)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: corev1.PodSpec{
			NodeName:           node,
			ServiceAccountName: sa,
			Containers:         []corev1.Container{{Name: "main", Image: "example.invalid/app:1"}},
		},
	}
	for _, s := range srcs {
		if s.signer == "" {
			s.signer = signerName
		}
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{
			Name: s.volume,
			VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: []corev1.VolumeProjection{{PodCertificate: &corev1.PodCertificateProjection{
					SignerName:           s.signer,
					KeyType:              s.keyType,
					CredentialBundlePath: "credentials.pem",
					UserAnnotations:      s.annotations,
				}}},
			}},
		})
	}
	p, err := E.kc.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating pod %s/%s: %v", ns, name, err)
	}
	return p
}

type volumeStatus struct {
	State   string `json:"state"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
	Error   string `json:"error"`
	File    string `json:"file"`
}

type podStatus struct {
	Node    string                  `json:"node"`
	UID     string                  `json:"uid"`
	Volumes map[string]volumeStatus `json:"volumes"`
}

func readStatus(ns, pod string) (*podStatus, error) {
	b, err := os.ReadFile(filepath.Join(E.out, ns, pod, "status.json"))
	if err != nil {
		return nil, err
	}
	var s podStatus
	return &s, json.Unmarshal(b, &s)
}

// waitVolume waits until the node reports a terminal state for ns/pod's volume id
// ("<volume>-<index>") and returns it.
func waitVolume(t *testing.T, ns, pod, id string, within time.Duration) volumeStatus {
	t.Helper()
	deadline := time.Now().Add(within)
	var last volumeStatus
	for time.Now().Before(deadline) {
		if s, err := readStatus(ns, pod); err == nil {
			if v, ok := s.Volumes[id]; ok {
				last = v
				if v.State != "pending" {
					return v
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s/%s %s: no decision within %v (last: %+v); signer log:\n%s", ns, pod, id, within, last, tail(E.main.log))
	return last
}

// trustBundle fetches the published ClusterTrustBundle's certificates.
func trustBundle(t *testing.T) ([]*x509.Certificate, string) {
	t.Helper()
	u, err := E.dyn.Resource(E.ctbGVR()).Get(context.Background(), ctbName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("ClusterTrustBundle %s: %v", ctbName, err)
	}
	s, _, _ := unstructured.NestedString(u.Object, "spec", "trustBundle")
	certs, err := parseCerts([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return certs, s
}

func parseCerts(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out, nil
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q", blk.Type)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
}
