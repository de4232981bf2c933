// Package harness runs a real control plane on 127.0.0.1 from the Kubernetes modules: embedded
// etcd, kube-apiserver (cmd/kube-apiserver/app/testing), the PodCertificateRequest cleaner, and
// emulated nodes that each run the kubelet's own PodCertificate manager and write the credential
// bundles as the projected volume would.
package harness

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apiserver/pkg/storage/storagebackend"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	kubeapiservertesting "k8s.io/kubernetes/cmd/kube-apiserver/app/testing"
	"k8s.io/kubernetes/pkg/kubelet/podcertificate"
	"k8s.io/kubernetes/test/utils/ktesting"
)

// Flags of the harness (after -args on the test binary's command line).
var (
	flagNodes            = flag.Int("nodes", 1, "emulated nodes (node-0 .. node-N-1)")
	flagOut              = flag.String("out", "", "directory for credential bundles: DIR/<ns>/<pod>/<volume>-<index>.pem")
	flagKubeconfig       = flag.String("kubeconfig", "", "admin kubeconfig to write")
	flagSignerKubeconfig = flag.String("signer-kubeconfig", "", "kubeconfig to write for system:serviceaccount:podcert-system:podcert-signer (client certificate)")
	flagSignerSA         = flag.String("signer-sa", "podcert-system/podcert-signer", "NAMESPACE/NAME of the service account identity in --signer-kubeconfig")
	flagCleanerThreshold = flag.Duration("cleaner-threshold", 15*time.Minute, "PCR cleaner: delete requests older than this (kube-controller-manager: 15m)")
	flagCleanerPoll      = flag.Duration("cleaner-poll", 5*time.Minute, "PCR cleaner polling interval (kube-controller-manager: 5m)")
	flagBundlePoll       = flag.Duration("bundle-poll", 200*time.Millisecond, "how often each node polls its credential bundles")
	flagRestartDown      = flag.Duration("restart-down", 2*time.Second, "on SIGUSR1 the apiserver is stopped for this long, then restarted on the same etcd")
)

// TB is what StartTestServer needs; *testing.T satisfies it.
type TB = ktesting.TB

// Harness is one running control plane.
type Harness struct {
	Dir       string
	ClientCA  *CA
	ServingCA *CA
	Proxy     *Proxy
	Admin     *rest.Config
	etcd      *embed.Etcd
	storage   *storagebackend.Config
	tlsCert   string
	tlsKey    string
	caFile    string
	certDir   string
	mu        sync.Mutex
	server    *kubeapiservertesting.TestServer
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// startEtcd is k8s.io/apiserver/pkg/storage/etcd3/testserver.RunEtcd without the testing.TB
// logger plumbing: an embedded etcd on two free loopback ports.
func startEtcd(dir string) (*embed.Etcd, string, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, "", err
	}
	cfg := embed.NewConfig()
	cfg.UnsafeNoFsync = true
	cu := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(ports[0])}
	pu := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(ports[1])}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.Dir = filepath.Join(dir, "etcd")
	cfg.LogLevel = "error"
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, "", err
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		e.Server.Stop()
		return nil, "", errors.New("etcd took too long to start")
	}
	return e, cu.String(), nil
}

