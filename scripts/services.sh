#!/usr/bin/env bash
# Start (idempotently) the real local services that tests and the demo use, all on loopback.
# Every service is checked first and only started when it does not answer, so running this
# twice is harmless. State lives in $AIRLIFT_SERVICES_DIR; `source $AIRLIFT_SERVICES_DIR/env`
# gives a shell the endpoints.
set -euo pipefail

SVC=${AIRLIFT_SERVICES_DIR:-/tmp/airlift-services}
VENV=${VENV:-$(cd "$(dirname "$0")/.." && pwd)/.venv}
UPSTREAM_REGISTRY=127.0.0.1:5101
AIRGAP_REGISTRY=127.0.0.1:5102
S3_PORT=5103
SSH_PORT=2222
DOCKER_SOCK=$SVC/docker.sock
mkdir -p "$SVC/logs"

log() { printf '[services] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

wait_for() {  # wait_for NAME SECONDS CMD...
  local name=$1 secs=$2; shift 2
  for _ in $(seq 1 $((secs * 5))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  die "$name did not become healthy in ${secs}s; see $SVC/logs/"
}

spawn() {  # spawn NAME CMD... : detached from this shell so it outlives `make`
  local name=$1; shift
  setsid nohup "$@" >"$SVC/logs/$name.log" 2>&1 < /dev/null &
}

ensure_packages() {
  local missing=()
  for pair in dockerd:docker.io docker-registry:docker-registry skopeo:skopeo \
              slurmctld:slurm-wlm munged:munge sshd:openssh-server ssh:openssh-client \
              rsync:rsync busybox:busybox-static curl:curl chromium:chromium; do  # chromium: tests/test_ui.py
    local bin=${pair%%:*} pkg=${pair#*:}
    command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing Debian packages: ${missing[*]} (run as root to install them)"
    log "installing ${missing[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >"$SVC/logs/apt.log" 2>&1 \
      || die "apt-get install failed; see $SVC/logs/apt.log"
  fi
}

docker_ok() { docker -H "unix://$DOCKER_SOCK" version --format '{{.Server.Version}}'; }
start_docker() {
  docker_ok >/dev/null 2>&1 && return 0
  log "starting dockerd"
  rm -f "$SVC/docker.pid" "$DOCKER_SOCK"
  spawn dockerd dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver=vfs \
    --host "unix://$DOCKER_SOCK" --data-root "$SVC/docker-data" --exec-root "$SVC/docker-exec" \
    --pidfile "$SVC/docker.pid"
  wait_for dockerd 60 docker_ok
}

registry_ok() { curl -fsS "http://$1/v2/"; }
start_registry() {  # NAME ADDR
  local name=$1 addr=$2
  registry_ok "$addr" >/dev/null 2>&1 && return 0
  log "starting registry $name on $addr"
  mkdir -p "$SVC/registry-$name"
  cat >"$SVC/registry-$name/config.yml" <<CFG
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $SVC/registry-$name/data}
  delete: {enabled: true}
http: {addr: $addr}
CFG
  spawn "registry-$name" docker-registry serve "$SVC/registry-$name/config.yml"
  wait_for "registry $name" 30 registry_ok "$addr"
}

s3_ok() { curl -fsS "http://127.0.0.1:$S3_PORT/moto-api/"; }
start_s3() {
  s3_ok >/dev/null 2>&1 && return 0
  log "starting S3 (moto server) on 127.0.0.1:$S3_PORT"
  [ -x "$VENV/bin/moto_server" ] || die "$VENV/bin/moto_server missing: run 'make setup' first"
  spawn s3 "$VENV/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT"
  wait_for s3 30 s3_ok
}

ssh_ok() {
  ssh -F /dev/null -i "$SVC/ssh/id_ed25519" -p "$SSH_PORT" -o BatchMode=yes \
    -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
    "$(id -un)@127.0.0.1" true
}
start_sshd() {
  mkdir -p "$SVC/ssh" /run/sshd
  [ -f "$SVC/ssh/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$SVC/ssh/id_ed25519"
  [ -f "$SVC/ssh/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$SVC/ssh/host_ed25519"
  cp "$SVC/ssh/id_ed25519.pub" "$SVC/ssh/authorized_keys"
  chmod 600 "$SVC/ssh/authorized_keys"
  ssh_ok 2>/dev/null && return 0
  log "starting sshd on 127.0.0.1:$SSH_PORT (key-only)"
  cat >"$SVC/ssh/sshd_config" <<CFG
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $SVC/ssh/host_ed25519
AuthorizedKeysFile $SVC/ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile $SVC/ssh/sshd.pid
Subsystem sftp internal-sftp
CFG
  spawn sshd "$(command -v sshd || echo /usr/sbin/sshd)" -D -e -f "$SVC/ssh/sshd_config"
  wait_for sshd 20 ssh_ok
}

munge_ok() { munge -n | unmunge; }
start_munge() {
  munge_ok >/dev/null 2>&1 && return 0
  log "starting munged"
  mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
  [ -f /etc/munge/munge.key ] || mungekey -c -f -k /etc/munge/munge.key
  chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
  chmod 700 /etc/munge; chmod 600 /etc/munge/munge.key
  runuser -u munge -- /usr/sbin/munged --force
  wait_for munged 20 munge_ok
}

slurm_ok() { SLURM_CONF=$SVC/slurm/slurm.conf sinfo -h -o '%t' | grep -Eq '^(idle|mix|alloc)'; }
start_slurm() {
  export SLURM_CONF=$SVC/slurm/slurm.conf
  slurm_ok 2>/dev/null && return 0
  log "starting slurmctld + slurmd (one node on 127.0.0.1)"
  mkdir -p "$SVC/slurm/state" "$SVC/slurm/spool" "$SVC/slurm/log"
  local cpus mem
  cpus=$(nproc); mem=$(( $(awk '/MemTotal/{print $2}' /proc/meminfo) / 1024 - 1024 ))
  cat >"$SLURM_CONF" <<CFG
ClusterName=airlift
SlurmctldHost=$(hostname -s)(127.0.0.1)
SlurmUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
StateSaveLocation=$SVC/slurm/state
SlurmdSpoolDir=$SVC/slurm/spool
SlurmctldPidFile=$SVC/slurm/slurmctld.pid
SlurmdPidFile=$SVC/slurm/slurmd.pid
SlurmctldLogFile=$SVC/slurm/log/slurmctld.log
SlurmdLogFile=$SVC/slurm/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MinJobAge=3600
NodeName=airlift-node NodeAddr=127.0.0.1 NodeHostname=$(hostname -s) CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=batch Nodes=airlift-node Default=YES MaxTime=INFINITE State=UP
CFG
  pkill -f "slurmctld.*$SVC" 2>/dev/null || true
  pkill -f "slurmd.*$SVC" 2>/dev/null || true
  spawn slurmctld slurmctld -D -f "$SLURM_CONF"
  sleep 1
  spawn slurmd slurmd -D -f "$SLURM_CONF" -N airlift-node
  wait_for slurm 60 slurm_ok
}

write_env() {
  cat >"$SVC/env" <<ENV
export AIRLIFT_SERVICES_DIR=$SVC
export AIRLIFT_DOCKER_HOST=unix://$DOCKER_SOCK
export AIRLIFT_UPSTREAM_REGISTRY=$UPSTREAM_REGISTRY
export AIRLIFT_AIRGAP_REGISTRY=$AIRGAP_REGISTRY
export AIRLIFT_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export AIRLIFT_SSH_URL=ssh://$(id -un)@127.0.0.1:$SSH_PORT
export AIRLIFT_SSH_KEY=$SVC/ssh/id_ed25519
export SLURM_CONF=$SVC/slurm/slurm.conf
ENV
}

ensure_packages
start_docker
start_registry upstream "$UPSTREAM_REGISTRY"
start_registry airgap "$AIRGAP_REGISTRY"
start_s3
start_sshd
start_munge
start_slurm
write_env
cat <<OUT
airlift local services (all loopback); \`source $SVC/env\` to use them:
  docker engine       unix://$DOCKER_SOCK   ($(docker_ok))
  upstream registry   http://$UPSTREAM_REGISTRY
  air-gapped registry http://$AIRGAP_REGISTRY
  S3 (moto)           http://127.0.0.1:$S3_PORT
  sshd (key-only)     ssh://$(id -un)@127.0.0.1:$SSH_PORT  key $SVC/ssh/id_ed25519
  slurm               SLURM_CONF=$SVC/slurm/slurm.conf  ($(SLURM_CONF=$SVC/slurm/slurm.conf sinfo -h -o '%P %D %t'))
OUT
