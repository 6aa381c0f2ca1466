#!/usr/bin/env bash
# Download and unpack Debian's stock kernels for the kernel matrix (`cargo xtask vm-test`),
# generic flavour (the cloud one has no 9p), two point releases of each older series:
#   5.10        bullseye-security's newest      5.10-point  bullseye's own (main suite)
#   6.1         bookworm-security's newest      6.1-point   bookworm's own (main suite)
#   6.12        bookworm's backported 6.12
# The archive's addresses come from this machine's apt sources. Cached under target/vm/:
# each kernel is unpacked once into target/vm/kernels/<release>/, and
# target/vm/kernels/matrix.txt says which release each name runs ("-": none, and why).
set -euo pipefail
cd "$(dirname "$0")/.."
VM=target/vm
mkdir -p "$VM/debs" "$VM/kernels" "$VM/apt/cache/archives/partial"
LIST="$VM/kernels/matrix.txt"
touch "$LIST"

# The main and security archives' URIs from the machine's own sources (deb822
# debian.sources, else one-line sources.list).
read -r MAIN_URI SEC_URI < <(python3 - <<'PY'
import glob, os
main = sec = ""
def take(uri, suites):
    global main, sec
    if any(s.endswith("-security") for s in suites):
        sec = sec or uri
    elif suites:
        main = main or uri
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for stanza in open(path).read().split("\n\n"):
        f = {}
        for line in stanza.splitlines():
            if ":" in line and not line.lstrip().startswith("#"):
                k, v = line.split(":", 1)
                f[k.strip()] = v.strip()
        if "debian" in f.get("URIs", "") and "deb" in f.get("Types", "").split():
            take(f["URIs"].split()[0], f.get("Suites", "").split())
for path in ["/etc/apt/sources.list"] + glob.glob("/etc/apt/sources.list.d/*.list"):
    if os.path.exists(path):
        for line in open(path):
            w = line.split()
            if len(w) >= 3 and w[0] == "deb" and "debian" in w[1]:
                take(w[1], [w[2]])
print(main or "-", sec or "-")
PY
)

# A private apt configuration per suite, so the host's sources stay as they are.
priv() { # name -> apt options
  local d="$PWD/$VM/apt/$1"
  echo "-o Dir::Etc::sourcelist=$d/sources.list -o Dir::Etc::sourceparts=- -o Dir::State::Lists=$d/lists -o Dir::Cache=$PWD/$VM/apt/cache"
}
suite_update() { # name uri suite
  local d="$VM/apt/$1"
  mkdir -p "$d/lists/partial"
  echo "deb $2 $3 main" > "$d/sources.list"
  # shellcheck disable=SC2046
  apt-get $(priv "$1") update -q >/dev/null 2>"$d/update.err"
}

# Newest package whose name matches a pattern (apt's own view).
newest() { # pattern [apt options...]
  local pat=$1; shift
  # shellcheck disable=SC2068
  apt-cache $@ search --names-only "$pat" | awk '{print $1}' | sort -V | tail -1
}

have() { # name -> its cached release, if unpacked
  local rel
  rel=$(awk -v n="$1" '$1 == n {print $2}' "$LIST")
  if [ -n "$rel" ] && [ "$rel" != "-" ] && [ -f "$VM/kernels/$rel/vmlinuz" ]; then echo "$rel"; fi
}

record() { # name release-or-dash [why...]
  local name=$1; shift
  grep -v "^$name " "$LIST" > "$LIST.new" || true
  echo "$name $*" >> "$LIST.new"
  mv "$LIST.new" "$LIST"
}

unpack() { # package [apt options...] -> prints the release
  local pkg=$1; shift
  local rel=${pkg#linux-image-}
  if [ ! -f "$VM/kernels/$rel/vmlinuz" ]; then
    # shellcheck disable=SC2068
    (cd "$VM/debs" && apt-get -o APT::Sandbox::User=root $@ download "$pkg" >/dev/null)
    local deb; deb=$(ls -t "$VM"/debs/"$pkg"_*.deb | head -1)
    local tmp="$VM/kernels/.unpack"
    rm -rf "$tmp"; dpkg -x "$deb" "$tmp"
    rm -rf "$VM/kernels/$rel"; mkdir -p "$VM/kernels/$rel"
    mv "$tmp/lib/modules/$rel" "$VM/kernels/$rel/modules"
    cp "$tmp"/boot/vmlinuz-"$rel" "$VM/kernels/$rel/vmlinuz"
    rm -f "$deb"; rm -rf "$tmp"
    # depmod wants <base>/lib/modules/<rel>: give it that shape with a symlink.
    mkdir -p "$VM/kernels/$rel/base/lib/modules"
    ln -sfn ../../../modules "$VM/kernels/$rel/base/lib/modules/$rel"
    depmod -b "$VM/kernels/$rel/base" "$rel"
  fi
  echo "$rel"
}

kernel() { # name pattern suite-name uri suite
  local name=$1 pat=$2 sname=$3 uri=$4 suite=$5 rel pkg opts
  rel=$(have "$name")
  if [ -n "$rel" ]; then echo "kernel $name: $rel (cached)"; return; fi
  if [ "$uri" = "-" ]; then
    record "$name" - "no $suite archive in this machine's apt sources"
    echo "kernel $name: not available (no $suite archive in this machine's apt sources)"; return
  fi
  if [ "$uri" = host ]; then
    opts=""
  else
    if ! suite_update "$sname" "$uri" "$suite"; then
      record "$name" - "$suite could not be read from $uri"
      echo "kernel $name: not available ($suite could not be read from $uri: $(tail -1 "$VM/apt/$sname/update.err"))"; return
    fi
    opts=$(priv "$sname")
  fi
  # shellcheck disable=SC2086
  pkg=$(newest "$pat" $opts)
  if [ -z "$pkg" ]; then
    record "$name" - "no kernel package in $suite"
    echo "kernel $name: not available (no kernel package in $suite at $uri)"; return
  fi
  # shellcheck disable=SC2086
  rel=$(unpack "$pkg" $opts)
  record "$name" "$rel"
  echo "kernel $name: $rel"
}

apt-cache policy >/dev/null
P510='^linux-image-5\.10\.0-[0-9]+-amd64$'
P61='^linux-image-6\.1\.0-[0-9]+-amd64$'
kernel 6.12 '^linux-image-6\.12\.[0-9]+\+deb12-amd64$' host host bookworm
kernel 6.1 "$P61" bookworm-security "$SEC_URI" bookworm-security
kernel 6.1-point "$P61" bookworm "$MAIN_URI" bookworm
kernel 5.10 "$P510" bullseye-security "$SEC_URI" bullseye-security
kernel 5.10-point "$P510" bullseye "$MAIN_URI" bullseye
