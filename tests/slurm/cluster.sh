#!/usr/bin/env bash
# A real single-node Slurm cluster on localhost, with accounting, for CI runs of the slurm profile.
#
#   tests/slurm/cluster.sh up       install Debian packages if missing, start, wait for an idle node
#   tests/slurm/cluster.sh down     stop only the daemons this script started (by recorded PID)
#   tests/slurm/cluster.sh status   print daemon and node state; exit 0 only when fully up
#
# Needs root and no systemd: daemons run in the foreground under setsid, their PIDs recorded in
# $DSR_SLURM_STATE (default /tmp/dsr-slurm-ci), which also holds logs, the accounting database
# (a private MariaDB on 127.0.0.1:$DSR_SLURM_DB_PORT, default 3307) and Slurm's spool and state.
# Accounting stays on because the Snakemake slurm executor polls job states with sacct.
# The configuration lives at /etc/slurm because the executor drops SLURM_CONF inside jobs.
set -euo pipefail

STATE=${DSR_SLURM_STATE:-/tmp/dsr-slurm-ci}
DB_PORT=${DSR_SLURM_DB_PORT:-3307}
WAIT_S=${DSR_SLURM_WAIT_S:-90}
CONF_DIR=/etc/slurm
MARK="# Written by dsr-bench tests/slurm/cluster.sh; rewritten by every 'up'."
CLUSTER=dsrci
PARTITION=debug
ACCOUNT=ci
NODE=$(hostname -s)
PIDS=$STATE/pids
SLURM_DIR=$STATE/slurm
DB_DIR=$STATE/mariadb
DB_SOCK=$DB_DIR/mariadb.sock
# Stop order; start order is the reverse.
DAEMONS=(slurmd slurmctld slurmdbd mariadbd munged)
PACKAGES=(slurm-wlm slurmdbd munge mariadb-server mariadb-client)
COMMANDS=(slurmctld slurmd slurmdbd sbatch sacct sacctmgr sinfo munged mungekey mariadbd
  mariadb-install-db mariadb mariadb-admin setpriv)

log() { printf 'cluster.sh: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

require_root() {
  [[ $(id -u) -eq 0 ]] || die "must run as root (try: sudo $0 $1)"
}

# A recorded PID counts only while it still runs the program it was recorded for, so a reused
# PID is never signalled.
pid_of() {
  local name=$1 pid
  [[ -s $PIDS/$name.pid ]] || return 1
  pid=$(<"$PIDS/$name.pid")
  [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]] || return 1
  echo "$pid"
}

running() { pid_of "$1" >/dev/null; }

# Runs "$@" as a daemon named $1 in its own session; `exec` keeps the PID the wrapper recorded.
launch() {
  local name=$1
  shift
  rm -f "$PIDS/$name.pid"
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$PIDS/$name.pid" "$@" \
    >"$STATE/$name.log" 2>&1 </dev/null &
  local i pid
  for ((i = 0; i < 50; i++)); do
    running "$name" && return
    pid=$(cat "$PIDS/$name.pid" 2>/dev/null) || pid=
    [[ -z $pid || -d /proc/$pid ]] || die "$name exited at start; see $STATE/$name.log"
    sleep 0.2
  done
  die "$name did not start within 10s; see $STATE/$name.log"
}

# wait_for DAEMONS SECONDS COMMAND...: polls COMMAND until it succeeds; dies early when one of the
# space-separated DAEMONS this script started has exited, or after SECONDS.
wait_for() {
  local daemons=$1 limit=$2 t0=$SECONDS d last
  shift 2
  until last=$("$@" 2>&1); do
    for d in $daemons; do
      [[ ! -s $PIDS/$d.pid ]] || running "$d" || die "$d exited; see $STATE/$d.log"
    done
    ((SECONDS - t0 < limit)) || die "timed out after ${limit}s waiting for $daemons" \
      "('$*' said: ${last//$'\n'/ }); logs in $STATE"
    sleep 0.5
  done
}

own_file() { [[ ! -e $1 ]] || [[ $(head -n 1 "$1") == "$MARK" ]]; }

check_conf_is_ours() {
  local f
  for f in "$CONF_DIR/slurm.conf" "$CONF_DIR/slurmdbd.conf"; do
    own_file "$f" || die "$f exists and was not written by this script; refusing to overwrite" \
      "it (move it away or use that cluster)"
  done
}

