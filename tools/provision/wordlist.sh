#!/usr/bin/env bash
# Provision the passphrase wordlist the emulated device's firmware uses: the
# EFF large wordlist (7776 words), normalised to one lowercase word per line.
#
# Why: third-party wordlists are never committed, so the list is taken at build
# time from a packaged copy. PyPI's `diceware` wheel ships it as
# diceware/wordlists/wordlist_en_eff.txt, in "DDDDD<TAB>word" form; the dice
# numbers are stripped here. PyPI releases are immutable, so WORDLIST_VERSION is
# a real pin, and WORDLIST_SHA256 (when set) pins the normalised output too.
#
# Output (stdout): WORDLIST_SHA256=, then WORDLIST=<file> as the last line.
# A PROVENANCE file next to it names the package, version, file and hashes.
set -euo pipefail

# shellcheck source=tools/lib/common.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/../lib" && pwd)/common.sh"

[ -n "${WORDLIST_PACKAGE:-}" ] || die "WORDLIST_PACKAGE is empty in tools/versions.env"
[ -n "${WORDLIST_VERSION:-}" ] || die "WORDLIST_VERSION is empty in tools/versions.env"
[ -n "${WORDLIST_FILE:-}" ] || die "WORDLIST_FILE is empty in tools/versions.env"

DIR="$MOCKACCEL_CACHE/wordlist/$WORDLIST_PACKAGE-$WORDLIST_VERSION"
OUT="$DIR/mock-accel-wordlist.txt"
STAMP="$DIR/.complete"
WORDS=7776

report() {
	printf 'WORDLIST_SHA256=%s\n' "$(awk -F= '$1 == "output_sha256" {print $2}' "$DIR/PROVENANCE")"
	printf 'WORDLIST=%s\n' "$OUT"
}

if [ -f "$STAMP" ] && [ -f "$OUT" ]; then
	report
	exit 0
fi

command -v python3 >/dev/null 2>&1 || die "python3 not found"
rm -rf "$DIR"
mkdir -p "$DIR"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

log "pip download $WORDLIST_PACKAGE==$WORDLIST_VERSION"
python3 -m pip download -q --no-deps --only-binary=:all: -d "$tmp" \
	"$WORDLIST_PACKAGE==$WORDLIST_VERSION" >&2
wheel=$(find "$tmp" -maxdepth 1 -name '*.whl' | head -n 1)
[ -n "$wheel" ] || die "no wheel for $WORDLIST_PACKAGE==$WORDLIST_VERSION"

python3 - "$wheel" "$WORDLIST_FILE" >"$tmp/raw.txt" <<'EOF'
import sys
import zipfile

with zipfile.ZipFile(sys.argv[1]) as wheel:
    sys.stdout.buffer.write(wheel.read(sys.argv[2]))
EOF

# Keep the last column (the word), drop CRs, lowercase; blank lines vanish.
tr -d '\r' <"$tmp/raw.txt" | awk 'NF {print tolower($NF)}' >"$tmp/words.txt"
count=$(wc -l <"$tmp/words.txt")
[ "$count" -eq $WORDS ] || die "$WORDLIST_FILE has $count words, expected $WORDS"
bad=$(grep -cvE '^[a-z][a-z-]*$' "$tmp/words.txt" || true)
[ "$bad" -eq 0 ] || die "$bad words do not match ^[a-z][a-z-]*\$: $(grep -vE '^[a-z][a-z-]*$' "$tmp/words.txt" | head -n 3 | tr '\n' ' ')"
dups=$(sort "$tmp/words.txt" | uniq -d | wc -l)
[ "$dups" -eq 0 ] || die "$WORDLIST_FILE has $dups duplicate words"

sha=$(sha256sum "$tmp/words.txt" | cut -d' ' -f1)
if [ -n "${WORDLIST_SHA256:-}" ] && [ "$sha" != "$WORDLIST_SHA256" ]; then
	die "normalised wordlist sha256 $sha differs from WORDLIST_SHA256=$WORDLIST_SHA256"
fi

mv "$tmp/words.txt" "$OUT"
cat >"$DIR/PROVENANCE" <<EOF
package=$WORDLIST_PACKAGE
version=$WORDLIST_VERSION
wheel=$(basename "$wheel")
wheel_sha256=$(sha256sum "$wheel" | cut -d' ' -f1)
file=$WORDLIST_FILE
file_sha256=$(sha256sum "$tmp/raw.txt" | cut -d' ' -f1)
normalisation=last column, lowercase, LF line ends
words=$WORDS
output_sha256=$sha
EOF
touch "$STAMP"
report
