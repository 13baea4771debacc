#!/usr/bin/env bash
# Writes the fuzz targets' seed inputs into fuzz/seeds/<target>/ (committed;
# scripts/fuzz.sh hands them to libFuzzer beside the corpus). Needs openssl
# and python3. Run from anywhere: fuzz/seeds/make.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"

# A P-384 CA, a leaf it issued and revoked, its CRL; an RSA CSR and an EC CSR.
openssl ecparam -name secp384r1 -genkey -noout -out ca.key 2>/dev/null
openssl req -x509 -new -key ca.key -subj "/CN=Seed CA/O=imgseal" -days 3650 \
    -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.pem 2>/dev/null
openssl ecparam -name secp384r1 -genkey -noout -out leaf.key 2>/dev/null
openssl req -new -key leaf.key -subj "/CN=Seed signer/O=imgseal" -out leaf.csr 2>/dev/null
cat > ca.cnf <<'CNF'
[ca]
default_ca = seed
[seed]
dir = .
database = index.txt
new_certs_dir = .
serial = serial
crlnumber = crlnumber
default_md = sha384
default_days = 365
default_crl_days = 30
policy = anything
crl_extensions = crl_ext
[anything]
commonName = supplied
[crl_ext]
authorityKeyIdentifier = keyid:always
issuingDistributionPoint = critical,@idp
[idp]
fullname = URI:http://crl.example/seed.crl
onlysomereasons = keyCompromise
CNF
: >index.txt
echo 01 >serial
echo 01 >crlnumber
openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -in leaf.csr -out leaf.pem \
    -extensions v3_leaf -extfile <(printf '[v3_leaf]\nkeyUsage=critical,digitalSignature\n') 2>/dev/null
openssl ca -config ca.cnf -cert ca.pem -keyfile ca.key -revoke leaf.pem -crl_reason keyCompromise 2>/dev/null
openssl ca -gencrl -config ca.cnf -cert ca.pem -keyfile ca.key -out seed.crl 2>/dev/null
openssl genrsa -out rsa.key 2048 2>/dev/null
openssl req -new -key rsa.key -subj "/CN=Image signing/O=Example" -sigopt rsa_padding_mode:pss \
    -sha256 -out rsa.csr 2>/dev/null

