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
# Every program's verifier figure and the start-up time, for the summary.
timeout -s INT 300 "$NETFLOW_BIN" check --json > check.json 2> check.err
: > results.txt
# Lines: LABEL ENV BIN TESTS... (LABEL and ENV "-" for none; ENV forces a
# fallback probe, e.g. NETFLOW_NF_PROBE=kprobe).
while read -r label envs bin filters; do
  [ -n "$bin" ] || continue
  echo "== $label $envs $bin $filters" >> results.txt
  # ENV: VAR=value[,VAR=value...]
  if [ "$envs" = "-" ]; then envs=; else envs=$(echo "$envs" | tr ',' ' '); fi
  # A test binary that hangs is stopped (its unfinished tests read "not
  # run"), what was running and the kernel's last words are kept, and the
  # next binary runs.
  # shellcheck disable=SC2086
  timeout -s KILL "$TEST_BIN_SECS" env $envs "$bin" --exact $filters --test-threads="$TEST_THREADS" --show-output >> results.txt 2>&1
  if [ $? -eq 137 ]; then
    {
      echo "vm: $bin stopped after $TEST_BIN_SECS s; what was running:"
      ps -eo pid,ppid,etime,stat,args | sed 's/^/vm:   /'
      echo "vm: the kernel's last lines:"
      dmesg | tail -n 40 | sed 's/^/vm:   /'
    } >> results.txt 2>&1
  fi
done < tests.txt
echo "vm: done" >> results.txt
