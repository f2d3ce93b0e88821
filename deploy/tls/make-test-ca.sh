#!/bin/sh
# TEST ONLY. Makes a throwaway certificate authority, one NATS server certificate and client certificates
# for tests, the demo and docker compose. Never use these in production: the CA key sits beside the certs
# and the certificates are valid for 2 days. Production certificates come from your own PKI (cert-manager,
# Vault, ...) at the same paths (ca.pem, server.pem/server-key.pem, <name>.pem/<name>-key.pem).
#
# usage: make-test-ca.sh OUTDIR [CLIENT_NAME...]     (default client names: client)
# writes: OUTDIR/ca.pem ca-key.pem server.pem server-key.pem and <name>.pem <name>-key.pem per client.
# Run again on the same OUTDIR, it keeps the CA and the server certificate and adds (or renews) the clients.
# A client certificate's subject is "CN=<name>,O=cxlrc TEST ONLY" (RFC 2253): the user it maps to in the
# accounts file of deploy/nats/gen-users.ts (whose default --cert-dn is that form).
# The server certificate is valid for clients and routes (serverAuth + clientAuth) and names localhost,
# 127.0.0.1, ::1, the compose services nats-1..3 and the Kubernetes service nats.cxlrc.svc.
set -eu
out=${1:?usage: make-test-ca.sh OUTDIR [CLIENT_NAME...]}
shift
[ "$#" -gt 0 ] || set -- client
mkdir -p "$out"
umask 077
days=2
subj_o="/O=cxlrc TEST ONLY"

key() { openssl ecparam -name prime256v1 -genkey -noout -out "$1" 2>/dev/null; }

for name in "$@"; do
  case "$name" in
    *[!A-Za-z0-9_-]* | "") echo "make-test-ca.sh: bad client name '$name'" >&2; exit 2 ;;
    ca | server) echo "make-test-ca.sh: '$name' is reserved" >&2; exit 2 ;;
  esac
done

fresh=yes
[ -s "$out/ca.pem" ] && [ -s "$out/ca-key.pem" ] && [ -s "$out/server.pem" ] && fresh=no
if [ "$fresh" = yes ]; then
  key "$out/ca-key.pem"
  openssl req -x509 -new -key "$out/ca-key.pem" -sha256 -days "$days" \
    -subj "$subj_o/CN=cxlrc test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$out/ca.pem" 2>/dev/null
fi

sign() { # name cn extfile
  openssl req -new -key "$out/$1-key.pem" -subj "$subj_o/CN=$2" -out "$out/$1.csr" 2>/dev/null
  openssl x509 -req -in "$out/$1.csr" -CA "$out/ca.pem" -CAkey "$out/ca-key.pem" -CAcreateserial \
    -CAserial "$out/ca.srl" -days "$days" -sha256 -extfile "$3" -out "$out/$1.pem" 2>/dev/null
  rm -f "$out/$1.csr" "$3"
}

if [ "$fresh" = yes ]; then
  key "$out/server-key.pem"
  ext="$out/server.ext"
  cat >"$ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1,DNS:nats,DNS:nats-1,DNS:nats-2,DNS:nats-3,DNS:nats.cxlrc.svc,DNS:nats.cxlrc.svc.cluster.local
EXT
  sign server "cxlrc nats server" "$ext"
fi

for name in "$@"; do
  key "$out/$name-key.pem"
  ext="$out/$name.ext"
  cat >"$ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
EXT
  sign "$name" "$name" "$ext"
done
rm -f "$out/ca.srl"
chmod 0644 "$out"/*.pem
chmod 0600 "$out"/*-key.pem
