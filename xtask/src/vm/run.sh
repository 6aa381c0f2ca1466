#!/bin/sh
# Inside the test VM, chrooted into an overlay of the host's root: mount what a
# node has, load the network modules the tests use, say which probes netflow
# turns on, then run the selected tests. Everything lands in /mnt/netflow-vm.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
cd /mnt/netflow-vm
mount -t tmpfs tmpfs /run && mkdir -p /run/netns /run/lock
# /tmp stays the host's (under the overlay): a workspace may live there.
mount -t cgroup2 none /sys/fs/cgroup
mount -t bpf bpf /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
for m in $(cat modules.txt); do modprobe -q "$m" || echo "vm: module $m not loaded"; done
ip link set lo up
. ./env.sh
uname -r > kernel.txt
if [ -f exec.sh ]; then
  sh exec.sh > exec.txt 2>&1
  exit 0
fi
# The probes netflow picks on this kernel, as it tells a user at start.
timeout -s INT 60 "$NETFLOW_BIN" trace --host 192.0.2.1 --duration 2s > /dev/null 2> probes.txt
: > results.txt
# Lines: LABEL ENV BIN TESTS... (LABEL and ENV "-" for none; ENV forces a
# fallback probe, e.g. NETFLOW_NF_PROBE=kprobe).
while read -r label envs bin filters; do
  [ -n "$bin" ] || continue
  echo "== $label $envs $bin $filters" >> results.txt
  [ "$envs" = "-" ] && envs=
  # shellcheck disable=SC2086
  env $envs "$bin" --exact $filters --test-threads="$TEST_THREADS" --show-output >> results.txt 2>&1
done < tests.txt
echo "vm: done" >> results.txt
