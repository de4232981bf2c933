// Command difftest sends one corpus of Kubernetes API calls, in order, to two servers (for
// example podcert-testkit's emulator and a real kube-apiserver) and prints every difference
// in the parts of the answers the corpus says to compare. Values that must differ between
// servers (uids, resourceVersions, generated names) are captured into per-server variables
// and substituted into later calls; in compared values they are put back as ${name}.
//
// The last line is `difftest: N calls, M mismatches (known: K)`; the exit code is 1 when
// some mismatch is not a listed known difference, 2 on a usage or setup error.
package main

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
)

func main() {
	a := flag.String("a", "", "kubeconfig of server A (e.g. the emulator)")
	b := flag.String("b", "", "kubeconfig of server B (e.g. the real kube-apiserver)")
	nameA := flag.String("name-a", "A", "label of server A in the output")
	nameB := flag.String("name-b", "B", "label of server B in the output")
	corpus := flag.String("corpus", "corpus.yaml", "the corpus file")
	root := flag.String("root", ".", "directory that file paths in the corpus are relative to")
	only := flag.String("only", "", "run only steps whose id starts with this prefix (setup steps always run)")
	verbose := flag.Bool("v", false, "print every call and both answers' codes")
	flag.Parse()
	if *a == "" || *b == "" {
		fmt.Fprintln(os.Stderr, "difftest: -a and -b (two kubeconfig files) are required")
		os.Exit(2)
	}
	c, err := loadCorpus(*corpus)
	if err != nil {
		fmt.Fprintf(os.Stderr, "difftest: %v\n", err)
		os.Exit(2)
	}
	sa, err := newServer(*nameA, *a, c.Users)
	if err != nil {
		fmt.Fprintf(os.Stderr, "difftest: server %s: %v\n", *nameA, err)
		os.Exit(2)
	}
	sb, err := newServer(*nameB, *b, c.Users)
	if err != nil {
		fmt.Fprintf(os.Stderr, "difftest: server %s: %v\n", *nameB, err)
		os.Exit(2)
	}
	r := &runner{a: sa, b: sb, root: *root, verbose: *verbose, only: *only}
	r.run(c)
	unexplained := r.mismatches - r.known
	if len(r.knownSeen) > 0 {
		ids := make([]string, 0, len(r.knownSeen))
		for id, n := range r.knownSeen {
			ids = append(ids, fmt.Sprintf("%s x%d", id, n))
		}
		sort.Strings(ids)
		fmt.Printf("known differences seen: %s\n", strings.Join(ids, ", "))
	}
	fmt.Printf("difftest: %d calls, %d mismatches (known: %d)\n", r.calls, r.mismatches, r.known)
	if r.errors > 0 || unexplained > 0 {
		os.Exit(1)
	}
}
