#!/usr/bin/env bash
# Stops what .ci/slurm-up.sh started (its folder is the argument).
set -u
T=${1:?usage: slurm-down.sh <folder printed by slurm-up.sh>}
[ -f "$T/started" ] || { rm -rf "$T"; exit 0; }
grep -q slurmd "$T/started" && pkill -x slurmd
grep -q slurmctld "$T/started" && pkill -x slurmctld
grep -q munged "$T/started" && pkill -x munged
rm -rf "$T"
exit 0
