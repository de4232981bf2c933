package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"sort"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

type runner struct {
	a, b       *server
	root       string
	verbose    bool
	only       string
	calls      int
	mismatches int
	known      int
	errors     int
	knownSeen  map[string]int
}

func (r *runner) run(c *Corpus) {
	r.knownSeen = map[string]int{}
	for i := range c.Steps {
		st := &c.Steps[i]
		if !st.Setup && r.only != "" && !strings.HasPrefix(st.ID, r.only) {
			continue
		}
		switch {
		case st.Wait != nil:
			for _, s := range []*server{r.a, r.b} {
				if err := r.wait(s, st); err != nil {
					r.errors++
					fmt.Printf("ERROR %s on %s: %v\n", st.ID, s.name, err)
				}
			}
		case st.CreateFrom != "":
			r.createFrom(st)
		default:
			r.step(st)
		}
		if st.SleepMs > 0 {
			time.Sleep(time.Duration(st.SleepMs) * time.Millisecond)
		}
	}
}

// body builds a step's request body for one server.
func (r *runner) body(s *server, st *Step) ([]byte, error) {
	if st.BodyRaw != nil {
		b, err := s.expand(*st.BodyRaw)
		return []byte(b), err
	}
	if st.Body == nil && len(st.Gen) == 0 {
		return nil, nil
	}
	v, err := s.template(st.Body)
	if err != nil {
		return nil, err
	}
	m, _ := v.(map[string]any)
	if m == nil {
		m = map[string]any{}
	}
	if st.Set != nil {
		set, err := s.template(st.Set)
		if err != nil {
			return nil, err
		}
		m = mergePatch(m, set).(map[string]any)
	}
	for _, g := range st.Gen {
		switch {
		case g.PCRKey != nil:
			err = s.applyPCRKey(m, g.PCRKey)
		case g.Issue != nil:
			target := m
			if g.Issue.Into != "" {
				// e.g. into: status-only — the issue goes into a fresh {"status": ...}.
				target = map[string]any{}
				m = target
			}
			err = s.applyIssue(target, g.Issue)
		case g.Bundle != nil:
			err = s.applyBundle(m, g.Bundle)
		}
		if err != nil {
			return nil, err
		}
	}
	return json.Marshal(m)
}

func (r *runner) send(s *server, st *Step) answer {
	body, err := r.body(s, st)
	if err != nil {
		return answer{err: err}
	}
	path, err := s.expand(st.Path + st.Query)
	if err != nil {
		return answer{err: err}
	}
	user := st.As
	if user == "" {
		user = "admin"
	}
	ct := st.ContentType
	if ct == "" {
		ct = "application/json"
	}
	method := st.Method
	if method == "" {
		method = "GET"
	}
	a := s.do(user, method, path, ct, body, st.Watch)
	if a.err == nil {
		for name, ptr := range st.Capture {
			if v, ok := pointer(a.obj, ptr); ok {
				s.vars[name] = v
			} else if a.code < 300 {
				a.err = fmt.Errorf("capture %s: %s not in the answer", name, ptr)
			}
		}
	}
	return a
}

func (r *runner) step(st *Step) {
	r.calls++
	aa := r.send(r.a, st)
	ab := r.send(r.b, st)
	if aa.err != nil || ab.err != nil {
		r.errors++
		fmt.Printf("ERROR %s: %s: %v; %s: %v\n", st.ID, r.a.name, aa.err, r.b.name, ab.err)
		return
	}
	diffs := r.compare(st, aa, ab)
	if r.verbose {
		fmt.Printf("call %s %s %s: %d / %d\n", st.ID, st.Method, st.Path, aa.code, ab.code)
	}
	if len(diffs) == 0 {
		if st.Known != "" {
			fmt.Printf("NOTE %s: listed as %s but the answers now agree\n", st.ID, st.Known)
		}
		return
	}
	r.mismatches++
	tag := "MISMATCH"
	if st.Known != "" {
		r.known++
		r.knownSeen[st.Known]++
		tag = "KNOWN(" + st.Known + ")"
	}
	for _, d := range diffs {
		fmt.Printf("%s %s: %s\n", tag, st.ID, d)
	}
}

// facts extracts the compared parts of one answer.
func (r *runner) facts(s *server, st *Step, a answer) map[string]string {
	f := map[string]string{"code": fmt.Sprint(a.code)}
	obj, _ := a.obj.(map[string]any)
	if obj != nil && obj["kind"] == "Status" {
		f["reason"] = scalar(obj["reason"])
		var fields []string
		if causes, ok := pointer(obj, "/details/causes"); ok {
			for _, c := range causes.([]any) {
				cm, _ := c.(map[string]any)
				e := scalar(cm["field"])
				if st.CauseReasons {
					e += " " + scalar(cm["reason"])
				}
				fields = append(fields, e)
			}
		}
		sort.Strings(fields)
		f["causes"] = strings.Join(fields, ", ")
		if st.Message {
			f["message"] = s.normalise(scalar(obj["message"]))
		}
	}
	if a.obj == nil && a.code >= 400 && !st.Watch {
		f["reason"] = "(not a JSON Status)"
	}
	for _, p := range st.Fields {
		v, ok := pointer(a.obj, p)
		if !ok {
			f["field "+p] = "(absent)"
			continue
		}
		b, _ := json.Marshal(v)
		f["field "+p] = s.normalise(string(b))
	}
	for _, p := range st.Present {
		_, ok := pointer(a.obj, p)
		f["present "+p] = fmt.Sprint(ok)
	}
	if st.Watch {
		var evs []string
		for _, e := range a.events {
			em, _ := e.(map[string]any)
			t := scalar(em["type"])
			name := ""
			if o, ok := em["object"].(map[string]any); ok {
				if n, ok := pointer(o, "/metadata/name"); ok {
					name = s.normalise(scalar(n))
				}
				if t == "ERROR" {
					name = fmt.Sprint(o["code"])
				}
			}
			// BOOKMARKs are timing, not semantics.
			if t != "BOOKMARK" {
				evs = append(evs, t+" "+name)
			}
		}
		f["events"] = strings.Join(evs, "; ")
	}
	return f
}

