#!/usr/bin/env python3
"""Fails if the modules of a crate import each other in a cycle, at any level.

For every module directory (a crate's src/ and each directory below it), the graph is the
directory's modules and the references between them (`crate::a::b::X` or, from a file
directly in the directory, `super::X`); a strongly connected component of more than one
module is a cycle. Unit-test modules (`#[cfg(test)] mod tests`) and comments are ignored.
Usage: check-module-cycles.py SRC_DIR... (default: every crate of the workspace).
"""
import os
import re
import sys

DEFAULT = ["src", "crates/podcert-core/src", "crates/podcert-k8s/src",
           "crates/podcert-runtime/src", "crates/podcert-pkcs11/src", "testkit/src", "workload/src"]


def source(path):
    src = re.sub(r"//[^\n]*", "", open(path, encoding="utf-8").read())
    i = src.find("#[cfg(test)]\nmod tests")
    return src[:i] if i >= 0 else src


def graph(directory, prefix):
    """Modules of `directory` (named `prefix`X) -> the sibling modules they reference."""
    names = set()
    for entry in os.listdir(directory):
        path = os.path.join(directory, entry)
        if entry.endswith(".rs") and entry not in ("lib.rs", "main.rs", "mod.rs"):
            names.add(entry[:-3])
        elif os.path.isdir(path) and os.path.exists(os.path.join(path, "mod.rs")):
            names.add(entry)
    pre = re.escape(prefix)
    edges = {n: set() for n in names}
    for n in names:
        files = [os.path.join(directory, n + ".rs")]
        sub = os.path.join(directory, n)
        if os.path.isdir(sub):
            files = [os.path.join(dp, f) for dp, _, fs in os.walk(sub) for f in fs if f.endswith(".rs")]
        for f in files:
            if not os.path.exists(f):
                continue
            src = source(f)
            refs = set(re.findall(pre + r"([a-z_0-9]+)", src))
            for group in re.findall(pre + r"\{([^}]*)\}", src):
                refs |= set(re.findall(r"(?:^|,)\s*([a-z_0-9]+)", group))
            if prefix != "crate::" and os.path.dirname(f) == directory:
                refs |= set(re.findall(r"super::([a-z_0-9]+)", src))
            edges[n] |= {r for r in refs if r in names and r != n}
    return edges


def cycles(edges):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main(roots):
    found = []
    for root in roots:
        for dp, _, _ in os.walk(root):
            if dp != root and not os.path.exists(os.path.join(dp, "mod.rs")):
                continue
            rel = os.path.relpath(dp, root)
            prefix = "crate::" + ("" if rel == "." else rel.replace(os.sep, "::") + "::")
            for c in cycles(graph(dp, prefix)):
                found.append(f"{dp}: {' <-> '.join(c)}")
    for f in found:
        print("module cycle:", f)
    if not found:
        print(f"no module cycles in {len(roots)} crates")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or DEFAULT))
