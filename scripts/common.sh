# Argument checks shared by the launch scripts (sourced; the caller sets USAGE first).
usage() {
  echo "usage: bash $0 $USAGE" >&2
  [ -n "${1:-}" ] && echo "error: $1" >&2
  exit 2
}
# A scale S with a src/options/<prefix>_IRN_x<S>.yml, or any config file (every model of the
# family, e.g. src/options/train_IRN_color.yml). Sets CONFIG to an absolute path.
resolve_config() {  # resolve_config train|test ARG
  local root f list=()
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  if [[ "$2" == *.yml || "$2" == *.yaml ]]; then
    [ -f "$2" ] || usage "config '$2' is not a file"
    CONFIG=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
    return
  fi
  if [ ! -f "$root/src/options/$1_IRN_x$2.yml" ]; then
    for f in "$root/src/options/$1"_IRN_x*.yml; do
      f=${f##*_x}; [[ "${f%.yml}" =~ ^[0-9]+$ ]] && list+=("${f%.yml}")
    done
    IFS=$'\n' list=($(printf '%s\n' "${list[@]}" | sort -n)); unset IFS
    local n=${#list[@]} text=${list[*]:0:${#list[@]}-1}
    usage "SCALE must be ${text// /, } or ${list[n-1]}, got '$2' (or give a config .yml)"
  fi
  CONFIG="$root/src/options/$1_IRN_x$2.yml"
}
check_dir() { [ -d "$2" ] || usage "$1 '$2' is not a directory"; }
check_count() { [[ "$2" =~ ^[1-9][0-9]*$ ]] || usage "$1 must be a positive integer, got '$2'"; }
check_overrides() {
  for kv in "$@"; do
    case "$kv" in *=*) ;; *) usage "extra arguments must be section.key=value, got '$kv'";; esac
  done
}