// Start brings up etcd and the apiserver and writes the PKI into dir.
func Start(t TB, dir string) (*Harness, error) {
	h := &Harness{Dir: dir}
	var err error
	if h.ClientCA, err = NewCA("harness-client-ca"); err != nil {
		return nil, err
	}
	if h.ServingCA, err = NewCA("harness-serving-ca"); err != nil {
		return nil, err
	}
	// Our own serving pair (IP SAN 127.0.0.1): StartTestServer then skips the self-signed
	// fixture, which it would otherwise try to write into the read-only module cache.
	crt, key, err := h.ServingCA.Issue("kube-apiserver", nil, []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1")})
	if err != nil {
		return nil, err
	}
	h.tlsCert, h.tlsKey = filepath.Join(dir, "apiserver.crt"), filepath.Join(dir, "apiserver.key")
	h.caFile = filepath.Join(dir, "client-ca.crt")
	// With the UnknownVersionInteroperabilityProxy gate on, StartTestServer sets the peer CA
	// to <cert-dir>/apiserver.crt, a file only its self-signed default would create; --cert-dir
	// points there and that file is our serving CA.
	h.certDir = filepath.Join(dir, "certs")
	for p, b := range map[string][]byte{h.tlsCert: crt, h.tlsKey: key, h.caFile: h.ClientCA.CertPEM,
		filepath.Join(dir, "serving-ca.crt"):      h.ServingCA.CertPEM,
		filepath.Join(h.certDir, "apiserver.crt"): h.ServingCA.CertPEM} {
		if err := WriteAtomic(p, b, 0o600); err != nil {
			return nil, err
		}
	}
	var etcdURL string
	if h.etcd, etcdURL, err = startEtcd(dir); err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	h.storage = storagebackend.NewDefaultConfig("/registry-harness", nil)
	h.storage.Transport.ServerList = []string{etcdURL}
	if h.Proxy, err = NewProxy(); err != nil {
		return nil, err
	}
	if err := h.startAPIServer(t); err != nil {
		return nil, err
	}
	return h, nil
}

func (h *Harness) startAPIServer(t TB) error {
	flags := append([]string{
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--tls-cert-file=" + h.tlsCert,
		"--tls-private-key-file=" + h.tlsKey,
		"--client-ca-file=" + h.caFile,
		"--cert-dir=" + h.certDir,
	}, ExtraAPIServerFlags...)
	opts := kubeapiservertesting.NewDefaultTestServerOptions()
	disableInvariantChecks(opts)
	s, err := kubeapiservertesting.StartTestServer(t, opts, flags, h.storage)
	if err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	h.mu.Lock()
	h.server = &s
	h.mu.Unlock()
	u, err := url.Parse(s.ClientConfig.Host)
	if err != nil {
		return err
	}
	h.Proxy.SetTarget(u.Host)
	if h.Admin == nil {
		h.Admin = h.userConfig(nil, nil)
		// The loopback config's bearer token changes with every apiserver start; the admin
		// identity everyone else gets is a system:masters client certificate instead.
		c, k, err := h.ClientCA.Issue("harness-admin", []string{"system:masters"}, nil)
		if err != nil {
			return err
		}
		h.Admin.TLSClientConfig.CertData, h.Admin.TLSClientConfig.KeyData = c, k
	}
	return nil
}

// StopAPIServer stops the apiserver (etcd keeps running); every connection through the proxy
// is cut.
func (h *Harness) StopAPIServer() {
	h.Proxy.SetTarget("")
	h.mu.Lock()
	s := h.server
	h.server = nil
	h.mu.Unlock()
	if s != nil {
		s.TearDownFn()
	}
}

// RestartAPIServer starts a fresh apiserver on the same etcd and storage prefix.
func (h *Harness) RestartAPIServer(t TB) error { return h.startAPIServer(t) }

// Close tears everything down.
func (h *Harness) Close() {
	h.StopAPIServer()
	h.Proxy.Close()
	if h.etcd != nil {
		h.etcd.Close()
	}
}

// userConfig is a rest config through the proxy with a client certificate (nil: none).
func (h *Harness) userConfig(cert, key []byte) *rest.Config {
	return &rest.Config{
		Host:            "https://" + h.Proxy.Addr(),
		TLSClientConfig: rest.TLSClientConfig{CAData: h.ServingCA.CertPEM, CertData: cert, KeyData: key},
		QPS:             1000,
		Burst:           10000,
	}
}

// UserConfig mints a client certificate for user in groups.
func (h *Harness) UserConfig(user string, groups ...string) (*rest.Config, error) {
	c, k, err := h.ClientCA.Issue(user, groups, nil)
	if err != nil {
		return nil, err
	}
	return h.userConfig(c, k), nil
}

// WriteKubeconfig writes cfg as a kubeconfig file (certificates inline).
func WriteKubeconfig(path, user string, cfg *rest.Config) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["harness"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}
	kc.Contexts["harness"] = &clientcmdapi.Context{Cluster: "harness", AuthInfo: user}
	kc.CurrentContext = "harness"
	b, err := clientcmd.Write(*kc)
	if err != nil {
		return err
	}
	return WriteAtomic(path, b, 0o600)
}