python3 - "$here" <<'PY'
import base64, hashlib, json, os, struct, subprocess, sys
out = sys.argv[1]
def put(target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
def der(args):
    return subprocess.run(["openssl"] + args, check=True, capture_output=True).stdout
read = lambda p: open(p, "rb").read()

ca_der = der(["x509", "-in", "ca.pem", "-outform", "DER"])
leaf_der = der(["x509", "-in", "leaf.pem", "-outform", "DER"])
crl_pem = read("seed.crl")
crl_der = der(["crl", "-in", "seed.crl", "-outform", "DER"])

# crl: a mode byte (0 parse, 1 validate as is, 2 re-sign and validate), then the CRL.
for mode in (0, 1, 2):
    put("crl", f"der-{mode}", bytes([mode]) + crl_der)
put("crl", "pem-2", b"\x02" + crl_pem)

# csr
for name in ("leaf", "rsa"):
    pem = read(f"{name}.csr")
    put("csr", f"{name}.pem", pem)
    put("csr", f"{name}.der", der(["req", "-in", f"{name}.csr", "-outform", "DER"]))

# certificate (existing target)
put("certificate", "ca.der", ca_der)
put("certificate", "leaf.pem", read("leaf.pem"))

# anchor_bundle
def bundle(version, entries):
    b = b"IMGSEALB" + struct.pack(">HQI", 1, version, len(entries))
    for ident, d in sorted(entries):
        b += struct.pack(">H", len(ident)) + ident.encode() + struct.pack(">I", len(d)) + d
    return b
put("anchor_bundle", "empty", bundle(1, []))
put("anchor_bundle", "one", bundle(3, [("ca", ca_der)]))
put("anchor_bundle", "two", bundle(7, [("ca", ca_der), ("signer-2026", leaf_der)]))

# tpm_record
def record(version, inline, count, blen, digest):
    r = b"IMGSEALR" + struct.pack(">HBBQII", 1, inline, 0, version, count, blen) + digest
    return r + bytes(256 - len(r))
two = bundle(7, [("ca", ca_der), ("signer-2026", leaf_der)])
rec = record(7, 1, 2, len(two), hashlib.sha256(two).digest())
put("tpm_record", "record", rec)
put("tpm_record", "empty-set", record(1, 0, 0, 22, hashlib.sha256(bundle(1, [])).digest()))

# tpms_attest
def attest(kind, signer, nonce, index_name, payload):
    t2b = lambda b: struct.pack(">H", len(b)) + b
    a = struct.pack(">IH", 0xFF544347, kind) + t2b(signer) + t2b(nonce)
    a += struct.pack(">QIIBQ", 123456, 3, 0, 1, 0x2023_0117_0000_0000) + t2b(index_name)
    return a + payload
signer = b"\x00\x0b" + hashlib.sha256(b"signer").digest()
iname = b"\x00\x0b" + hashlib.sha256(b"index").digest()
nv = attest(0x8014, signer, b"N" * 16, iname, struct.pack(">H", 0) + struct.pack(">H", 256) + rec)
put("tpms_attest", "nv", nv)
put("tpms_attest", "nv-digest", attest(0x801C, signer, b"", iname, struct.pack(">H", 32) + hashlib.sha256(rec).digest()))
ctr = struct.pack(">Q", 7)
put("tpms_attest", "counter", attest(0x8014, signer, b"N" * 16, iname, struct.pack(">HH", 0, 8) + ctr))

# attestation_doc: a mode byte, then the document.
ak_pem = der(["pkey", "-in", "ca.key", "-pubout"]).decode()  # any public key; the target swaps in its AK
def ci(index, contents, attest_bytes):
    return {"nv_index": f"{index:#010x}", "contents": contents.hex(), "attest": attest_bytes.hex(), "signature": "3006020101020101"}
doc = {
    "format": "imgseal-anchor-attestation", "version": 1, "nonce": ("N" * 16).encode().hex(),
    "ak": {"handle": "0x81018000", "public_key_pem": ak_pem, "public_area": "0023000b", "name": "000b" + "00" * 32},
    "record": ci(0x0181A000, rec, nv), "counter": ci(0x0181A001, ctr, attest(0x8014, signer, b"N" * 16, iname, struct.pack(">HH", 0, 8) + ctr)),
    "anchors": {"version": 7, "digest": hashlib.sha256(two).hexdigest(), "certificates": 2, "counter": 7, "locked": False},
    "tpm": {"manufacturer": "IBM", "firmware_version": "0x2023"},
}
text = json.dumps(doc, indent=1).encode()
# Two mode bytes: bit 0 use the target's AK, 1 keep the document's public area,
# 2 rebuild the TPMS_ATTESTs, 3 re-sign them, 4 expect a bundle, 5 expect the
# record's digest, 6 pin the AK, 7 require locked; second byte: bit 0 locked
# indices, 1 different power cycles, 2 a record naming the expected bundle.
for mode, mode2 in ((0x00, 0), (0x0F, 0), (0x2D, 0), (0x2F, 0), (0x6D, 0), (0xAD, 1), (0xAD, 0), (0x2D, 2), (0x1D, 4), (0x5D, 5)):
    put("attestation_doc", f"doc-{mode:02x}-{mode2}", bytes([mode, mode2]) + text)
enroll = {
    "format": "imgseal-ak-enrollment", "version": 1,
    "ek": {"kind": "rsa2048", "certificate_pem": "", "certificate_subject": "", "certificate_issuer": "", "certificate_verified": False},
    "ak": doc["ak"], "activation": {"activated": True}, "tpm": doc["tpm"],
}
put("attestation_doc", "enrollment", b"\x00\x00" + json.dumps(enroll).encode())
put("attestation_doc", "pem-key", b"\x00\x00" + ak_pem.encode())
# Remote enrollment: a challenge, a kept secret, a response; the enrollment
# again with mode2 bit 3 (the target answers with the kept secret).
put("attestation_doc", "enrollment-answered", b"\x00\x08" + json.dumps(enroll).encode())
put("attestation_doc", "challenge", b"\x00\x00" + json.dumps({
    "format": "imgseal-ak-challenge", "version": 1, "ek_kind": "rsa2048", "ak_name": "000b" + "00" * 32,
    "id_object": "00" * 68, "encrypted_secret": "00" * 256}).encode())
put("attestation_doc", "challenge-secret", b"\x00\x00" + json.dumps({
    "format": "imgseal-ak-challenge-secret", "version": 1, "secret": "00" * 32,
    "enrollment_sha256": "00" * 32, "ak_name": "000b" + "00" * 32, "ek_certificate_verified": None}).encode())
put("attestation_doc", "response", b"\x00\x00" + json.dumps({
    "format": "imgseal-ak-response", "version": 1, "ak_name": "000b" + "00" * 32, "secret": "00" * 32}).encode())

# manifest: a mode byte (bit 0 re-sign, 1 fix img_signature, 2 fix fs-verity digest), then the manifest.
image = bytes(range(256)) * 40
lin = hashlib.sha256(image).hexdigest()
man = {
    "format": "imgseal-manifest", "version": 1,
    "image": {"name": "seed.img", "size": len(image)},
    "linear": {"hash_method": "SHA-256", "digest": lin},
    "fsverity": {"digest": "sha256:" + "00" * 32, "hash_algorithm": "sha256", "block_size": 4096, "salt": "", "root_hash": "11" * 32, "tree_file": "seed.tree"},
    "glance": {"img_signature": base64.b64encode(b"\x30\x06\x02\x01\x01\x02\x01\x01").decode(), "img_signature_certificate_uuid": "c1",
               "img_signature_hash_method": "SHA-256", "img_signature_key_type": "ECC_SECP384R1"},
    "signer": {"certificate_id": "c1", "key_type": "ECC_SECP384R1", "hash_method": "SHA-256"},
    "signature": base64.b64encode(b"\x30\x06\x02\x01\x01\x02\x01\x01").decode(),
}
for mode in (0, 1, 7):
    put("manifest", f"m-{mode}", bytes([mode]) + json.dumps(man, indent=2).encode())
rsa = dict(man, signer={"certificate_id": "c1", "key_type": "RSA-PSS", "hash_method": "SHA-512"})
put("manifest", "rsa-7", b"\x07" + json.dumps(rsa).encode())

# tree: mode, block-size exponent, salt length, salt, size (LE u32), seed, flip (LE u32), offset, len, tail.
def tree(mode, bexp, salt, size, flip, offset, length, tail=b""):
    return bytes([mode, bexp, len(salt)]) + salt + struct.pack("<IB", size, 0x5a) + struct.pack("<III", flip, offset, length) + tail
put("tree", "sha256-1k", tree(1, 0, b"", 70000, 0, 0, 70000))
put("tree", "sha512-1k-salted", tree(3, 0, b"salt", 90000, 5000, 4000, 3000, b"\x10\x00\x00\x01"))
put("tree", "flip", tree(5, 2, b"", 50000, 12345, 12000, 1000))
put("tree", "raw", tree(0, 0, b"", 5000, 0, 0, 100, bytes(64)))

# image_properties, config, pkcs11_uri (existing targets)
put("image_properties", "show", json.dumps({"id": "1", "properties": {"img_signature": "AAAA", "img_signature_hash_method": "SHA-256",
    "img_signature_key_type": "RSA-PSS", "img_signature_certificate_uuid": "c1"}}))
put("image_properties", "show-string", json.dumps({"id": "1", "properties": "img_signature='AAAA', img_signature_hash_method='SHA-256', os_distro='ubuntu'"}))
put("config", "toml", '[validation]\npolicy = "strict"\ntrusted_certificate_ids = ["ca"]\n')
put("config", "nova", "[glance]\nverify_glance_signatures = True\nenable_certificate_validation = true\ndefault_trusted_certificate_ids = a,b\n")
put("pkcs11_uri", "uri", "pkcs11:token=imgseal;object=signer%20key;type=private?pin-source=file:/etc/pin&module-path=/usr/lib/softhsm/libsofthsm2.so")
PY

# strict_path: a mode byte (bit 0: with CRLs), then PKITS 4.1.5's middle
# certificate (and, as a decoy, the DSA CA itself).
pkits="$here/../../tests/data/pkits/certs"
mkdir -p "$here/strict_path"
{ printf '\x00'; cat "$pkits/DSAParametersInheritedCACert.crt"; } >"$here/strict_path/inherited-ca"
{ printf '\x01'; cat "$pkits/DSAParametersInheritedCACert.crt"; } >"$here/strict_path/inherited-ca-crls"
{ printf '\x01'; cat "$pkits/DSACACert.crt"; } >"$here/strict_path/dsa-ca"
# sha256x2: a little-endian prefix length, the prefix, a message, and the
# mask that makes the second message. A padded fs-verity salt before a
# 1 KiB block; a 55-byte prefix (the one-block padding edge) before 9 bytes.
python3 - "$here" <<'PY'
import os, random, struct, sys
d = os.path.join(sys.argv[1], "sha256x2")
os.makedirs(d, exist_ok=True)
r = random.Random(15)
def put(name, plen, mlen):
    body = bytes(r.randrange(256) for _ in range(plen + 2 * mlen))
    open(os.path.join(d, name), "wb").write(struct.pack("<H", plen) + body)
put("salted-1k-block", 64, 1024)
put("prefix-55-msg-9", 55, 9)
PY
echo "seeds written to $here"
