#!/usr/bin/env bash
# Generate grpc-rust's TLS test certificates into conformance/certs/ (committed).
#
#   ca.pem / ca.key            self-signed test CA "grpc-rust test CA"
#   server1.pem / server1.key  server cert signed by the CA, CN *.test.google.fr,
#                              SANs *.test.google.fr, waterzooi.test.google.be,
#                              foo.test.google.fr, localhost, 127.0.0.1, ::1
#   client.pem / client.key    client cert signed by the CA (for mutual TLS tests)
#
# Same roles and names as grpc's own test data (ca.pem, server1.pem, server1.key),
# so interop clients use `--server_host_override=foo.test.google.fr`, but made by us.
# RSA 2048, SHA-256, X.509 v3 with the extensions rustls/webpki require, valid
# for about 27 years. Keys are PKCS#8 PEM. These are TEST keys: never trust them.
#
# Usage: scripts/gen-test-certs.sh [--force] [OUTDIR]
# Without --force an existing complete set is left alone.
set -euo pipefail
FORCE=0
if [ "${1:-}" = --force ]; then FORCE=1; shift; fi
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-$HERE/../conformance/certs}
DAYS=10000
mkdir -p "$OUT"
if [ $FORCE = 0 ] && [ -f "$OUT/ca.pem" ] && [ -f "$OUT/server1.pem" ] && [ -f "$OUT/server1.key" ] \
   && [ -f "$OUT/client.pem" ] && [ -f "$OUT/client.key" ]; then
  echo "certs exist in $OUT (use --force to regenerate)"; exit 0
fi
if ! command -v openssl >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get install -y openssl >/dev/null; else sudo apt-get install -y openssl >/dev/null; fi
fi
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT

newkey() { openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null; }

# --- CA ---
newkey "$OUT/ca.key"
openssl req -new -x509 -sha256 -days $DAYS -key "$OUT/ca.key" -out "$OUT/ca.pem" \
  -subj "/C=XX/O=grpc-rust/CN=grpc-rust test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -addext "subjectKeyIdentifier=hash"

# --- leaf certs ---
leaf() { # name cn eku san
  local name=$1 cn=$2 eku=$3 san=$4
  newkey "$OUT/$name.key"
  openssl req -new -sha256 -key "$OUT/$name.key" -out "$TMP/$name.csr" -subj "/C=XX/O=grpc-rust/CN=$cn"
  {
    echo "basicConstraints = critical, CA:FALSE"
    echo "keyUsage = critical, digitalSignature, keyEncipherment"
    echo "extendedKeyUsage = $eku"
    echo "subjectKeyIdentifier = hash"
    echo "authorityKeyIdentifier = keyid"
    [ -n "$san" ] && echo "subjectAltName = $san"
  } > "$TMP/$name.ext"
  openssl x509 -req -sha256 -days $DAYS -in "$TMP/$name.csr" -CA "$OUT/ca.pem" -CAkey "$OUT/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -extfile "$TMP/$name.ext" -out "$OUT/$name.pem" 2>/dev/null
  openssl verify -CAfile "$OUT/ca.pem" "$OUT/$name.pem" >/dev/null
}
leaf server1 '*.test.google.fr' serverAuth \
  'DNS:*.test.google.fr, DNS:waterzooi.test.google.be, DNS:foo.test.google.fr, DNS:localhost, IP:127.0.0.1, IP:::1'
leaf client 'grpc-rust test client' clientAuth ''
chmod 644 "$OUT"/*.pem "$OUT"/*.key
echo "test certificates written to $OUT:"
for c in ca server1 client; do
  printf '  %-12s %s\n' "$c.pem" "$(openssl x509 -in "$OUT/$c.pem" -noout -subject -enddate | tr '\n' ' ')"
done