// --- emulated nodes ---

// podManager is the kubelet pod manager as the PodCertificate manager sees it, over the node's
// pod lister (as upstream's podcertificatemanager_integration_test.go does).
type podManager struct{ lister corelisters.PodLister }

func (p podManager) GetPods() []*corev1.Pod {
	pods, _ := p.lister.List(labels.Everything())
	return pods
}

func (p podManager) GetPodByUID(uid types.UID) (*corev1.Pod, bool) {
	for _, pod := range p.GetPods() {
		if pod.UID == uid {
			return pod, true
		}
	}
	return nil, false
}

// VolumeStatus is what the node knows about one podCertificate source, as the kubelet's volume
// code would see it from GetPodCertificateCredentialBundle.
type VolumeStatus struct {
	State   string `json:"state"` // pending | issued | denied | failed
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	Error   string `json:"error,omitempty"`
	File    string `json:"file,omitempty"`
}

// PodStatus is written to DIR/<ns>/<pod>/status.json.
type PodStatus struct {
	Node    string                  `json:"node"`
	UID     string                  `json:"uid"`
	Volumes map[string]VolumeStatus `json:"volumes"`
}

var terminalRe = regexp.MustCompile(`^PodCertificateRequest was permanently (denied|failed): reason="(.*)" message="(.*)"$`)

// Node runs one emulated kubelet.
type Node struct {
	Name    string
	client  kubernetes.Interface
	mgr     *podcertificate.IssuingManager
	pods    corelisters.PodLister
	out     string
	mu      sync.Mutex
	written map[string]string // file -> content last written
	status  map[string]string // pod key -> status JSON last written
}

// StartNode creates the Node object (as admin) and runs the kubelet PodCertificate manager with
// a system:node:NAME client certificate.
func (h *Harness) StartNode(ctx context.Context, name, out string) (*Node, error) {
	admin, err := kubernetes.NewForConfig(h.Admin)
	if err != nil {
		return nil, err
	}
	_, err = admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating node %s: %w", name, err)
	}
	cfg, err := h.UserConfig("system:node:"+name, "system:nodes")
	if err != nil {
		return nil, err
	}
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	onNode := informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", name).String()
	})
	podF := informers.NewSharedInformerFactoryWithOptions(kc, 0, onNode)
	pcrF := informers.NewSharedInformerFactoryWithOptions(kc, 0, onNode)
	nodeF := informers.NewSharedInformerFactoryWithOptions(kc, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
	}))
	n := &Node{Name: name, client: kc, out: out,
		written: map[string]string{}, status: map[string]string{}}
	podInf := podF.Core().V1().Pods()
	n.pods = podInf.Lister()
	rec := record.NewFakeRecorder(1000)
	n.mgr = newManager(kc, podManager{n.pods}, rec, pcrF, nodeF, name)
	// The kubelet: HandlePodAdditions/Updates -> TrackPod, HandlePodRemoves -> ForgetPod.
	_, err = podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { n.mgr.TrackPod(ctx, o.(*corev1.Pod)) },
		UpdateFunc: func(_, o any) { n.mgr.TrackPod(ctx, o.(*corev1.Pod)) },
		DeleteFunc: func(o any) {
			if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = t.Obj
			}
			if p, ok := o.(*corev1.Pod); ok {
				n.mgr.ForgetPod(ctx, p)
				n.removePod(p)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	go n.drainEvents(ctx, rec)
	podF.Start(ctx.Done())
	pcrF.Start(ctx.Done())
	nodeF.Start(ctx.Done())
	go n.mgr.Run(ctx)
	go n.publishLoop(ctx)
	return n, nil
}

// drainEvents keeps the (buffered) recorder from blocking the manager and logs the events; the
// status files carry the Denied/Failed reasons as GetPodCertificateCredentialBundle reports them.
func (n *Node) drainEvents(ctx context.Context, rec *record.FakeRecorder) {
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-rec.Events:
			klog.InfoS("kubelet event", "node", n.Name, "event", e)
		}
	}
}

