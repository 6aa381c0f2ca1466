#!/usr/bin/env bash
# Download and unpack Debian's stock kernels for the kernel matrix (`cargo xtask vm-test`):
# 5.10 (bullseye), 6.1 and 6.12 (bookworm), generic flavour (the cloud one has no 9p).
# Cached under target/vm/: each kernel is unpacked once into target/vm/kernels/<release>/.
set -euo pipefail
cd "$(dirname "$0")/.."
VM=target/vm
mkdir -p "$VM/debs" "$VM/kernels" "$VM/apt/lists/partial" "$VM/apt/cache/archives/partial"

# A private apt configuration for bullseye, so the host's sources stay as they are.
cat > "$VM/apt/bullseye.list" <<'SRC'
deb http://deb.debian.org/debian bullseye main
deb http://deb.debian.org/debian-security bullseye-security main
SRC
priv=(-o Dir::Etc::sourcelist="$PWD/$VM/apt/bullseye.list" -o Dir::Etc::sourceparts=-
      -o Dir::State::Lists="$PWD/$VM/apt/lists" -o Dir::Cache="$PWD/$VM/apt/cache")

# Newest package whose name matches a pattern (apt's own view).
newest() { # pattern [apt options...]
  local pat=$1; shift
  apt-cache "$@" search --names-only "$pat" | awk '{print $1}' | sort -V | tail -1
}

fetch() { # series package [apt options...]
  local series=$1 pkg=$2; shift 2
  local have
  have=$(ls "$VM/kernels" 2>/dev/null | grep -E "^${series//./\\.}[.-]" | head -1 || true)
  if [ -n "$have" ] && [ -f "$VM/kernels/$have/vmlinuz" ]; then
    echo "kernel $series: $have (cached)"; return
  fi
  [ -n "$pkg" ] || { echo "no kernel package found for $series" >&2; exit 1; }
  (cd "$VM/debs" && apt-get -o APT::Sandbox::User=root "$@" download "$pkg")
  local deb; deb=$(ls -t "$VM"/debs/"$pkg"_*.deb | head -1)
  local tmp="$VM/kernels/.unpack"
  rm -rf "$tmp"; dpkg -x "$deb" "$tmp"
  local rel; rel=$(ls "$tmp/lib/modules" | head -1)
  rm -rf "$VM/kernels/$rel"; mkdir -p "$VM/kernels/$rel"
  mv "$tmp/lib/modules/$rel" "$VM/kernels/$rel/modules"
  cp "$tmp"/boot/vmlinuz-"$rel" "$VM/kernels/$rel/vmlinuz"
  rm -f "$deb"
  rm -rf "$tmp"
  # depmod wants <base>/lib/modules/<rel>: give it that shape with a symlink.
  mkdir -p "$VM/kernels/$rel/base/lib/modules"
  ln -sfn ../../../modules "$VM/kernels/$rel/base/lib/modules/$rel"
  depmod -b "$VM/kernels/$rel/base" "$rel"
  echo "kernel $series: $rel"
}

apt-cache policy >/dev/null
fetch 6.1 "$(newest '^linux-image-6\.1\.0-[0-9]+-amd64$')"
fetch 6.12 "$(newest '^linux-image-6\.12\.[0-9]+\+deb12-amd64$')"
if ! ls "$VM/kernels" | grep -q '^5\.10\.'; then
  apt-get "${priv[@]}" update -q >/dev/null
fi
fetch 5.10 "$(newest '^linux-image-5\.10\.0-[0-9]+-amd64$' "${priv[@]}")" "${priv[@]}"
