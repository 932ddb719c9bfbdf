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
    IFS=$'\n' list=($(printf '%s\n' ${list[@]+"${list[@]}"} | sort -nu)); unset IFS
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
# The device when DEVICE_TARGET is not given, the same order everywhere: Ascend if npu-smi
# works, GPU if nvidia-smi does, else CPU.
detect_device() {
  if command -v npu-smi >/dev/null 2>&1 && npu-smi info >/dev/null 2>&1; then echo Ascend
  elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then echo GPU
  else echo CPU; fi
}
check_target() {
  case "$1" in CPU|GPU|Ascend) ;; *) usage "DEVICE_TARGET must be CPU, GPU or Ascend, got '$1'";; esac
}
# Devices this host offers to a job: the visible-devices list when set, else the driver's
# count (npu-smi's "Total Count", nvidia-smi's GPU lines); empty when unknown.
count_devices() {  # count_devices Ascend|GPU
  local list
  if [ "$1" = Ascend ]; then list=${ASCEND_RT_VISIBLE_DEVICES:-}; else list=${CUDA_VISIBLE_DEVICES:-}; fi
  if [ -n "$list" ]; then
    echo "$list" | tr ',' '\n' | grep -c '[0-9]'
  elif [ "$1" = Ascend ]; then
    npu-smi info -l 2>/dev/null | awk -F: '/Total Count/ {gsub(/[^0-9]/, "", $2); print $2; exit}'
  else
    nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true
  fi
}
# Absolute --val_path arguments (VAL_ARGS): VAL_PATH, else DATA_PATH when it is a DIV2K root
# holding DIV2K_valid_HR (a folder or an LMDB).
val_args() {  # val_args DATA
  VAL_ARGS=()
  if [ -n "${VAL_PATH:-}" ]; then
    [ -d "$VAL_PATH" ] || usage "VAL_PATH '$VAL_PATH' is not a directory"
    VAL_ARGS=(--val_path "$(cd "$VAL_PATH" && pwd)")
  elif [ -d "$1/DIV2K_valid_HR" ] || [ -d "$1/DIV2K_valid_HR.lmdb" ]; then
    VAL_ARGS=(--val_path "$1")
  fi
}
# The run name: the config's name:, or a name=... override.
run_name() {  # run_name OVERRIDES...
  local kv name
  name=$(awk '/^name:/ {print $2; exit}' "$CONFIG")
  for kv in "$@"; do case "$kv" in name=*) name=${kv#name=};; esac; done
  echo "$name"
}
# Wait for the background PIDs. SIGTERM / SIGINT are passed on to them (train.py then stops
# after the current step, with a state saved). When one exits with an error the others are sent
# SIGTERM, and SIGKILL after 30 s (they wait for the lost rank in a collective and cannot stop
# cleanly). Returns the first non-zero status (0 when all succeed).
wait_all() {  # wait_all PID...
  local pids=("$@") left pid status code=0 failed_at=0
  trap 'echo "stopping: SIGTERM to every rank" >&2; kill -TERM '"$*"' 2>/dev/null || true' TERM INT
  while [ ${#pids[@]} -gt 0 ]; do
    left=()
    for pid in "${pids[@]}"; do
      if kill -0 "$pid" 2>/dev/null; then left+=("$pid"); continue; fi
      status=0; wait "$pid" 2>/dev/null || status=$?
      if [ "$status" != 0 ] && [ "$code" = 0 ]; then
        code=$status; failed_at=$SECONDS
        echo "rank process $pid exited with status $status: stopping the others" >&2
        kill -TERM "$@" 2>/dev/null || true
      fi
    done
    pids=(${left[@]+"${left[@]}"})
    if [ "$code" != 0 ] && [ $((SECONDS - failed_at)) -ge 30 ] && [ ${#pids[@]} -gt 0 ]; then
      kill -KILL "${pids[@]}" 2>/dev/null || true
    fi
    if [ ${#pids[@]} -gt 0 ]; then sleep 1; fi
  done
  trap - TERM INT
  return "$code"
}
