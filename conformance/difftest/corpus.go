package main

import (
	"fmt"
	"os"

	"sigs.k8s.io/yaml"
)

// Corpus is the file format (corpus.yaml).
type Corpus struct {
	// Users maps an acting-user name used by steps to the identity it impersonates;
	// "admin" (the kubeconfig's own user) is always defined.
	Users map[string]User `json:"users"`
	// Templates holds YAML anchors that steps refer to; it is not read otherwise.
	Templates any    `json:"templates"`
	Steps     []Step `json:"steps"`
}

// User is an impersonated identity.
type User struct {
	User   string   `json:"user"`
	Groups []string `json:"groups"`
}

// Step is one API call (or a wait, or a file of objects to create).
type Step struct {
	ID string `json:"id"`
	// Setup steps always run and are compared like the others.
	Setup  bool   `json:"setup"`
	Method string `json:"method"`
	Path   string `json:"path"`
	As     string `json:"as"`
	// Body is templated (${var}, ${json:var}, ${time:+1h}, ${microtime:+0s}) per server.
	Body any `json:"body"`
	// BodyRaw is sent as it is (after ${var} substitution) instead of Body.
	BodyRaw *string `json:"bodyRaw"`
	// Set is a JSON merge patch (RFC 7386) applied to the templated Body: a variation of a
	// shared template (null removes a field).
	Set         any    `json:"set"`
	ContentType string `json:"contentType"`
	// Gen computes parts of the body in Go (keys, proofs, CSRs, certificate chains).
	Gen []Gen `json:"gen"`
	// Capture stores values of the answer (JSON pointers) as variables of this server.
	Capture map[string]string `json:"capture"`
	// Fields are JSON pointers (with * for every array element) compared after
	// normalisation; Present pointers are compared only for presence.
	Fields  []string `json:"fields"`
	Present []string `json:"present"`
	// Message also compares a Status answer's message (normalised).
	Message bool `json:"message"`
	// CauseReasons also compares details.causes[].reason.
	CauseReasons bool `json:"causeReasons"`
	// Watch reads the answer as a watch stream and compares event types (and object names).
	Watch bool `json:"watch"`
	// Known is the id of a known difference (testkit/KNOWN_DIFFERENCES.md).
	Known string `json:"known"`
	// CreateFrom creates every object of a multi-document YAML file (relative to -root).
	CreateFrom string `json:"createFrom"`
	// Wait retries a GET until a pointer has a value (not compared).
	Wait *Wait `json:"wait"`
	// SleepMs waits after the step on both servers (informers of the real server).
	SleepMs int `json:"sleepMs"`
	// Query is appended to Path (kept apart for readability).
	Query string `json:"query"`
}

// Wait polls Path until Pointer equals Equals (or, with Equals empty, the GET is a 200).
type Wait struct {
	Path      string `json:"path"`
	Pointer   string `json:"pointer"`
	Equals    string `json:"equals"`
	TimeoutMs int    `json:"timeoutMs"`
}

// Gen is one computed part of a body; exactly one member is set.
type Gen struct {
	PCRKey *PCRKeyGen `json:"pcrKey"`
	Issue  *IssueGen  `json:"issue"`
	Bundle *BundleGen `json:"bundle"`
}

// PCRKeyGen makes a key and puts its carrier into body.spec.
type PCRKeyGen struct {
	// Key names the key in this server's key store (reused by Issue).
	Key string `json:"key"`
	// Type: ED25519, ECDSAP224, ECDSAP256, ECDSAP384, ECDSAP521, RSA2048, RSA3072, RSA4096.
	Type string `json:"type"`
	// Carrier: stub (stubPKCS10Request), pkix (pkixPublicKey + proofOfPossession), both.
	Carrier string `json:"carrier"`
	// PodUID is the proof's message (templated).
	PodUID string `json:"podUID"`
	// BadProof signs another message; GarbageProof sends bytes that are no signature.
	BadProof     bool `json:"badProof"`
	GarbageProof bool `json:"garbageProof"`
	// BadStubSignature corrupts the CSR's self-signature.
	BadStubSignature bool `json:"badStubSignature"`
	// Reuse takes the key already stored under Key instead of making one.
	Reuse bool `json:"reuse"`
}

// IssueGen writes an Issued (or Denied/Failed) status into body.status.
type IssueGen struct {
	Key string `json:"key"`
	// Condition: Issued (default), Denied, Failed.
	Condition string `json:"condition"`
	Reason    string `json:"reason"`
	// NotBefore is the leaf's offset from now (default -1m); Lifetime (default 24h);
	// Refresh is beginRefreshAt's offset from notBefore (default half the lifetime).
	NotBefore string `json:"notBefore"`
	Lifetime  string `json:"lifetime"`
	Refresh   string `json:"refresh"`
	// StatusNotBeforeDelta shifts status.notBefore away from the leaf's.
	StatusNotBeforeDelta string `json:"statusNotBeforeDelta"`
	// OtherKey issues the leaf over a fresh key instead of the request's.
	OtherKey bool `json:"otherKey"`
	// Trailing appends bytes after the leaf's DER; NegativeSerial gives it serial -5.
	Trailing       bool     `json:"trailing"`
	NegativeSerial bool     `json:"negativeSerial"`
	DNSNames       []string `json:"dnsNames"`
	// Conditions adds this many extra conditions of other types.
	ExtraConditions []string `json:"extraConditions"`
	// Omit leaves out one of certificateChain, notBefore, notAfter, beginRefreshAt.
	Omit []string `json:"omit"`
	// MergeOnly writes {"status": ...} without the rest of the body.
	Into string `json:"into"`
}

// BundleGen writes a PEM trust bundle into body.spec.trustBundle.
type BundleGen struct {
	// Certs: ca, ca2, leaf, trailing, negative, dup (the first CA again), header (a PEM
	// header line), garbage (text outside PEM blocks), key (a non-CERTIFICATE block).
	Certs []string `json:"certs"`
}

func loadCorpus(path string) (*Corpus, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the corpus: %w", err)
	}
	var c Corpus
	if err := yaml.UnmarshalStrict(raw, &c); err != nil {
		return nil, fmt.Errorf("parsing the corpus %s: %w", path, err)
	}
	seen := map[string]bool{}
	for i, s := range c.Steps {
		if s.ID == "" {
			return nil, fmt.Errorf("corpus step %d has no id", i)
		}
		if seen[s.ID] {
			return nil, fmt.Errorf("corpus step id %q is used twice", s.ID)
		}
		seen[s.ID] = true
		if s.As != "" && s.As != "admin" {
			if _, ok := c.Users[s.As]; !ok {
				return nil, fmt.Errorf("corpus step %s acts as unknown user %q", s.ID, s.As)
			}
		}
	}
	return &c, nil
}
