# Argument checks shared by the launch scripts (sourced; the caller sets USAGE first).
usage() {
  echo "usage: bash $0 $USAGE" >&2
  [ -n "${1:-}" ] && echo "error: $1" >&2
  exit 2
}
check_scale() { case "$1" in 2|4|8) ;; *) usage "SCALE must be 2, 4 or 8, got '$1'";; esac; }
check_dir() { [ -d "$2" ] || usage "$1 '$2' is not a directory"; }
check_count() { [[ "$2" =~ ^[1-9][0-9]*$ ]] || usage "$1 must be a positive integer, got '$2'"; }
check_overrides() {
  for kv in "$@"; do
    case "$kv" in *=*) ;; *) usage "extra arguments must be section.key=value, got '$kv'";; esac
  done
}
