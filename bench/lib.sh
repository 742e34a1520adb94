# bench/lib.sh — what every benchmark script shares; sourced, not run.
#   log MSG...          progress on stderr, "# HH:MM:SS MSG"
#   result KEY VALUE    "RESULT KEY=VALUE" on stdout, and appended to $RESULTS_FILE when set
#   die MSG...          log "FAILED: MSG" and exit 1
#   now / elapsed A B / ratio A B / median N...   seconds and figures, 3 decimals

log() { printf '# %s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
result() {
    printf 'RESULT %s=%s\n' "$1" "$2"
    if [[ -n ${RESULTS_FILE:-} ]]; then printf 'RESULT %s=%s\n' "$1" "$2" >>"$RESULTS_FILE"; fi
}
die() { log "FAILED: $*"; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "nan"; else printf "%.3f", a / b }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) printf "%.3f", v[(NR + 1) / 2]; else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
