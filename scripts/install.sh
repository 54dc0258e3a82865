#!/usr/bin/env bash
# Installs backbone from this repository: the binary, the systemd unit, an example
# /etc/backbone/backbone.toml (an existing one is kept), /etc/default/backbone (likewise),
# the man pages and the shell completions (bash, zsh, fish).
#
#   scripts/install.sh [--prefix DIR] [--destdir DIR] [--binary FILE | --cpu LEVEL]
#
#   --prefix DIR    where the binary, man pages and completions go (default /usr/local)
#   --destdir DIR   a staging root to install under (packaging, tests); nothing outside it
#                   is touched, and systemd is not told
#   --binary FILE   install this binary instead of building target/release/backbone
#   --cpu LEVEL     build for this CPU (x86-64-v2, x86-64-v3, x86-64-v4 or native: rustc's
#                   -C target-cpu) instead of the portable x86-64 baseline; the binary
#                   then runs only on such CPUs (README, "Building for the CPU")
#
# Then: edit /etc/backbone/backbone.toml (pipeline-config/CONFIG.md), reserve hugepages and
# bind the NICs (README, "On real NICs"), and `systemctl enable --now backbone`.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf 'install: %s\n' "$*"; }
prefix=/usr/local
destdir=
binary=
cpu=
while [ $# -gt 0 ]; do
  case $1 in
    --prefix) prefix=$2; shift 2 ;;
    --destdir) destdir=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    --cpu) cpu=$2; shift 2 ;;
    *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
  esac
done
case $cpu in
  "" | x86-64-v2 | x86-64-v3 | x86-64-v4 | native) ;;
  *) say "--cpu: '$cpu' is not x86-64-v2, x86-64-v3, x86-64-v4 or native"; exit 2 ;;
esac
if [ -n "$binary" ] && [ -n "$cpu" ]; then
  say "--binary and --cpu: give one (--cpu builds the binary)"
  exit 2
fi
if [ -n "$cpu" ]; then
  say "building target/cpu-$cpu/release/backbone (-C target-cpu=$cpu)"
  RUSTFLAGS="-C target-cpu=$cpu" CARGO_TARGET_DIR=target/cpu-$cpu \
    cargo build --release --locked -p dataplane --bin backbone
  binary=target/cpu-$cpu/release/backbone
elif [ -z "$binary" ]; then
  say "building target/release/backbone"
  cargo build --release --locked -p dataplane --bin backbone
  binary=target/release/backbone
fi

root=$destdir
bin=$root$prefix/bin/backbone
install -D -m 0755 "$binary" "$bin"
say "$bin ($("$bin" --version))"

unit=$root/etc/systemd/system/backbone.service
mkdir -p "$(dirname "$unit")"
sed "s|@BINDIR@|$prefix/bin|g" dist/backbone.service >"$unit"
chmod 0644 "$unit"
say "$unit"

for f in "etc/default/backbone:dist/backbone.default" \
         "etc/backbone/backbone.toml:pipeline-config/examples/appliance.toml"; do
  to=$root/${f%%:*} from=${f#*:}
  if [ -e "$to" ]; then
    say "$to kept (the example is $from)"
  else
    install -D -m 0644 "$from" "$to"
    say "$to (from $from: edit it)"
  fi
done

man=$root$prefix/share/man/man1
"$bin" manpages "$man"
say "$man: $(ls "$man" | grep -c '^backbone') pages (man backbone, man backbone-ctl-routes, ...)"

bash_dir=$root$prefix/share/bash-completion/completions
zsh_dir=$root$prefix/share/zsh/site-functions
fish_dir=$root$prefix/share/fish/vendor_completions.d
mkdir -p "$bash_dir" "$zsh_dir" "$fish_dir"
"$bin" completions bash >"$bash_dir/backbone"
"$bin" completions zsh >"$zsh_dir/_backbone"
"$bin" completions fish >"$fish_dir/backbone.fish"
say "completions: $bash_dir/backbone, $zsh_dir/_backbone, $fish_dir/backbone.fish"

if [ -z "$destdir" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  say "systemd told; start it with: systemctl enable --now backbone"
fi
