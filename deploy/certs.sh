#!/usr/bin/env bash
# A private certificate authority and one server certificate signed by it, with openssl.
# Usage: deploy/certs.sh DIR NAME... (DNS names or IP addresses: the certificate's subjectAltNames)
# Writes DIR/ca.pem, DIR/ca.key, DIR/server.pem (leaf + CA chain), DIR/server.key. Keys are 0600.
# For local end-to-end runs and staging only: in production use certificates from a public CA (ACME).
# Never commit the output (make e2e writes it under a temporary directory it deletes).
set -euo pipefail
dir=${1:?usage: deploy/certs.sh DIR NAME...}; shift
[ $# -gt 0 ] || { echo "usage: deploy/certs.sh DIR NAME..." >&2; exit 2; }
mkdir -p "$dir"; umask 077
san=""
for name in "$@"; do
  if [[ $name =~ ^[0-9.]+$ || $name == *:* ]]; then san+="IP:$name,"; else san+="DNS:$name,"; fi
done
san=${san%,}

openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -days 100 \
  -subj "/CN=chatproject e2e CA $(date -u +%Y%m%dT%H%M%SZ)" \
  -addext "basicConstraints=critical,CA:TRUE,pathlen:0" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -subj "/CN=$1" \
  -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
cat > "$dir/server.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=$san
EXT
# Browsers accept at most 398 days for a server certificate; 90 keeps doctor's expiry check (14 days) quiet.
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial -sha256 \
  -days 90 -extfile "$dir/server.ext" -out "$dir/server.crt" 2>/dev/null
cat "$dir/server.crt" "$dir/ca.pem" > "$dir/server.pem"
rm -f "$dir/server.csr" "$dir/server.ext" "$dir/ca.srl" "$dir/server.crt"
chmod 0644 "$dir/ca.pem" "$dir/server.pem"
echo "CA $dir/ca.pem; certificate $dir/server.pem for $san"
