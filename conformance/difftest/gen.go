package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// newKey makes a subject key of a kubelet keyType (and RSA2048/ECDSAP224, which are refused).
func newKey(kind string) (crypto.Signer, error) {
	switch kind {
	case "ED25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	case "ECDSAP224":
		return ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	case "ECDSAP256":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ECDSAP384":
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ECDSAP521":
		return ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "RSA2048":
		return rsa.GenerateKey(rand.Reader, 2048)
	case "RSA3072":
		return rsa.GenerateKey(rand.Reader, 3072)
	case "RSA4096":
		return rsa.GenerateKey(rand.Reader, 4096)
	}
	return nil, fmt.Errorf("unknown key type %q", kind)
}

// proof signs the pod UID as the kubelet does (podcertificatemanager.go).
func proof(k crypto.Signer, msg string) ([]byte, error) {
	h := sha256.Sum256([]byte(msg))
	switch t := k.(type) {
	case ed25519.PrivateKey:
		return ed25519.Sign(t, []byte(msg)), nil
	case *ecdsa.PrivateKey:
		return ecdsa.SignASN1(rand.Reader, t, h[:])
	case *rsa.PrivateKey:
		return rsa.SignPSS(rand.Reader, t, crypto.SHA256, h[:], nil)
	}
	return nil, fmt.Errorf("no proof for %T", k)
}

// applyPCRKey puts the key carrier into body.spec.
func (s *server) applyPCRKey(body map[string]any, g *PCRKeyGen) error {
	k, ok := s.keys[g.Key]
	if !g.Reuse || !ok {
		var err error
		if k, err = newKey(g.Type); err != nil {
			return err
		}
		s.keys[g.Key] = k
	}
	spec, _ := body["spec"].(map[string]any)
	if spec == nil {
		spec = map[string]any{}
		body["spec"] = spec
	}
	uid, err := s.expand(g.PodUID)
	if err != nil {
		return err
	}
	carrier := g.Carrier
	if carrier == "" {
		carrier = "stub"
	}
	if carrier == "pkix" || carrier == "both" {
		spki, err := x509.MarshalPKIXPublicKey(k.Public())
		if err != nil {
			return err
		}
		msg := uid
		if g.BadProof {
			msg = uid + "-other"
		}
		p, err := proof(k, msg)
		if err != nil {
			return err
		}
		if g.GarbageProof {
			p = []byte("not a signature")
		}
		spec["pkixPublicKey"] = base64.StdEncoding.EncodeToString(spki)
		spec["proofOfPossession"] = base64.StdEncoding.EncodeToString(p)
	}
	if carrier == "stub" || carrier == "both" {
		csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, k)
		if err != nil {
			return err
		}
		if g.BadStubSignature {
			csr[len(csr)-3] ^= 0x55
		}
		spec["stubPKCS10Request"] = base64.StdEncoding.EncodeToString(csr)
	}
	return nil
}

// testCA is a P-256 CA made at run time for issued statuses and trust bundles.
type testCA struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
	der  []byte
	der2 []byte // a second, unrelated CA
}

func newTestCA() (*testCA, error) {
	mk := func(cn string) (*ecdsa.PrivateKey, *x509.Certificate, []byte, error) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, nil, err
		}
		tpl := &x509.Certificate{
			SerialNumber:          big.NewInt(time.Now().UnixNano()),
			Subject:               pkix.Name{CommonName: cn},
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              time.Now().Add(24 * 365 * time.Hour),
			IsCA:                  true,
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		}
		der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, k.Public(), k)
		if err != nil {
			return nil, nil, nil, err
		}
		c, err := x509.ParseCertificate(der)
		return k, c, der, err
	}
	k, c, der, err := mk("difftest CA")
	if err != nil {
		return nil, fmt.Errorf("making the test CA: %w", err)
	}
	_, _, der2, err := mk("difftest CA 2")
	if err != nil {
		return nil, fmt.Errorf("making the second test CA: %w", err)
	}
	return &testCA{key: k, cert: c, der: der, der2: der2}, nil
}

// leaf issues a leaf over pub; negative makes its serial -5 (which Go's parser refuses).
func (ca *testCA) leaf(pub crypto.PublicKey, nb, na time.Time, dns []string, negative bool) ([]byte, error) {
	serial := big.NewInt(0).SetUint64(uint64(time.Now().UnixNano()))
	tpl := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             nb,
		NotAfter:              na,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		DNSNames:              dns,
	}
	if negative {
		// Go refuses to make a certificate with a negative serial, so one is made with a
		// positive serial and its TBS re-encoded and re-signed.
		der, err := x509.CreateCertificate(rand.Reader, tpl, ca.cert, pub, ca.key)
		if err != nil {
			return nil, err
		}
		return resignWithSerial(der, big.NewInt(-5), ca.key)
	}
	return x509.CreateCertificate(rand.Reader, tpl, ca.cert, pub, ca.key)
}

type rawCert struct {
	TBS asn1.RawValue
	Alg asn1.RawValue
	Sig asn1.BitString
}

