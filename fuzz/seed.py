#!/usr/bin/env python3
"""Writes the seed corpus (fuzz/corpus/<target>/seed-*) from testdata/kubelet-vectors and a few
CAs made with openssl. Re-run after the vectors change; the seeds are committed."""
import base64, json, os, pathlib, struct, subprocess, tempfile

root = pathlib.Path(__file__).resolve().parent.parent
corpus = root / "fuzz" / "corpus"
vectors = json.loads((root / "testdata/kubelet-vectors/vectors.json").read_text())
# Kubernetes 1.38's ML-DSA requests (Go 1.27), stub CSRs and the refused pkix carrier.
vectors += json.loads((root / "testdata/kubelet-vectors/vectors-mldsa.json").read_text())

def write(target, name, data):
    d = corpus / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"seed-{name}").write_bytes(data)

for v in vectors:
    obj, name = v["object"], v["name"]
    write("decode_request", name, json.dumps(obj, indent=1).encode())
    spec = obj.get("spec", {})
    if "stubPKCS10Request" in spec:
        write("stub_csr", name, base64.b64decode(spec["stubPKCS10Request"]))
    if "pkixPublicKey" in spec and "proofOfPossession" in spec:
        uid = spec.get("podUID", "").encode()
        pkix = base64.b64decode(spec["pkixPublicKey"])
        proof = base64.b64decode(spec["proofOfPossession"])
        write("key_proof", name, struct.pack(">H", len(uid)) + uid + struct.pack(">H", len(pkix)) + pkix + proof)

SEP = b"\n----8<----\n"
algs = {
    "p256": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    "p384": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
    "ed25519": ["-newkey", "ed25519"],
    "rsa3072": ["-newkey", "rsa:3072"],
}
with tempfile.TemporaryDirectory() as tmp:
    for name, args in algs.items():
        key, crt = os.path.join(tmp, "k.pem"), os.path.join(tmp, "c.pem")
        subprocess.run(["openssl", "req", "-x509", *args, "-nodes", "-keyout", key, "-out", crt,
                        "-days", "3650", "-subj", "/O=podcert-fuzz/CN=fuzz CA",
                        "-addext", "basicConstraints=critical,CA:TRUE",
                        "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
                       check=True, capture_output=True)
        write("ca_material", name, pathlib.Path(crt).read_bytes() + SEP + pathlib.Path(key).read_bytes())
