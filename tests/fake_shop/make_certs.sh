#!/usr/bin/env bash
# make_certs.sh DIR — TLS material for the fake shop, with the openssl CLI.
#
#   DIR/ca.pem, DIR/ca.key           a test CA (EC P-256, 30 days)
#   DIR/server.pem, DIR/server.key   signed by that CA; subjectAltName
#                                    DNS:localhost, IP:127.0.0.1; serverAuth
#   DIR/untrusted.pem, .key          self-signed, same names, NOT from the CA:
#                                    for checking that verification fails
#
# Idempotent: does nothing when DIR/server.pem exists.  Everything is made in
# a scratch directory and moved into DIR with server.pem last, so a
# half-made DIR never looks finished.
set -euo pipefail

if [ $# -ne 1 ]; then
	echo "usage: $0 DIR" >&2
	exit 2
fi
dir=$1
if [ -e "$dir/server.pem" ]; then
	exit 0
fi
mkdir -p "$dir"
work=$(mktemp -d "$dir/.make_certs.XXXXXX")
trap 'rm -rf "$work"' EXIT
umask 077

days=30
san="subjectAltName=DNS:localhost,IP:127.0.0.1"

new_key() {
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

# The CA.
new_key "$work/ca.key"
openssl req -x509 -new -key "$work/ca.key" -sha256 -days "$days" \
	-subj "/O=Sluice tests/CN=Sluice Test CA" \
	-addext "basicConstraints=critical,CA:TRUE" \
	-addext "keyUsage=critical,keyCertSign,cRLSign" \
	-addext "subjectKeyIdentifier=hash" \
	-out "$work/ca.pem"

# The server certificate, signed by the CA.
new_key "$work/server.key"
openssl req -new -key "$work/server.key" -subj "/O=Sluice tests/CN=localhost" -out "$work/server.csr"
cat >"$work/server.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
$san
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid,issuer
EOF
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
	-CAcreateserial -CAserial "$work/ca.srl" -days "$days" -sha256 \
	-extfile "$work/server.ext" -out "$work/server.pem" 2>/dev/null

# A self-signed certificate for the same names that no one trusts.
new_key "$work/untrusted.key"
openssl req -x509 -new -key "$work/untrusted.key" -sha256 -days "$days" \
	-subj "/O=Sluice tests/CN=localhost" \
	-addext "$san" -addext "extendedKeyUsage=serverAuth" \
	-out "$work/untrusted.pem"

openssl verify -CAfile "$work/ca.pem" "$work/server.pem" >/dev/null

chmod 644 "$work"/*.pem
for f in ca.key ca.pem untrusted.key untrusted.pem server.key server.pem; do
	mv -f "$work/$f" "$dir/$f"
done