// resignWithSerial replaces a certificate's serial and signs the new TBS with key.
func resignWithSerial(der []byte, serial *big.Int, key *ecdsa.PrivateKey) ([]byte, error) {
	var c rawCert
	if _, err := asn1.Unmarshal(der, &c); err != nil {
		return nil, err
	}
	// Walk the TBS sequence by hand: version [0], serial INTEGER, then the rest unchanged.
	var seq asn1.RawValue
	if _, err := asn1.Unmarshal(c.TBS.FullBytes, &seq); err != nil {
		return nil, err
	}
	inner := seq.Bytes
	var version asn1.RawValue
	rest, err := asn1.Unmarshal(inner, &version)
	if err != nil {
		return nil, err
	}
	var oldSerial asn1.RawValue
	rest, err = asn1.Unmarshal(rest, &oldSerial)
	if err != nil {
		return nil, err
	}
	newSerial, err := asn1.Marshal(serial)
	if err != nil {
		return nil, err
	}
	body := append(append(append([]byte{}, version.FullBytes...), newSerial...), rest...)
	tbs, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: body})
	if err != nil {
		return nil, err
	}
	h := sha256.Sum256(tbs)
	sig, err := ecdsa.SignASN1(rand.Reader, key, h[:])
	if err != nil {
		return nil, err
	}
	out := struct {
		TBS asn1.RawValue
		Alg asn1.RawValue
		Sig asn1.BitString
	}{asn1.RawValue{FullBytes: tbs}, c.Alg, asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}}
	return asn1.Marshal(out)
}

func pemCert(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// applyIssue writes a status into body.status (body["status"] replaced).
func (s *server) applyIssue(body map[string]any, g *IssueGen) error {
	cond := g.Condition
	if cond == "" {
		cond = "Issued"
	}
	reason := g.Reason
	if reason == "" {
		reason = "Difftest"
	}
	now := time.Now().UTC().Truncate(time.Second)
	conds := []any{map[string]any{"type": cond, "status": "True", "reason": reason,
		"message": "difftest", "lastTransitionTime": now.Format(time.RFC3339)}}
	for _, t := range g.ExtraConditions {
		conds = append(conds, map[string]any{"type": t, "status": "True", "reason": reason,
			"message": "difftest", "lastTransitionTime": now.Format(time.RFC3339)})
	}
	st := map[string]any{"conditions": conds}
	if cond == "Issued" {
		k, ok := s.keys[g.Key]
		if !ok {
			return fmt.Errorf("issue: no key %q", g.Key)
		}
		pub := k.Public()
		if g.OtherKey {
			other, err := newKey("ECDSAP256")
			if err != nil {
				return err
			}
			pub = other.Public()
		}
		nbOff, err := offsetOr(g.NotBefore, -time.Minute)
		if err != nil {
			return err
		}
		life, err := offsetOr(g.Lifetime, 24*time.Hour)
		if err != nil {
			return err
		}
		refresh, err := offsetOr(g.Refresh, life/2)
		if err != nil {
			return err
		}
		delta, err := offsetOr(g.StatusNotBeforeDelta, 0)
		if err != nil {
			return err
		}
		nb := now.Add(nbOff)
		na := nb.Add(life)
		der, err := s.ca.leaf(pub, nb, na, g.DNSNames, g.NegativeSerial)
		if err != nil {
			return fmt.Errorf("issuing the leaf: %w", err)
		}
		if g.Trailing {
			der = append(der, 0x00, 0x00)
		}
		st["certificateChain"] = pemCert(der) + pemCert(s.ca.der)
		st["notBefore"] = nb.Add(delta).Format(time.RFC3339)
		st["notAfter"] = na.Format(time.RFC3339)
		st["beginRefreshAt"] = nb.Add(refresh).Format(time.RFC3339)
	}
	for _, o := range g.Omit {
		delete(st, o)
	}
	body["status"] = st
	return nil
}

func offsetOr(s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	return offset(s)
}

// applyBundle writes body.spec.trustBundle.
func (s *server) applyBundle(body map[string]any, g *BundleGen) error {
	spec, _ := body["spec"].(map[string]any)
	if spec == nil {
		spec = map[string]any{}
		body["spec"] = spec
	}
	var b strings.Builder
	for _, c := range g.Certs {
		switch c {
		case "ca", "dup":
			b.WriteString(pemCert(s.ca.der))
		case "ca2":
			b.WriteString(pemCert(s.ca.der2))
		case "leaf":
			k, err := newKey("ECDSAP256")
			if err != nil {
				return err
			}
			der, err := s.ca.leaf(k.Public(), time.Now().Add(-time.Minute), time.Now().Add(time.Hour), nil, false)
			if err != nil {
				return err
			}
			b.WriteString(pemCert(der))
		case "trailing":
			b.WriteString(pemCert(append(append([]byte{}, s.ca.der2...), 0x00, 0x00)))
		case "negative":
			der, err := resignWithSerial(s.ca.der2, big.NewInt(-5), s.ca.key)
			if err != nil {
				return err
			}
			b.WriteString(pemCert(der))
		case "header":
			b.WriteString(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Headers: map[string]string{"X": "y"}, Bytes: s.ca.der2})))
		case "garbage":
			b.WriteString("hello\n")
		case "key":
			b.WriteString(string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}})))
		default:
			return fmt.Errorf("bundle: unknown part %q", c)
		}
	}
	spec["trustBundle"] = b.String()
	return nil
}
