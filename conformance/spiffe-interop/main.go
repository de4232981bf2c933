// Command fetchbundle fetches a SPIFFE bundle endpoint with go-spiffe v2's federation client,
// the client SPIRE and go-spiffe users federate with, and prints what it parsed as one JSON
// line: podcert-signer's bundle endpoint is checked against an implementation it does not
// share code with (tests/controller/bundle_endpoint.rs runs it).
//
//	fetchbundle -url https://127.0.0.1:8443 -td cluster.local -profile web -roots ca.pem
//	fetchbundle -url https://127.0.0.1:8443 -td cluster.local -profile spiffe \
//	    -bundle bundle.pem -endpoint-id spiffe://cluster.local/podcert-signer/bundle-endpoint
package main

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

type result struct {
	TrustDomain        string   `json:"trust_domain"`
	Sequence           *uint64  `json:"sequence"`
	RefreshHintSeconds *float64 `json:"refresh_hint_seconds"`
	X509Authorities    []string `json:"x509_authorities"`
}

func certs(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no certificate", path)
	}
	return out, nil
}

func main() {
	url := flag.String("url", "", "bundle endpoint URL")
	tdName := flag.String("td", "", "the endpoint's trust domain")
	profile := flag.String("profile", "web", "web (https_web) or spiffe (https_spiffe)")
	roots := flag.String("roots", "", "web: PEM roots that verify the serving certificate")
	bundle := flag.String("bundle", "", "spiffe: PEM bundle of the trust domain (the initial bundle)")
	endpointID := flag.String("endpoint-id", "", "spiffe: the endpoint's SPIFFE ID")
	flag.Parse()
	if err := run(*url, *tdName, *profile, *roots, *bundle, *endpointID); err != nil {
		fmt.Fprintln(os.Stderr, "fetchbundle:", err)
		os.Exit(1)
	}
}

func run(url, tdName, profile, roots, bundle, endpointID string) error {
	td, err := spiffeid.TrustDomainFromString(tdName)
	if err != nil {
		return err
	}
	var opt federation.FetchOption
	switch profile {
	case "web":
		cs, err := certs(roots)
		if err != nil {
			return err
		}
		pool := x509.NewCertPool()
		for _, c := range cs {
			pool.AddCert(c)
		}
		opt = federation.WithWebPKIRoots(pool)
	case "spiffe":
		cs, err := certs(bundle)
		if err != nil {
			return err
		}
		id, err := spiffeid.FromString(endpointID)
		if err != nil {
			return err
		}
		opt = federation.WithSPIFFEAuth(x509bundle.FromX509Authorities(td, cs), id)
	default:
		return fmt.Errorf("unknown profile %q", profile)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := federation.FetchBundle(ctx, td, url, opt)
	if err != nil {
		return err
	}
	r := result{TrustDomain: b.TrustDomain().String(), X509Authorities: []string{}}
	if s, ok := b.SequenceNumber(); ok {
		r.Sequence = &s
	}
	if h, ok := b.RefreshHint(); ok {
		secs := h.Seconds()
		r.RefreshHintSeconds = &secs
	}
	for _, c := range b.X509Authorities() {
		sum := sha256.Sum256(c.Raw)
		r.X509Authorities = append(r.X509Authorities, hex.EncodeToString(sum[:]))
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}