install_packages() {
  local missing=() c
  for c in "${COMMANDS[@]}"; do command -v "$c" >/dev/null || missing+=("$c"); done
  ((${#missing[@]} == 0)) && return
  log "installing ${PACKAGES[*]} (missing: ${missing[*]})"
  export DEBIAN_FRONTEND=noninteractive
  apt-cache show "${PACKAGES[@]}" >/dev/null 2>&1 || apt-get update -qq
  # Keep package scripts from starting system copies of the daemons; restore the policy after.
  local policy=/usr/sbin/policy-rc.d added=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && added=1
  fi
  apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >"$STATE/apt.log" 2>&1 ||
    { ((added)) && rm -f "$policy"; die "apt-get install failed; see $STATE/apt.log"; }
  ((added)) && rm -f "$policy"
  for c in "${COMMANDS[@]}"; do
    command -v "$c" >/dev/null || die "$c still missing after installing ${PACKAGES[*]}"
  done
}

make_dirs() {
  install -d -m 755 "$STATE" "$PIDS"
  install -d -m 755 -o slurm -g slurm "$SLURM_DIR" "$SLURM_DIR/ctld"
  install -d -m 755 "$SLURM_DIR/spool"
  install -d -m 700 -o mysql -g mysql "$DB_DIR"
  install -d -m 755 -o munge -g munge /run/munge
  install -d -m 700 -o munge -g munge /var/lib/munge /var/log/munge
  install -d -m 755 "$CONF_DIR"
}

munge_works() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
  if [[ ! -s /etc/munge/munge.key ]]; then
    install -d -m 700 -o munge -g munge /etc/munge
    mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key
    chmod 600 /etc/munge/munge.key
  fi
  running munged && return
  if munge_works; then
    log "munged already running (not started here); using it"
    return
  fi
  launch munged setpriv --reuid=munge --regid=munge --init-groups \
    munged --foreground
  wait_for munged 15 munge_works
}

db_sql() { mariadb --no-defaults --socket="$DB_SOCK" -u root "$@"; }

start_mariadb() {
  if [[ ! -d $DB_DIR/mysql ]]; then
    mariadb-install-db --no-defaults --user=mysql --datadir="$DB_DIR" --skip-test-db \
      --auth-root-authentication-method=socket >"$STATE/mariadb-install.log" 2>&1 ||
      die "mariadb-install-db failed; see $STATE/mariadb-install.log"
  fi
  if ! running mariadbd; then
    launch mariadbd mariadbd --no-defaults --user=mysql --datadir="$DB_DIR" \
      --socket="$DB_SOCK" --bind-address=127.0.0.1 --port="$DB_PORT"
  fi
  wait_for mariadbd 30 mariadb-admin --no-defaults --socket="$DB_SOCK" -u root ping
  [[ -s $STATE/db.pass ]] || (umask 077 && head -c 18 /dev/urandom | base64 >"$STATE/db.pass")
  local pass
  pass=$(<"$STATE/db.pass")
  db_sql <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE OR REPLACE USER 'slurm'@'localhost' IDENTIFIED BY '$pass';
CREATE OR REPLACE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost', 'slurm'@'127.0.0.1';
SQL
}

# write_conf FILE MODE < content: installs content owned by slurm, marked as ours.
write_conf() {
  local file=$1 mode=$2 tmp
  tmp=$(mktemp)
  { echo "$MARK"; cat; } >"$tmp"
  install -m "$mode" -o slurm -g slurm "$tmp" "$file"
  rm -f "$tmp"
}

write_configs() {
  local hw
  # CPUs, sockets, cores, threads and RealMemory exactly as slurmd will detect them.
  hw=$(slurmd -C 2>/dev/null | grep -m 1 '^NodeName=' | cut -d ' ' -f 2-) ||
    die "slurmd -C did not report the node's hardware"
  [[ $hw == *CPUs=* && $hw == *RealMemory=* ]] || die "cannot parse 'slurmd -C' output: $hw"
  write_conf "$CONF_DIR/slurm.conf" 644 <<CONF
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=$SLURM_DIR/ctld
SlurmdSpoolDir=$SLURM_DIR/spool
SlurmctldPidFile=$SLURM_DIR/slurmctld.pid
SlurmdPidFile=$SLURM_DIR/slurmd.pid
# No cgroups: CI containers rarely delegate them.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
# The executor puts the rule name in the job comment; keep it for sacct.
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
MailProg=/bin/true
NodeName=$NODE NodeAddr=127.0.0.1 $hw State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF
  write_conf "$CONF_DIR/slurmdbd.conf" 600 <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=slurm
PidFile=$SLURM_DIR/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$(<"$STATE/db.pass")
StorageLoc=slurm_acct_db
CONF
}

# Cluster, account and users; each added only when sacctmgr does not list it yet.
register_accounting() {
  local user users=(root)
  [[ -n ${SUDO_USER:-} && $SUDO_USER != root ]] && users+=("$SUDO_USER")
  [[ -n $(sacctmgr -n -P list cluster "$CLUSTER" format=cluster) ]] ||
    sacctmgr -i -Q add cluster "$CLUSTER" >/dev/null
  [[ -n $(sacctmgr -n -P list account "$ACCOUNT" format=account) ]] ||
    sacctmgr -i -Q add account "$ACCOUNT" cluster="$CLUSTER" description="dsr-bench CI" \
      organization=dsr-bench >/dev/null
  for user in "${users[@]}"; do
    [[ -n $(sacctmgr -n -P list association cluster="$CLUSTER" account="$ACCOUNT" \
      user="$user" format=user) ]] ||
      sacctmgr -i -Q add user "$user" account="$ACCOUNT" defaultaccount="$ACCOUNT" \
        cluster="$CLUSTER" >/dev/null
  done
}

node_idle() {
  local state
  state=$(sinfo -h -n "$NODE" -o '%T (reason: %E)' 2>&1) || true
  echo "node $NODE is $state"
  [[ $state == 'idle '* ]]
}

all_running() {
  local d
  for d in "${DAEMONS[@]}"; do
    [[ $d == munged ]] && { munge_works || return 1; } && continue
    running "$d" || return 1
  done
}

up() {
  require_root up
  check_conf_is_ours
  if all_running && node_idle >/dev/null; then
    log "already up (node $NODE idle in partition $PARTITION)"
    return
  fi
  local t0=$SECONDS
  install -d -m 755 "$STATE"
  install_packages
  make_dirs
  start_munge
  start_mariadb
  write_configs
  running slurmdbd || launch slurmdbd slurmdbd -D
  wait_for slurmdbd 60 sacctmgr -n list cluster
  register_accounting
  running slurmctld || launch slurmctld slurmctld -D
  running slurmd || launch slurmd slurmd -D -N "$NODE"
  wait_for "slurmctld slurmd" "$WAIT_S" node_idle
  log "up in $((SECONDS - t0))s: cluster $CLUSTER, partition $PARTITION, account $ACCOUNT," \
    "node $NODE ($(sinfo -h -N -o 'CPUs=%c RealMemory=%m' | head -n 1)); state in $STATE"
}

# stop NAME: stops the daemon recorded under NAME, if it still runs; returns 1 when none did.
stop() {
  local name=$1 pid i
  pid=$(pid_of "$name") || {
    rm -f "$PIDS/$name.pid"
    return 1
  }
  kill -TERM "$pid"
  for ((i = 0; i < 150; i++)); do
    [[ -d /proc/$pid ]] || break
    sleep 0.2
  done
  if [[ -d /proc/$pid ]]; then
    log "$name ($pid) ignored SIGTERM for 30s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PIDS/$name.pid"
  log "stopped $name ($pid)"
}

down() {
  require_root down
  [[ -d $PIDS ]] || {
    log "nothing to stop (no $PIDS)"
    return
  }
  # Jobs still running would leave slurmstepd processes behind once slurmd is gone.
  if running slurmctld && [[ -n $(squeue -h -o %i 2>/dev/null) ]]; then
    squeue -h -o %i | xargs scancel 2>/dev/null || true
    local i
    for ((i = 0; i < 30; i++)); do
      [[ -z $(squeue -h -o %i 2>/dev/null) ]] && break
      sleep 1
    done
  fi
  local d stopped=0
  for d in "${DAEMONS[@]}"; do stop "$d" && stopped=1; done
  ((stopped)) || log "nothing to stop (no daemon started by this script is running)"
}

status() {
  local d rc=0 state
  for d in "${DAEMONS[@]}"; do
    if running "$d"; then
      state="running (pid $(pid_of "$d"))"
    elif [[ $d == munged ]] && munge_works; then
      state="running (not started by this script)"
    else
      state="stopped"
      rc=1
    fi
    printf '%-10s %s\n' "$d" "$state"
  done
  if running slurmctld; then
    sinfo -N -o '%N %P %T %c %m' || rc=1
    node_idle >/dev/null || rc=1
  fi
  return "$rc"
}

case ${1:-} in
up) up ;;
down) down ;;
status) status ;;
*) die "usage: $0 up|down|status" ;;
esac