func (n *Node) removePod(p *corev1.Pod) {
	if n.out == "" {
		return
	}
	os.RemoveAll(filepath.Join(n.out, p.Namespace, p.Name))
	n.mu.Lock()
	defer n.mu.Unlock()
	for f := range n.written {
		if filepath.Dir(f) == filepath.Join(n.out, p.Namespace, p.Name) {
			delete(n.written, f)
		}
	}
	delete(n.status, p.Namespace+"/"+p.Name)
}

func (n *Node) publishLoop(ctx context.Context) {
	t := time.NewTicker(*flagBundlePoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n.publish(ctx)
		}
	}
}

// publish does what the projected volume plugin does on each sync: for every podCertificate
// source it asks the manager for the bundle and writes key PEM + chain atomically.
func (n *Node) publish(ctx context.Context) {
	if n.out == "" {
		return
	}
	pods, _ := n.pods.List(labels.Everything())
	for _, pod := range pods {
		dir := filepath.Join(n.out, pod.Namespace, pod.Name)
		st := PodStatus{Node: n.Name, UID: string(pod.UID), Volumes: map[string]VolumeStatus{}}
		for _, v := range pod.Spec.Volumes {
			if v.Projected == nil {
				continue
			}
			for i, src := range v.Projected.Sources {
				if src.PodCertificate == nil {
					continue
				}
				id := fmt.Sprintf("%s-%d", v.Name, i)
				key, chain, err := n.mgr.GetPodCertificateCredentialBundle(ctx, pod.Namespace, pod.Name, string(pod.UID), v.Name, i)
				vs := VolumeStatus{State: "pending"}
				switch {
				case err == nil:
					file := filepath.Join(dir, id+".pem")
					data := string(key) + string(chain)
					n.mu.Lock()
					changed := n.written[file] != data
					n.mu.Unlock()
					if changed {
						if werr := WriteAtomic(file, []byte(data), 0o600); werr != nil {
							klog.ErrorS(werr, "writing bundle", "file", file)
							continue
						}
						n.mu.Lock()
						n.written[file] = data
						n.mu.Unlock()
					}
					vs = VolumeStatus{State: "issued", File: file}
				default:
					if m := terminalRe.FindStringSubmatch(err.Error()); m != nil {
						vs = VolumeStatus{State: m[1], Reason: m[2], Message: m[3]}
					} else {
						vs.Error = err.Error()
					}
				}
				st.Volumes[id] = vs
			}
		}
		if len(st.Volumes) == 0 {
			continue
		}
		b, _ := json.MarshalIndent(st, "", "  ")
		k := pod.Namespace + "/" + pod.Name
		n.mu.Lock()
		same := n.status[k] == string(b)
		n.mu.Unlock()
		if same {
			continue
		}
		if err := WriteAtomic(filepath.Join(dir, "status.json"), b, 0o644); err == nil {
			n.mu.Lock()
			n.status[k] = string(b)
			n.mu.Unlock()
		}
	}
}

// StartCleaner runs the PodCertificateRequest cleaner as kube-controller-manager would, with
// the admin client.
func (h *Harness) StartCleaner(ctx context.Context, threshold, poll time.Duration) error {
	kc, err := kubernetes.NewForConfig(h.Admin)
	if err != nil {
		return err
	}
	f := informers.NewSharedInformerFactory(kc, 0)
	c := newCleaner(kc, f, threshold, poll)
	f.Start(ctx.Done())
	go c.Run(ctx, 1)
	return nil
}

// Flags returns the parsed harness flags (for the test entry point).
func Flags() (nodes int, out, kubeconfig, signerKubeconfig, signerSA string, threshold, poll, restartDown time.Duration) {
	return *flagNodes, *flagOut, *flagKubeconfig, *flagSignerKubeconfig, *flagSignerSA,
		*flagCleanerThreshold, *flagCleanerPoll, *flagRestartDown
}

func waitOrSignal(d time.Duration) { time.Sleep(d) }
