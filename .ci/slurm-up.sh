#!/usr/bin/env bash
# Starts a one-node SLURM cluster on this machine for the integration test:
# munged (as the munge user), slurmctld and slurmd (as root), with all state under
# a temporary folder. Installs slurm-wlm and munge if they are missing.
# Prints the folder; .ci/slurm-down.sh <folder> stops what this started.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
    apt-get install -y -qq slurm-wlm munge >/dev/null || { apt-get update -qq && apt-get install -y -qq slurm-wlm munge >/dev/null; }
fi
T=$(mktemp -d /tmp/initlab-slurm.XXXXXX)
# A cluster that already answers is used as it is (and left running afterwards).
if sinfo -h -o '%T' 2>/dev/null | grep -q -E 'idle|mixed'; then
    echo "$T"
    exit 0
fi
mkdir -p "$T/state" "$T/spool" "$T/log" "$T/run"
host=$(hostname)
mem=$(awk '/MemTotal/ {print int($2/1024) - 1024}' /proc/meminfo)
cpus=$(nproc)
mkdir -p /etc/slurm
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=initlab-ci
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldLogFile=$T/log/slurmctld.log
SlurmdLogFile=$T/log/slurmd.log
SlurmctldPidFile=$T/run/slurmctld.pid
SlurmdPidFile=$T/run/slurmd.pid
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
# munge: a key, its run folder, the daemon as the munge user
[ -f /etc/munge/munge.key ] || { mkdir -p /etc/munge; dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null; }
chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key
mkdir -p /run/munge && chown munge:munge /run/munge && chmod 755 /run/munge
if ! pgrep -x munged >/dev/null; then
    su -s /bin/sh munge -c "/usr/sbin/munged --force" || /usr/sbin/munged --force
    echo munged > "$T/started"
fi
slurmctld -i
slurmd
echo slurmctld >> "$T/started"; echo slurmd >> "$T/started"
for _ in $(seq 1 60); do
    if sinfo -h -o '%T' 2>/dev/null | grep -q -E 'idle|mixed|alloc'; then
        echo "$T"
        exit 0
    fi
    sleep 1
done
echo "slurm did not come up; logs in $T/log" >&2
cat "$T/log/"*.log >&2 || true
exit 1
