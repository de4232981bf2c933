package main

import (
	"bytes"
	"crypto"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// server is one API server with its per-run state: captured variables and generated keys.
type server struct {
	name    string
	host    string
	clients map[string]*http.Client
	vars    map[string]any
	keys    map[string]crypto.Signer
	ca      *testCA
}

func newServer(name, kubeconfig string, users map[string]User) (*server, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("loading the kubeconfig %s: %w", kubeconfig, err)
	}
	s := &server{name: name, host: strings.TrimRight(cfg.Host, "/"), clients: map[string]*http.Client{},
		vars: map[string]any{}, keys: map[string]crypto.Signer{}}
	all := map[string]User{"admin": {}}
	for k, v := range users {
		all[k] = v
	}
	for k, u := range all {
		c := rest.CopyConfig(cfg)
		if u.User != "" {
			c.Impersonate = rest.ImpersonationConfig{UserName: u.User, Groups: u.Groups}
		}
		c.Timeout = 30 * time.Second
		hc, err := rest.HTTPClientFor(c)
		if err != nil {
			return nil, fmt.Errorf("making a client for %s: %w", k, err)
		}
		s.clients[k] = hc
	}
	if s.ca, err = newTestCA(); err != nil {
		return nil, err
	}
	return s, nil
}

// answer is what a server said to one call.
type answer struct {
	code   int
	body   []byte
	obj    any   // the decoded JSON body, nil if not JSON
	events []any // watch events, for Watch steps
	err    error
}

func (s *server) do(user, method, path, contentType string, body []byte, watch bool) answer {
	req, err := http.NewRequest(method, s.host+path, bytes.NewReader(body))
	if err != nil {
		return answer{err: err}
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	hc := s.clients[user]
	resp, err := hc.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	a := answer{code: resp.StatusCode}
	if watch && resp.StatusCode == 200 {
		dec := json.NewDecoder(resp.Body)
		for {
			var ev any
			if err := dec.Decode(&ev); err != nil {
				if err != io.EOF {
					a.err = fmt.Errorf("reading the watch stream: %w", err)
				}
				break
			}
			a.events = append(a.events, ev)
		}
		return a
	}
	a.body, a.err = io.ReadAll(resp.Body)
	if len(a.body) > 0 {
		var v any
		if json.Unmarshal(a.body, &v) == nil {
			a.obj = v
		}
	}
	return a
}

var varRe = regexp.MustCompile(`\$\{([a-zA-Z]+:)?([^}]*)\}`)

// expand substitutes ${var}, ${time:+1h} (RFC 3339, seconds) and ${microtime:-1m}
// (microseconds, as Lease times are written) in a string.
func (s *server) expand(in string) (string, error) {
	var firstErr error
	out := varRe.ReplaceAllStringFunc(in, func(m string) string {
		g := varRe.FindStringSubmatch(m)
		fn, arg := strings.TrimSuffix(g[1], ":"), g[2]
		switch fn {
		case "":
			v, ok := s.vars[arg]
			if !ok {
				if firstErr == nil {
					firstErr = fmt.Errorf("variable %q was never captured", arg)
				}
				return m
			}
			return scalar(v)
		case "time", "microtime":
			d, err := offset(arg)
			if err != nil {
				firstErr = err
				return m
			}
			t := time.Now().UTC().Add(d)
			if fn == "time" {
				return t.Format(time.RFC3339)
			}
			return t.Format("2006-01-02T15:04:05.000000Z07:00")
		default:
			return m
		}
	})
	return out, firstErr
}

func offset(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(strings.TrimPrefix(s, "+"))
	if err != nil {
		return 0, fmt.Errorf("bad time offset %q: %w", s, err)
	}
	return d, nil
}

func scalar(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64)
	case nil:
		return ""
	default:
		b, _ := json.Marshal(t)
		return string(b)
	}
}

// template walks a body; a string that is exactly ${json:var} becomes the captured value.
func (s *server) template(v any) (any, error) {
	switch t := v.(type) {
	case string:
		if strings.HasPrefix(t, "${json:") && strings.HasSuffix(t, "}") {
			name := t[len("${json:") : len(t)-1]
			val, ok := s.vars[name]
			if !ok {
				return nil, fmt.Errorf("variable %q was never captured", name)
			}
			return deepCopy(val), nil
		}
		return s.expand(t)
	case map[string]any:
		out := map[string]any{}
		for k, e := range t {
			ek, err := s.expand(k)
			if err != nil {
				return nil, err
			}
			if out[ek], err = s.template(e); err != nil {
				return nil, err
			}
		}
		return out, nil
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			var err error
			if out[i], err = s.template(e); err != nil {
				return nil, err
			}
		}
		return out, nil
	default:
		return v, nil
	}
}

func deepCopy(v any) any {
	b, _ := json.Marshal(v)
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

// normalise replaces every captured string variable's value (long enough to be unique) by
// ${name}, longest first, so generated names inside longer values are replaced whole.
func (s *server) normalise(v string) string {
	type kv struct{ k, v string }
	var vs []kv
	for k, val := range s.vars {
		if str, ok := val.(string); ok && len(str) >= 5 {
			vs = append(vs, kv{k, str})
		}
	}
	sort.Slice(vs, func(i, j int) bool {
		if len(vs[i].v) != len(vs[j].v) {
			return len(vs[i].v) > len(vs[j].v)
		}
		return vs[i].k < vs[j].k
	})
	for _, e := range vs {
		v = strings.ReplaceAll(v, e.v, "${"+e.k+"}")
	}
	// Certificates are made per server: only their place in a message is compared.
	return pemRe.ReplaceAllString(v, "<PEM>")
}

var pemRe = regexp.MustCompile(`(?s)-----BEGIN [A-Z ]+-----.*?-----END [A-Z ]+-----(\\n|\n)?`)

// pointer resolves a JSON pointer in which * stands for every array element (or map value);
// the result is a list when a * was used.
func pointer(doc any, ptr string) (any, bool) {
	if ptr == "" || ptr == "/" {
		return doc, true
	}
	parts := strings.Split(strings.TrimPrefix(ptr, "/"), "/")
	for i := range parts {
		parts[i] = strings.ReplaceAll(strings.ReplaceAll(parts[i], "~1", "/"), "~0", "~")
	}
	return walk(doc, parts)
}

func walk(doc any, parts []string) (any, bool) {
	if len(parts) == 0 {
		return doc, true
	}
	p, rest := parts[0], parts[1:]
	switch t := doc.(type) {
	case map[string]any:
		if p == "*" {
			keys := make([]string, 0, len(t))
			for k := range t {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var out []any
			for _, k := range keys {
				if v, ok := walk(t[k], rest); ok {
					out = append(out, v)
				}
			}
			return out, true
		}
		v, ok := t[p]
		if !ok {
			return nil, false
		}
		return walk(v, rest)
	case []any:
		if p == "*" {
			out := []any{}
			for _, e := range t {
				if v, ok := walk(e, rest); ok {
					out = append(out, v)
				}
			}
			return out, true
		}
		i, err := strconv.Atoi(p)
		if err != nil || i < 0 || i >= len(t) {
			return nil, false
		}
		return walk(t[i], rest)
	default:
		return nil, false
	}
}