func (r *runner) compare(st *Step, aa, ab answer) []string {
	fa := r.facts(r.a, st, aa)
	fb := r.facts(r.b, st, ab)
	keys := map[string]bool{}
	for k := range fa {
		keys[k] = true
	}
	for k := range fb {
		keys[k] = true
	}
	order := make([]string, 0, len(keys))
	for k := range keys {
		order = append(order, k)
	}
	sort.Strings(order)
	var out []string
	for _, k := range order {
		if fa[k] != fb[k] {
			out = append(out, fmt.Sprintf("%s: %s=%q %s=%q", k, r.a.name, truncate(fa[k], 600), r.b.name, truncate(fb[k], 600)))
		}
	}
	if len(out) > 0 {
		// The messages help to see why, even where they are not compared.
		for _, x := range []struct {
			s *server
			a answer
		}{{r.a, aa}, {r.b, ab}} {
			if m, ok := x.a.obj.(map[string]any); ok && m["kind"] == "Status" {
				out = append(out, fmt.Sprintf("  %s said: %s", x.s.name, truncate(x.s.normalise(scalar(m["message"])), 600)))
			} else if x.a.code >= 400 {
				out = append(out, fmt.Sprintf("  %s said: %s", x.s.name, truncate(string(x.a.body), 300)))
			}
		}
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func (r *runner) wait(s *server, st *Step) error {
	timeout := time.Duration(st.Wait.TimeoutMs) * time.Millisecond
	if timeout == 0 {
		timeout = 20 * time.Second
	}
	path, err := s.expand(st.Wait.Path)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		a := s.do("admin", "GET", path, "", nil, false)
		if a.err == nil && a.code == 200 {
			if st.Wait.Pointer == "" {
				return nil
			}
			if v, ok := pointer(a.obj, st.Wait.Pointer); ok && scalar(v) == st.Wait.Equals {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waited %v for %s %s == %q (last code %d)", timeout, path, st.Wait.Pointer, st.Wait.Equals, a.code)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// collection is where an object of a file is created.
func collection(obj map[string]any) (string, error) {
	av, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	ns, _ := pointer(obj, "/metadata/namespace")
	base := "/apis/" + av
	if !strings.Contains(av, "/") {
		base = "/api/" + av
	}
	plural := map[string]string{
		"ServiceAccount": "serviceaccounts", "ClusterRole": "clusterroles",
		"ClusterRoleBinding": "clusterrolebindings", "Role": "roles", "RoleBinding": "rolebindings",
		"CustomResourceDefinition": "customresourcedefinitions", "Namespace": "namespaces",
		"ConfigMap": "configmaps", "Secret": "secrets",
		// The chart's rendered RBAC carries its ClusterTrustBundle admission policy.
		"ValidatingAdmissionPolicy":        "validatingadmissionpolicies",
		"ValidatingAdmissionPolicyBinding": "validatingadmissionpolicybindings",
	}[kind]
	if plural == "" {
		return "", fmt.Errorf("no collection known for kind %q", kind)
	}
	if n, ok := ns.(string); ok && n != "" {
		return base + "/namespaces/" + n + "/" + plural, nil
	}
	return base + "/" + plural, nil
}

// createFrom creates every document of a YAML file on both servers, one call each.
func (r *runner) createFrom(st *Step) {
	raw, err := os.ReadFile(filepath.Join(r.root, st.CreateFrom))
	if err != nil {
		r.errors++
		fmt.Printf("ERROR %s: %v\n", st.ID, err)
		return
	}
	for i, doc := range bytes.Split(raw, []byte("\n---")) {
		var obj map[string]any
		if err := yaml.Unmarshal(doc, &obj); err != nil || obj == nil {
			continue
		}
		path, err := collection(obj)
		if err != nil {
			r.errors++
			fmt.Printf("ERROR %s: %v\n", st.ID, err)
			continue
		}
		name, _ := pointer(obj, "/metadata/name")
		sub := &Step{ID: fmt.Sprintf("%s[%d %s %v]", st.ID, i, obj["kind"], name), Method: "POST",
			Path: path, Body: obj, Known: st.Known}
		r.step(sub)
	}
}

// mergePatch applies an RFC 7386 JSON merge patch.
func mergePatch(doc, patch any) any {
	pm, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	dm, ok := doc.(map[string]any)
	if !ok {
		dm = map[string]any{}
	}
	for k, v := range pm {
		if v == nil {
			delete(dm, k)
			continue
		}
		dm[k] = mergePatch(dm[k], v)
	}
	return dm
}
