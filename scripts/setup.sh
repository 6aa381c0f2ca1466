#!/usr/bin/env bash
# One-time machine setup for building and testing netflow (Debian 12, root).
# Installs: LLVM 22 (matches rustc's LLVM), bpf-linker, nightly rust-src and clippy (the kernel crate's lint),
# the network tools the real-kernel tests and the benchmark use, and qemu
# with Debian's stock kernels for the kernel matrix, and Prometheus (the
# agent test scrapes netflow with it).
set -euo pipefail
export PATH="$HOME/.cargo/bin:$PATH"

need_apt=()
for p in llvm-22-dev libpolly-22-dev libzstd-dev zlib1g-dev iproute2 iptables nftables bpftool iputils-ping iperf3 tcpdump python3 protobuf-compiler containerd runc containernetworking-plugins busybox-static dnsmasq-base bind9 bind9-dnsutils tshark tmux qemu-system-x86 kmod xz-utils prometheus ipvsadm; do
  dpkg -s "$p" >/dev/null 2>&1 || need_apt+=("$p")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${need_apt[@]}"
fi
# The DNS tests start their own BIND in a lab namespace: the package's
# service stays off where systemd runs.
if [ -d /run/systemd/system ]; then
  systemctl disable --now named >/dev/null 2>&1 || true
fi

# The Kubernetes API schemas the deploy/ manifests are checked against (offline).
python3 -c 'import kubernetes_validate' 2>/dev/null || python3 -m pip install -q kubernetes-validate || python3 -m pip install -q --break-system-packages kubernetes-validate
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
rustup component add rust-src clippy --toolchain nightly

if ! command -v bpf-linker >/dev/null 2>&1; then
  LLVM_PREFIX=/usr/lib/llvm-22 LLVM_SYS_221_PREFIX=/usr/lib/llvm-22 \
    cargo install bpf-linker --locked --no-default-features --features llvm-22
fi

# The kernel matrix (cargo xtask vm-test): Debian's 5.10 and 6.1 kernels (two point
# releases each) and 6.12, cached under target/vm/.
bash "$(dirname "$0")/vm-kernels.sh"

# bpffs and tracefs may be unmounted on a fresh boot.
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing
