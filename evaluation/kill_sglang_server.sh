#!/usr/bin/env bash
# Stop the SGLang server(s) started for evaluation, and nothing else.
#
#   bash evaluation/kill_sglang_server.sh            # servers recorded by eval.py --launch_server, else
#                                                    # those started by hand from this repository
#   bash evaluation/kill_sglang_server.sh 30000      # the one on port 30000 (recorded or started by hand)
#
# 1. Servers started by `eval.py --launch_server` are recorded in
#    ${HUATUO_RUN_DIR:-~/.cache/huatuo_o1}/sglang_<port>.pid (process group id, the leader's
#    start time, /proc/PID/stat field 22, and a random token put in the server's environment).
#    A recorded group is signalled only when it is proven ours: never group 0 or 1 or this
#    script's own group; a live leader must have the recorded start time (else the pid was
#    reused); when the leader is gone, a live member of the group must carry the recorded token
#    in its environment (group ids are reused too). Each such group is sent SIGTERM, then SIGKILL
#    after 20 s if still alive. Every pid file is removed; for one that is not proven ours nothing
#    is signalled and one line says why (same rules as `python -m huatuo_o1.eval.serving stop`).
# 2. Only when nothing is recorded (the server was started by hand with the README's
#    `python -m sglang.launch_server ... --port PORT &`): the processes of this user whose arguments
#    are exactly `-m sglang.launch_server` are stopped with their children, if they run on PORT (when
#    a port is given) or, without a port, if they were started from this repository (their working
#    directory is its root), as the README's commands are. Other users' servers and servers started
#    elsewhere are never touched; unlike the original's name match, neither is a process that merely
#    has "sglang" in its name or command line.
set -u
PORT=${1:-}
RUN_DIR=${HUATUO_RUN_DIR:-$HOME/.cache/huatuo_o1}
REPO=$(cd "$(dirname "$0")/.." && pwd -P)
GRACE=${HUATUO_KILL_GRACE:-20}

group_alive() { kill -0 -- "-$1" 2>/dev/null; }

start_time() {  # $1 = pid: field 22 of /proc/PID/stat (empty when no such process)
  local stat rest
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  rest=${stat##*) }  # fields 3.. (the command name, field 2, may hold spaces and parentheses)
  # shellcheck disable=SC2086
  set -- $rest
  echo "${20}"
}

stop_group() {  # $1 = process group id
  kill -TERM -- "-$1" 2>/dev/null || return 1
  for _ in $(seq 1 $((GRACE * 5))); do
    group_alive "$1" || return 0
    sleep 0.2
  done
  kill -KILL -- "-$1" 2>/dev/null
  return 0
}

why_not_ours() {  # $1 = pgid, $2 = recorded start time, $3 = recorded token: prints why not, or nothing
  local pgid=$1 now own members m
  if [ -z "$pgid" ]; then echo "no process group id recorded"; return; fi
  if [ "$pgid" -le 1 ]; then
    echo "recorded process group $pgid is not a server's (0 and 1 would signal the caller or everything)"; return
  fi
  own=$(ps -o pgid= -p $$ 2>/dev/null | tr -d ' ')
  if [ "$pgid" = "$own" ]; then echo "recorded process group $pgid is the caller's own group"; return; fi
  if ! group_alive "$pgid"; then echo "process group $pgid no longer exists"; return; fi
  now=$(start_time "$pgid")
  if [ -n "$now" ]; then  # the leader is alive
    if [ -n "$2" ]; then
      [ "$now" = "$2" ] || echo "process $pgid started at another time than the recorded server (its pid was reused)"
    elif ! tr '\0' ' ' < "/proc/$pgid/cmdline" 2>/dev/null | grep -q "sglang\.launch_server"; then
      echo "process $pgid is not sglang.launch_server (its pid was reused)"
    fi
    return
  fi
  if [ -n "$3" ]; then  # leader gone: a live member must carry our token
    members=$(ps -e -o pid=,pgid=,stat= 2>/dev/null | awk -v g="$pgid" '$2 == g && $3 !~ /^Z/ {print $1}')
    for m in $members; do
      if tr '\0' '\n' < "/proc/$m/environ" 2>/dev/null | grep -qxF "HUATUO_SGLANG_TOKEN=$3"; then return; fi
    done
  fi
  echo "the leader of process group $pgid has exited and no member of the group carries the recorded token, so the group cannot be proven ours (group ids are reused)"
}

descendants() {  # $1 = pid: prints its descendants (children first found, deepest last)
  local kids
  kids=$(ps -o pid= --ppid "$1" 2>/dev/null)
  for k in $kids; do
    echo "$k"
    descendants "$k"
  done
}

is_launch_server() {  # $1 = pid: argv holds "-m sglang.launch_server" and "--port PORT" (or, with
  local args prev="" found=0 port_ok=0  # no PORT, the process runs in this repository's root)
  [ -r "/proc/$1/cmdline" ] || return 1
  if [ -z "$PORT" ]; then
    [ "$(readlink "/proc/$1/cwd" 2>/dev/null)" = "$REPO" ] || return 1
    port_ok=1
  fi
  mapfile -d '' args < "/proc/$1/cmdline" 2>/dev/null || return 1
  for a in "${args[@]}"; do
    [ "$prev" = "-m" ] && [ "$a" = "sglang.launch_server" ] && found=1
    [ "$prev" = "--port" ] && [ "$a" = "$PORT" ] && port_ok=1
    [ "$a" = "--port=$PORT" ] && port_ok=1
    prev=$a
  done
  [ $found = 1 ] && [ $port_ok = 1 ]
}

stopped=0
recorded=0
if [ -n "$PORT" ]; then files=("$RUN_DIR/sglang_$PORT.pid"); else files=("$RUN_DIR"/sglang_*.pid); fi
for f in "${files[@]}"; do
  [ -f "$f" ] || continue
  recorded=$((recorded + 1))
  pgid=$(grep -o '"pgid": *-\?[0-9]*' "$f" | grep -o -- '-\?[0-9]*$')
  st=$(grep -o '"start_time": *[0-9]*' "$f" | grep -o '[0-9]*$')
  token=$(grep -o '"token": *"[0-9a-f]*"' "$f" | grep -o '[0-9a-f]*"$' | tr -d '"')
  why=$(why_not_ours "$pgid" "$st" "$token")
  if [ -z "$why" ]; then
    echo "stopping SGLang process group $pgid (recorded in $f)"
    stop_group "$pgid" && stopped=$((stopped + 1))
  else
    echo "stale pid file $f: nothing signalled: $why"
  fi
  rm -f "$f"
done

if [ $recorded = 0 ]; then
  for p in $(ps -u "$(id -u)" -o pid=); do
    [ "$p" = "$$" ] && continue
    if is_launch_server "$p"; then
      kids=$(descendants "$p")
      echo "stopping sglang.launch_server pid $p${PORT:+ on port $PORT} (started by hand) and its children: ${kids//$'\n'/ }"
      kill -TERM "$p" $kids 2>/dev/null
      stopped=$((stopped + 1))
      sleep 2
      kill -KILL "$p" $kids 2>/dev/null
    fi
  done
fi
if [ $stopped = 0 ]; then
  echo "no SGLang server of this project is running"
  [ -z "$PORT" ] && echo "(a server started by hand elsewhere than $REPO is stopped only when its port is given: bash $0 PORT)"
fi
exit 0
