#!/usr/bin/env bash
# Stop the SGLang server(s) started for evaluation, and nothing else.
#
#   bash evaluation/kill_sglang_server.sh            # every recorded server
#   bash evaluation/kill_sglang_server.sh 30000      # only the one on port 30000
#
# 1. Servers started by `eval.py --launch_server` are recorded in
#    ${HUATUO_RUN_DIR:-~/.cache/huatuo_o1}/sglang_<port>.pid (their process group id): each
#    group is sent SIGTERM, then SIGKILL after 20 s if still alive, and its pid file is removed.
#    A stale pid file (group gone, or its leader no longer an SGLang process) kills nothing.
# 2. When nothing is recorded (the server was started by hand with the README's
#    `python -m sglang.launch_server ... &`), the processes of this user whose arguments are exactly
#    `-m sglang.launch_server` (and `--port PORT` when a port is given) are stopped with their
#    children. Unlike the original's name match, a process that merely has "sglang" in its name
#    or command line is never touched.
set -u
PORT=${1:-}
RUN_DIR=${HUATUO_RUN_DIR:-$HOME/.cache/huatuo_o1}
GRACE=${HUATUO_KILL_GRACE:-20}

group_alive() { kill -0 -- "-$1" 2>/dev/null; }

stop_group() {  # $1 = process group id
  kill -TERM -- "-$1" 2>/dev/null || return 1
  for _ in $(seq 1 $((GRACE * 5))); do
    group_alive "$1" || return 0
    sleep 0.2
  done
  kill -KILL -- "-$1" 2>/dev/null
  return 0
}

descendants() {  # $1 = pid: prints its descendants (children first found, deepest last)
  local kids
  kids=$(ps -o pid= --ppid "$1" 2>/dev/null)
  for k in $kids; do
    echo "$k"
    descendants "$k"
  done
}

is_launch_server() {  # $1 = pid: argv holds "-m sglang.launch_server" (and --port PORT if set)
  local args prev="" found=0 port_ok=1
  [ -r "/proc/$1/cmdline" ] || return 1
  mapfile -d '' args < "/proc/$1/cmdline" 2>/dev/null || return 1
  [ -n "$PORT" ] && port_ok=0
  for a in "${args[@]}"; do
    [ "$prev" = "-m" ] && [ "$a" = "sglang.launch_server" ] && found=1
    [ "$prev" = "--port" ] && [ "$a" = "$PORT" ] && port_ok=1
    [[ -n "$PORT" && "$a" == "--port=$PORT" ]] && port_ok=1
    prev=$a
  done
  [ $found = 1 ] && [ $port_ok = 1 ]
}

stopped=0
if [ -n "$PORT" ]; then files=("$RUN_DIR/sglang_$PORT.pid"); else files=("$RUN_DIR"/sglang_*.pid); fi
for f in "${files[@]}"; do
  [ -f "$f" ] || continue
  pgid=$(grep -o '"pgid": *[0-9]*' "$f" | grep -o '[0-9]*$')
  if [ -n "$pgid" ] && group_alive "$pgid" && tr '\0' ' ' < "/proc/$pgid/cmdline" 2>/dev/null | grep -q "sglang\.launch_server"; then
    echo "stopping SGLang process group $pgid (recorded in $f)"
    stop_group "$pgid" && stopped=$((stopped + 1))
  else
    echo "stale pid file $f: nothing to stop"
  fi
  rm -f "$f"
done

if [ $stopped = 0 ]; then
  for p in $(ps -u "$(id -u)" -o pid=); do
    [ "$p" = "$$" ] && continue
    if is_launch_server "$p"; then
      kids=$(descendants "$p")
      echo "stopping sglang.launch_server pid $p (started by hand) and its children: ${kids//$'\n'/ }"
      kill -TERM "$p" $kids 2>/dev/null
      stopped=$((stopped + 1))
      sleep 2
      kill -KILL "$p" $kids 2>/dev/null
    fi
  done
fi
[ $stopped = 0 ] && echo "no SGLang server of this project is running"
exit 0
