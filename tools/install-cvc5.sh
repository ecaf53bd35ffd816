#!/usr/bin/env bash
# Installs a cvc5 that `elevate prove` (cedar-policy-symcc) can drive, and prints the
# path of its executable on the last line of stdout:
#
#   export CVC5=$(tools/install-cvc5.sh | tail -n 1)
#
# cvc5's release binaries are on no package registry, and Debian's cvc5 is 1.0.3,
# older than the 1.3.1 SymCC is documented against. PyPI's `cvc5` wheel is current but has
# no executable, so this puts the wheel in a virtualenv and fronts it with
# tools/cvc5-driver.py, which speaks the interactive SMT-LIB protocol SymCC uses.
#
# Idempotent: a second run finds the install answering and does nothing. DIR is the
# first argument, else $CVC5_HOME, else target/cvc5 in the repository.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${1:-${CVC5_HOME:-$REPO/target/cvc5}}
VERSION=1.4.2
PYTHON=${PYTHON:-python3}
BIN="$DIR/bin/cvc5"

# The install answers `(check-sat)` with `sat` and `(assert false)` with `unsat`.
works() {
    [ -x "$BIN" ] || return 1
    local out
    out=$(printf '(check-sat)\n(reset)\n(assert false)\n(check-sat)\n' \
        | "$BIN" --lang smt --tlimit-per=10000 2>/dev/null) || return 1
    [ "$out" = "$(printf 'sat\nunsat')" ] || return 1
    [ "$(cat "$DIR/VERSION" 2>/dev/null)" = "$VERSION" ]
}

if works && cmp -s "$REPO/tools/cvc5-driver.py" "$DIR/bin/cvc5-driver.py"; then
    echo "cvc5 $VERSION already installed in $DIR" >&2
    echo "$BIN"
    exit 0
fi

echo "installing cvc5 $VERSION (PyPI wheel + driver) into $DIR" >&2
mkdir -p "$DIR/bin"
if [ ! -x "$DIR/venv/bin/python" ]; then
    "$PYTHON" -m venv "$DIR/venv"
fi
"$DIR/venv/bin/python" -m pip install --quiet --disable-pip-version-check "cvc5==$VERSION" >&2
# A copy, so the install keeps working whatever happens to this checkout.
cp "$REPO/tools/cvc5-driver.py" "$DIR/bin/cvc5-driver.py"
cat > "$BIN.tmp" <<EOF
#!/bin/sh
exec "$DIR/venv/bin/python" "$DIR/bin/cvc5-driver.py" "\$@"
EOF
chmod +x "$BIN.tmp"
mv "$BIN.tmp" "$BIN"
echo "$VERSION" > "$DIR/VERSION"

if ! works; then
    echo "error: the cvc5 installed in $DIR does not answer (check-sat)" >&2
    exit 1
fi
echo "$BIN"
