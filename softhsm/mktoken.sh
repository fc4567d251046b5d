#!/usr/bin/env bash
# Makes a private SoftHSM2 token for a shell session, the shell twin of the
# Go package softhsm:
#   eval "$(softhsm/mktoken.sh DIR LABEL)"
# creates DIR/softhsm2.conf and DIR/tokens, initialises a token labelled LABEL
# (user PIN from $HSMKMS_PIN, default 1234; SO PIN from $HSMKMS_SO_PIN, default
# 87654321) unless it exists, and prints the export lines to use it.
set -euo pipefail
dir=${1:?usage: mktoken.sh DIR LABEL}
label=${2:?usage: mktoken.sh DIR LABEL}
pin=${HSMKMS_PIN:-1234}
so_pin=${HSMKMS_SO_PIN:-87654321}
mkdir -p "$dir/tokens"
dir=$(cd "$dir" && pwd)
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' "$dir" >"$dir/softhsm2.conf"
export SOFTHSM2_CONF="$dir/softhsm2.conf"
if ! softhsm2-util --show-slots 2>/dev/null | grep -Eq "^[[:space:]]*Label:[[:space:]]*$label[[:space:]]*$"; then
  softhsm2-util --init-token --free --label "$label" --so-pin "$so_pin" --pin "$pin" >&2
fi
for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
         /usr/lib64/pkcs11/libsofthsm2.so /usr/local/lib/softhsm/libsofthsm2.so /opt/homebrew/lib/softhsm/libsofthsm2.so; do
  if [ -e "$m" ]; then echo "export HSMKMS_PKCS11_MODULE=$m"; break; fi
done
echo "export SOFTHSM2_CONF=$dir/softhsm2.conf"
echo "export HSMKMS_TOKEN_LABEL=$label"
