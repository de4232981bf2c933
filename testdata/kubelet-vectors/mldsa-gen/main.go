// mldsavectors writes ML-DSA PodCertificateRequests the way a Kubernetes 1.38 kubelet builds
// them (pkg/kubelet/podcertificate/podcertificatemanager.go, generateKeyAndProof:
// mldsa.GenerateKey, then x509.CreateCertificateRequest with an empty template), using Go
// 1.27's crypto/mldsa and crypto/x509, plus adversarial variants.
//
// It also checks what a signer issued with Go's own X.509 verifier (an implementation
// podcert-signer does not use):
//
//	go run . verify CA.pem CHAIN.pem [KEY.pem]
//
// verifies the chain (leaf first) against the CA with x509.Certificate.Verify for client and
// server auth, prints the leaf's key and signature algorithms, and with KEY.pem checks that the
// leaf carries that private key's public key.
//
// Usage (Go 1.27, e.g. GOTOOLCHAIN=go1.27.4): go run . OUTDIR   (OUTDIR = testdata/kubelet-vectors)
package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/mldsa"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

type vec struct {
	Name    string         `json:"name"`
	Expect  string         `json:"expect"`
	KeyType string         `json:"keyType"`
	KeyFile string         `json:"keyFile,omitempty"`
	Object  map[string]any `json:"object"`
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

// Indices 200+ keep pod UIDs apart from the classical vectors (vectors.json).
func uid(i int) string { return fmt.Sprintf("0b6f3c4e-%04x-4d2a-9b1e-5f6a7b8c9d%02x", i, i%256) }

func object(apiVersion, name string, i int, spec map[string]any) map[string]any {
	base := map[string]any{
		"signerName":           "acceptance.podcert.test/spiffe",
		"podName":              fmt.Sprintf("pod-%d", i),
		"podUID":               uid(i),
		"serviceAccountName":   fmt.Sprintf("sa-%d", i%3),
		"serviceAccountUID":    fmt.Sprintf("5a5a5a5a-0000-4000-8000-%012d", i%3),
		"nodeName":             "node-a",
		"nodeUID":              "6e6e6e6e-0000-4000-8000-000000000001",
		"maxExpirationSeconds": 86400,
	}
	for k, v := range spec {
		base[k] = v
	}
	return map[string]any{
		"apiVersion": apiVersion,
		"kind":       "PodCertificateRequest",
		"metadata": map[string]any{
			"name":              name,
			"namespace":         fmt.Sprintf("team-%d", i%2),
			"uid":               fmt.Sprintf("7c7c7c7c-0000-4000-8000-%012d", i),
			"resourceVersion":   "100",
			"creationTimestamp": "2026-11-25T10:00:00Z",
		},
		"spec": base,
	}
}

// csrParts splits a DER CertificationRequest into its three fields.
type csrParts struct {
	Info      asn1.RawValue
	Algorithm asn1.RawValue
	Signature asn1.BitString
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "verify" {
		verify(os.Args[2:])
		return
	}
	out := os.Args[1]
	must(os.MkdirAll(filepath.Join(out, "keys"), 0o755))
	params := []struct {
		name string
		p    mldsa.Parameters
	}{{"MLDSA44", mldsa.MLDSA44()}, {"MLDSA65", mldsa.MLDSA65()}, {"MLDSA87", mldsa.MLDSA87()}}
	var vecs []vec
	i := 200
	keys := map[string]*mldsa.PrivateKey{}
	csrs := map[string][]byte{}
	for _, p := range params {
		i++
		k, err := mldsa.GenerateKey(p.p)
		must(err)
		keys[p.name] = k
		kder, err := x509.MarshalPKCS8PrivateKey(k)
		must(err)
		kfile := fmt.Sprintf("keys/%s.key.pem", p.name)
		must(os.WriteFile(filepath.Join(out, kfile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600))
		csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, k)
		must(err)
		csrs[p.name] = csr
		for _, av := range []string{"certificates.k8s.io/v1beta1", "certificates.k8s.io/v1"} {
			vecs = append(vecs, vec{Name: p.name + "-stub-" + filepath.Base(av), Expect: "Issued", KeyType: p.name, KeyFile: kfile,
				Object: object(av, "req-"+p.name+"-stub", i, map[string]any{"stubPKCS10Request": csr})})
		}
		// Adversarial: a flipped signature byte.
		bad := append([]byte{}, csr...)
		bad[len(bad)-3] ^= 0xff
		vecs = append(vecs, vec{Name: p.name + "-stub-bad-signature", Expect: "Rejected", KeyType: p.name,
			Object: object("certificates.k8s.io/v1", "req-"+p.name+"-badcsr", i, map[string]any{"stubPKCS10Request": bad})})
		// Adversarial: the pkix + proof carrier, which 1.38 refuses for ML-DSA ("unknown public
		// key type"); the proof is an ML-DSA signature over the pod UID, the nearest analogue.
		spki, err := x509.MarshalPKIXPublicKey(k.PublicKey())
		must(err)
		proof, err := k.Sign(rand.Reader, []byte(uid(i)), &mldsa.Options{})
		must(err)
		vecs = append(vecs, vec{Name: p.name + "-pop-v1beta1", Expect: "Rejected", KeyType: p.name,
			Object: object("certificates.k8s.io/v1beta1", "req-"+p.name+"-pop", i, map[string]any{"pkixPublicKey": spki, "proofOfPossession": proof})})
	}

	// Adversarial: the CSR carries the MLDSA65 key but is signed by another MLDSA65 key (the
	// signed CertificationRequestInfo names the victim's key; the signature is the attacker's).
	i++
	attacker, err := mldsa.GenerateKey(mldsa.MLDSA65())
	must(err)
	var parts csrParts
	_, err = asn1.Unmarshal(csrs["MLDSA65"], &parts)
	must(err)
	sig, err := attacker.Sign(rand.Reader, parts.Info.FullBytes, &mldsa.Options{})
	must(err)
	parts.Signature = asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}
	forged, err := asn1.Marshal(parts)
	must(err)
	vecs = append(vecs, vec{Name: "MLDSA65-stub-signed-by-other-key", Expect: "Rejected", KeyType: "MLDSA65",
		Object: object("certificates.k8s.io/v1", "req-mldsa-forged", i, map[string]any{"stubPKCS10Request": forged})})

	// Adversarial: an MLDSA44 key whose CSR claims the ML-DSA-65 signature algorithm.
	i++
	_, err = asn1.Unmarshal(csrs["MLDSA44"], &parts)
	must(err)
	alg65, err := asn1.Marshal(struct{ OID asn1.ObjectIdentifier }{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 3, 18}})
	must(err)
	parts.Algorithm = asn1.RawValue{FullBytes: alg65}
	mismatched, err := asn1.Marshal(parts)
	must(err)
	vecs = append(vecs, vec{Name: "MLDSA44-stub-claims-mldsa65", Expect: "Rejected", KeyType: "MLDSA44",
		Object: object("certificates.k8s.io/v1", "req-mldsa-mismatch", i, map[string]any{"stubPKCS10Request": mismatched})})

	// Adversarial: an ECDSA P-256 CSR that claims an ML-DSA-65 signature.
	i++
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	ecsr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, ek)
	must(err)
	_, err = asn1.Unmarshal(ecsr, &parts)
	must(err)
	parts.Algorithm = asn1.RawValue{FullBytes: alg65}
	ecClaims, err := asn1.Marshal(parts)
	must(err)
	vecs = append(vecs, vec{Name: "ECDSAP256-stub-claims-mldsa65", Expect: "Rejected", KeyType: "ECDSAP256",
		Object: object("certificates.k8s.io/v1", "req-ec-claims-mldsa", i, map[string]any{"stubPKCS10Request": ecClaims})})

	b, err := json.MarshalIndent(vecs, "", "  ")
	must(err)
	must(os.WriteFile(filepath.Join(out, "vectors-mldsa.json"), b, 0o644))
	fmt.Printf("%d vectors written\n", len(vecs))
}

func readCerts(path string) []*x509.Certificate {
	b, err := os.ReadFile(path)
	must(err)
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		must(err)
		out = append(out, c)
	}
	if len(out) == 0 {
		panic("no certificate in " + path)
	}
	return out
}

func verify(args []string) {
	roots := x509.NewCertPool()
	for _, c := range readCerts(args[0]) {
		roots.AddCert(c)
	}
	chain := readCerts(args[1])
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	leaf := chain[0]
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth} {
		_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{usage}, CurrentTime: time.Now().Add(5 * time.Minute)})
		must(err)
	}
	if len(args) > 2 {
		b, err := os.ReadFile(args[2])
		must(err)
		blk, _ := pem.Decode(b)
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		must(err)
		pub := k.(interface{ Public() crypto.PublicKey }).Public()
		if !pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(leaf.PublicKey) {
			panic("the leaf does not carry the key's public key")
		}
	}
	fmt.Printf("verified: leaf key %s, signed with %s, URIs %v\n", leaf.PublicKeyAlgorithm, leaf.SignatureAlgorithm, leaf.URIs)
}
