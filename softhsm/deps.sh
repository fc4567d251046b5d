#!/usr/bin/env bash
# Installs what hsmkms's build and tests need from the distribution: SoftHSM2
# (the PKCS#11 module and softhsm2-util) and OpenSC (pkcs11-tool, the
# independent PKCS#11 client the tests use as a witness), the aws CLI (the
# server tests drive it), a C compiler for cgo, and Node.js with npm
# (cli/esdk's interoperability test installs the AWS Encryption SDK for
# JavaScript with npm), and PostgreSQL's server (the store tests start a
# throwaway one with initdb and pg_ctl), and openCryptoki (a second PKCS#11
# implementation the tests run against), and NSS's softoken (libnss3, a
# third one, loaded with initialisation parameters), and Chromium (the
# status page's test looks at it in a real browser). On Debian/Ubuntu as root it installs them; elsewhere
# it says what is missing and fails.
#
# `deps.sh run` installs only what the server needs (SoftHSM2 and a C
# compiler): `make run` must not need the test tools.
set -euo pipefail

mode=${1:-test}
missing=()
command -v softhsm2-util >/dev/null || missing+=(softhsm2)
command -v gcc >/dev/null || missing+=(gcc)
if [ "$mode" = test ]; then
command -v pkcs11-tool >/dev/null || missing+=(opensc)
command -v aws >/dev/null || missing+=(awscli)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
# curl signs XKS proxy API requests with --aws-sigv4 (7.75 or later) in the
# XKS tests: a SigV4 signer independent of hsmkms's and the AWS SDK's.
command -v curl >/dev/null || missing+=(curl)
# systemd-analyze verifies the service unit (cmd/hsmkms/hsmkms.service).
command -v systemd-analyze >/dev/null || missing+=(systemd)
# Headless Chromium (apt package chromium) loads the status page, GET
# /status, in tests/status_test.go: a real browser's DOM and screenshot.
command -v chromium >/dev/null || missing+=(chromium)
fi
found_module=
for p in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
         /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so /usr/lib64/pkcs11/libsofthsm2.so \
         /usr/local/lib/softhsm/libsofthsm2.so /opt/homebrew/lib/softhsm/libsofthsm2.so; do
  [ -e "$p" ] && found_module=1
done
[ -n "$found_module" ] || missing+=(softhsm2)
if [ "$mode" = test ]; then
# Debian keeps PostgreSQL's server programs out of PATH.
found_pg=
command -v initdb >/dev/null && found_pg=1
for d in /usr/lib/postgresql/*/bin; do
  [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && found_pg=1
done
[ -n "$found_pg" ] || missing+=(postgresql)
found_ock=
for p in /usr/lib/*-linux-gnu/pkcs11/libopencryptoki.so /usr/lib64/opencryptoki/libopencryptoki.so; do
  [ -e "$p" ] && found_ock=1
done
{ [ -n "$found_ock" ] && { command -v pkcsslotd >/dev/null || [ -x /usr/sbin/pkcsslotd ]; }; } || missing+=(opencryptoki)

found_nss=
for p in /usr/lib/*-linux-gnu/libsoftokn3.so /usr/lib64/libsoftokn3.so; do
  [ -e "$p" ] && found_nss=1
done
[ -n "$found_nss" ] || missing+=(libnss3)
fi

[ ${#missing[@]} -eq 0 ] && exit 0
# de-duplicate
read -r -a missing <<<"$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')"

if [ "$(id -u)" -ne 0 ]; then
  echo "hsmkms needs: ${missing[*]}. Install them as root (Debian/Ubuntu: apt-get install -y ${missing[*]}; Fedora: dnf install softhsm opensc gcc awscli nodejs npm postgresql-server opencryptoki nss chromium; macOS: brew install softhsm opensc awscli node postgresql, and run the tests on Linux for openCryptoki)." >&2
  exit 1
fi
if ! command -v apt-get >/dev/null; then
  echo "hsmkms needs: ${missing[*]}, and this is not a Debian-like system: install them with the system's package manager." >&2
  exit 1
fi
echo "installing ${missing[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
  echo "apt-get could not install ${missing[*]}: see the messages above." >&2
  exit 1
fi
