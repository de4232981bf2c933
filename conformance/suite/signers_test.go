package suite

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// PodCertificateSigner objects through the real apiextensions server: the committed CRD's
// schema and CEL refuse a bad object, and a CRD-mode signer running under the chart's rendered
// CRD-mode RBAC (rbac-crd.yaml, unchanged) makes a good object Ready and issues for it through
// the real kubelet code. This case runs last (file order): it swaps the shared RBAC to CRD mode
// and puts the flag-mode RBAC back when it ends.
func TestPodCertificateSigners(t *testing.T) {
	ctx := context.Background()
	pcs := schema.GroupVersionResource{Group: "podcert.dev", Version: "v1alpha1", Resource: "podcertificatesigners"}
	read := func(rel string) []byte {
		b, err := os.ReadFile(filepath.Join(E.repo, rel))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if err := E.applyYAML(ctx, read("crds/podcertificatesigner.yaml")); err != nil {
		t.Fatal(err)
	}
	object := func(name string, spec map[string]any) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "podcert.dev/v1alpha1", "kind": "PodCertificateSigner",
			"metadata": map[string]any{"name": name}, "spec": spec,
		}}
	}
	// The CRD is served once it is established: retry a create until it is not NotFound.
	create := func(u *unstructured.Unstructured) error {
		var err error
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
			_, err = E.dyn.Resource(pcs).Create(ctx, u, metav1.CreateOptions{})
			if !apierrors.IsNotFound(err) {
				return err
			}
		}
		return err
	}

	t.Run("schema-and-cel-refuse-a-bad-object", func(t *testing.T) {
		bad := []map[string]any{
			{"signerName": "podcert.dev/bad", "trustDomain": "bad.example.org", "keyTypes": []any{},
				"ca": map[string]any{"secret": map[string]any{"name": "other-ca"}}},
			{"signerName": "podcert.dev/bad", "trustDomain": "bad.example.org",
				"ca": map[string]any{"secret": map[string]any{"name": "other-ca"}, "files": map[string]any{"certFile": "/a", "keyFile": "/b"}}},
			{"signerName": "example.com", "trustDomain": "bad.example.org",
				"ca": map[string]any{"secret": map[string]any{"name": "other-ca"}}},
		}
		for i, spec := range bad {
			err := create(object(fmt.Sprintf("bad-%d", i), spec))
			if !apierrors.IsInvalid(err) {
				t.Errorf("bad object %d: got %v, want 422 Invalid", i, err)
			}
		}
	})

	// rbac-crd.yaml was rendered with a ConfigMap namespace (team-a) for its trust-bundle Role.
	if err := E.ensureNamespace(ctx, "team-a"); err != nil {
		t.Fatal(err)
	}
	if err := E.applyYAML(ctx, read("charts/podcert-signer/rendered/rbac-crd.yaml")); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := E.applyYAML(ctx, read("charts/podcert-signer/rendered/rbac.yaml")); err != nil {
			t.Errorf("restoring the flag-mode RBAC: %v", err)
		}
	}()
	const web, td = "podcert.dev/web", "web.example.org"
	if err := create(object("web", map[string]any{
		"signerName": web, "trustDomain": td,
		"ca": map[string]any{"secret": map[string]any{"name": "web-ca", "bootstrap": true}},
	})); err != nil {
		t.Fatal(err)
	}
	defer E.dyn.Resource(pcs).Delete(ctx, "web", metav1.DeleteOptions{})
	// One replica, objects only: the flag signer (the shared one) keeps its own Lease.
	s, err := E.startSignerWith("crd", []string{"--crd-signers", "--signer-domain", "podcert.dev",
		"--namespace", signerNS, "--leader-election=false"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.stop()

	t.Run("object-becomes-ready", func(t *testing.T) {
		var last any
		for deadline := time.Now().Add(wait); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			u, err := E.dyn.Resource(pcs).Get(ctx, "web", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			last = conds
			for _, c := range conds {
				m, _ := c.(map[string]any)
				if m["type"] == "Ready" && m["status"] == "True" {
					return
				}
			}
		}
		t.Fatalf("PodCertificateSigner web not Ready: %v; signer log:\n%s", last, tail(s.log))
	})

	t.Run("issues-through-the-kubelet", func(t *testing.T) {
		const ns, sa = "crd", "app"
		createPod(t, ns, "web", sa, "node-0", source{volume: "cert", keyType: "ECDSAP256", signer: web})
		v := waitVolume(t, ns, "web", "cert-0", wait)
		if v.State != "issued" {
			t.Fatalf("%+v; signer log:\n%s", v, tail(s.log))
		}
		b, err := os.ReadFile(v.File)
		if err != nil {
			t.Fatal(err)
		}
		_, rest := pem.Decode(b) // the private key; the chain follows
		chain, err := parseCerts(rest)
		if err != nil || len(chain) == 0 {
			t.Fatalf("chain: %v", err)
		}
		want := fmt.Sprintf("spiffe://%s/ns/%s/sa/%s", td, ns, sa)
		if len(chain[0].URIs) != 1 || chain[0].URIs[0].String() != want {
			t.Errorf("URI SANs %v, want [%s]", chain[0].URIs, want)
		}
		// It verifies against the object's own bundle, and not against the flag signer's.
		obj, err := E.dyn.Resource(pcs).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		own, _, _ := unstructured.NestedString(obj.Object, "status", "trustBundleName")
		if own == "" {
			t.Fatalf("status.trustBundleName is empty: %v", obj.Object["status"])
		}
		verifies := func(bundle string) bool {
			var u *unstructured.Unstructured
			var err error
			// Published by the signer's bundle loop; give it a moment after the first issuance.
			for deadline := time.Now().Add(wait); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
				if u, err = E.dyn.Resource(E.ctbGVR()).Get(ctx, bundle, metav1.GetOptions{}); err == nil {
					break
				}
			}
			if err != nil {
				t.Fatalf("ClusterTrustBundle %s: %v; signer log:\n%s", bundle, err, tail(s.log))
			}
			pemText, _, _ := unstructured.NestedString(u.Object, "spec", "trustBundle")
			roots, err := parseCerts([]byte(pemText))
			if err != nil {
				t.Fatal(err)
			}
			pool := x509.NewCertPool()
			for _, r := range roots {
				pool.AddCert(r)
			}
			_, err = chain[0].Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
			return err == nil
		}
		if !verifies(own) {
			t.Errorf("the leaf does not verify against the object's bundle %s", own)
		}
		if verifies(ctbName) {
			t.Errorf("the leaf verifies against the flag signer's bundle %s: the trust domains share a CA", ctbName)
		}
	})

	// Issue 18: a policy that reads the pod (its label in the SPIFFE ID) and the Services that
	// select it (DNS names), with real pods, real Service validation and the real kubelet code;
	// rbac-crd.yaml grants get pods and list/watch services (crdSigners.podData).
	t.Run("pod-labels-and-service-names", func(t *testing.T) {
		const svcSigner, svcTD, ns = "podcert.dev/svc", "svc.example.org", "crd"
		if err := create(object("svc", map[string]any{
			"signerName": svcSigner, "trustDomain": svcTD,
			"spiffeID": "ns/{namespace}/app/{pod.labels.app}",
			"dnsNames": map[string]any{"fromServices": map[string]any{"required": true, "wait": "60s"}},
			"ca":       map[string]any{"secret": map[string]any{"name": "other-ca", "bootstrap": true}},
		})); err != nil {
			t.Fatal(err)
		}
		defer E.dyn.Resource(pcs).Delete(ctx, "svc", metav1.DeleteOptions{})
		ensureSA(t, ns, "app")
		for _, s := range []struct {
			ns, name string
			selector map[string]string
		}{
			{ns, "shop", map[string]string{"app": "shop"}},
			// The pod lacks one of its selector's keys: it gives no names.
			{ns, "shop-canary", map[string]string{"app": "shop", "track": "canary"}},
			// Another namespace's Service with the same selector: it gives no names.
			{"team-a", "shop", map[string]string{"app": "shop"}},
		} {
			svc := &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: s.ns},
				Spec: corev1.ServiceSpec{Selector: s.selector,
					Ports: []corev1.ServicePort{{Port: 443}}},
			}
			if _, err := E.kc.CoreV1().Services(s.ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		createLabelledPod(t, ns, "shop", "app", "node-0", map[string]string{"app": "shop"},
			source{volume: "cert", keyType: "ED25519", signer: svcSigner})
		v := waitVolume(t, ns, "shop", "cert-0", wait)
		if v.State != "issued" {
			t.Fatalf("%+v; signer log:\n%s", v, tail(s.log))
		}
		b, err := os.ReadFile(v.File)
		if err != nil {
			t.Fatal(err)
		}
		_, rest := pem.Decode(b)
		chain, err := parseCerts(rest)
		if err != nil || len(chain) == 0 {
			t.Fatalf("chain: %v", err)
		}
		want := fmt.Sprintf("spiffe://%s/ns/%s/app/shop", svcTD, ns)
		if len(chain[0].URIs) != 1 || chain[0].URIs[0].String() != want {
			t.Errorf("URI SANs %v, want [%s]", chain[0].URIs, want)
		}
		wantDNS := []string{"shop.crd.svc", "shop.crd.svc.cluster.local"}
		if fmt.Sprint(chain[0].DNSNames) != fmt.Sprint(wantDNS) {
			t.Errorf("DNS SANs %v, want %v", chain[0].DNSNames, wantDNS)
		}
		// A pod without the label the SPIFFE ID uses is denied, naming it.
		createLabelledPod(t, ns, "nolabel", "app", "node-0", map[string]string{"tier": "batch"},
			source{volume: "cert", keyType: "ED25519", signer: svcSigner})
		v = waitVolume(t, ns, "nolabel", "cert-0", wait)
		if v.State != "denied" || v.Reason != "MissingPodLabel" {
			t.Errorf("pod without the label: %+v, want denied MissingPodLabel", v)
		}
	})
}
