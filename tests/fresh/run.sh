#!/usr/bin/env bash
# make test-fresh: the README's quick start on a bare machine. A minbase Debian 12 chroot
# (debootstrap --variant=minbase bookworm, cached as a tarball; every run unpacks a pristine copy)
# gets git, a clone of this checkout's committed HEAD and ../shared beside it, /proc, /dev and /sys;
# then the two command lines of README.md's "Quick start" block run in it as root with a clean
# environment, each timed. Exits nonzero when either fails, or when the demo leaves the clone dirty.
#   FRESH_MIRROR  Debian mirror (default http://deb.debian.org/debian)
#   FRESH_CACHE   the pristine tarball (default build/fresh/debian-bookworm-minbase.tar)
#   FRESH_KEEP=1  keep the chroot afterwards (its path is printed)
# Logs: build/fresh/setup.log, build/fresh/quickstart-1.log, build/fresh/quickstart-2.log.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
shared=${SHARDLORA_SHARED:-$(cd "$root/.." && pwd)/shared}
mirror=${FRESH_MIRROR:-http://deb.debian.org/debian}
logs=$root/build/fresh
cache=${FRESH_CACHE:-$logs/debian-bookworm-minbase.tar}
say() { echo "fresh: $*"; }
die() { echo "fresh: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot and mount)"
[ -d "$shared" ] || die "no shared inputs at $shared (set SHARDLORA_SHARED)"
# The two command lines: the indented lines between "## Quick start" and the next heading.
mapfile -t lines < <(awk '/^## /{q = /^## Quick start/; next} q && /^    [^ ]/{sub(/^    /, ""); print}' README.md)
[ ${#lines[@]} -eq 2 ] || die "README.md's quick start has ${#lines[@]} command lines, expected 2"
head=$(git rev-parse HEAD) || die "not a git checkout: $root"
git diff --quiet HEAD 2>/dev/null || say "note: uncommitted changes are not tested (the clone is HEAD ${head:0:12})"
mkdir -p "$logs"

dir=
# Stop what still runs in the chroot (daemons of a failed test), unmount everything below it, and
# delete it only when nothing is mounted there any more.
cleanup() {
  [ -n "$dir" ] && [ -d "$dir" ] || return 0
  local p m left
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/root" 2>/dev/null)" = "$dir" ] && kill -KILL "${p#/proc/}" 2>/dev/null
  done
  for m in $(awk -v d="$dir/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
  done
  left=$(awk -v d="$dir/" 'index($2, d) == 1 {print $2}' /proc/self/mounts)
  if [ -n "$left" ]; then echo "fresh: still mounted, $dir left in place: $left" >&2; return 0; fi
  if [ "${FRESH_KEEP:-0}" = 1 ]; then say "chroot kept in $dir"; else rm -rf --one-file-system "$dir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
dir=$(mktemp -d "${TMPDIR:-/tmp}/shardlora-fresh.XXXXXX") || die "mktemp failed"
chmod 755 "$dir"

t0=$SECONDS
if [ -s "$cache" ]; then
  tar -C "$dir" -xf "$cache" || die "cannot unpack $cache"
  say "pristine minbase bookworm from $cache ($((SECONDS - t0)) s)"
else
  if ! command -v debootstrap >/dev/null; then
    apt-get install -y -qq debootstrap >/dev/null 2>&1 ||
      { apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null; } || die "cannot install debootstrap"
  fi
  say "debootstrap --variant=minbase bookworm (log: $logs/debootstrap.log)"
  debootstrap --variant=minbase bookworm "$dir" "$mirror" >"$logs/debootstrap.log" 2>&1 ||
    { tail -n 20 "$logs/debootstrap.log" >&2; die "debootstrap failed"; }
  tar -C "$dir" -cf "$cache.partial" . && mv "$cache.partial" "$cache" || die "cannot write $cache"
  say "debootstrap took $((SECONDS - t0)) s; cached in $cache"
fi

# The machine around the chroot: its name resolves (as on an installed system), DNS works.
echo "127.0.0.1 localhost" >"$dir/etc/hosts"
echo "127.0.1.1 $(hostname)" >>"$dir/etc/hosts"
cp -L /etc/resolv.conf "$dir/etc/resolv.conf"
# ... and it trusts what its network needs: where the egress re-signs TLS with a CA of its own (added
# under /usr/local/share/ca-certificates, named in /etc/pip.conf), a machine on it has that CA too,
# or no PyPI download (tools/hf-venv.sh) could verify.
if [ -f /etc/pip.conf ]; then
  mkdir -p "$dir/usr/local/share/ca-certificates" "$dir/etc/ssl/certs"
  cp -L /usr/local/share/ca-certificates/*.crt "$dir/usr/local/share/ca-certificates/" 2>/dev/null || true
  cp -L /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/" 2>/dev/null || true
  cp -L /etc/pip.conf "$dir/etc/pip.conf"
fi
mount -t proc proc "$dir/proc" || die "cannot mount $dir/proc"
for d in dev sys; do
  mount --rbind "/$d" "$dir/$d" && mount --make-rslave "$dir/$d" || die "cannot bind-mount /$d"
done

in_chroot() {  # CMDLINE: as root in the chroot, clean environment, in the clone
  env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM="${TERM:-dumb}" \
    chroot "$dir" /bin/bash -c "cd /root/shardlora 2>/dev/null; $1"
}

# What the new user did before the quick start: install git, clone, put the shared inputs beside.
t0=$SECONDS
{
  in_chroot "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y git" &&
  git clone -q --no-hardlinks "$root" "$dir/root/shardlora" &&
  { git -C "$dir/root/shardlora" checkout -q --detach "$head" 2>/dev/null ||
    { git -C "$dir/root/shardlora" fetch -q "$root" "$head" && git -C "$dir/root/shardlora" checkout -q --detach "$head"; }; } &&
  cp -a "$shared" "$dir/root/shared"
} >"$logs/setup.log" 2>&1 || { tail -n 20 "$logs/setup.log" >&2; die "setup (git, clone) failed"; }
say "setup: apt-get install git, clone of ${head:0:12}, ../shared: $((SECONDS - t0)) s"

status=0 times=()
for i in 0 1; do
  n=$((i + 1)) log=$logs/quickstart-$n.log
  say "command $n: ${lines[$i]}   (log: $log)"
  t0=$SECONDS
  # In the background, so that a signal stops the wait at once and the trap cleans up.
  ( in_chroot "${lines[$i]}" 2>&1 | tee "$log"; exit "${PIPESTATUS[0]}" ) &
  wait $!; rc=$?
  times[$i]=$((SECONDS - t0))
  say "command $n: exit status $rc after ${times[$i]} s"
  [ "$rc" -eq 0 ] || status=1
  if [ "$n" = 1 ]; then
    dirty=$(in_chroot "git status --porcelain")
    [ -z "$dirty" ] || { say "command 1 left the clone dirty (git status):"; echo "$dirty"; status=1; }
  fi
done
final=$(grep -E '^[0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?$' "$logs/quickstart-2.log" | tail -n 1)
[ -n "$final" ] || { say "command 2 printed no 'N passed, N failed' line"; status=1; }
say "summary: command 1 ${times[0]} s, command 2 ${times[1]} s, tests: ${final:-none}"
[ "$status" -eq 0 ] && say "passed" || say "FAILED"
exit "$status"
