#!/usr/bin/env bash
# Real containers for CI: build the project's Dockerfile, unchanged, with podman and run
# docker-compose.yml with podman-compose. test/containers.test.ts drives it step by step; run alone
# (`test/containers.sh`, as root) it does everything once and tears it down again.
#
#   test/containers.sh [all]   setup, build, up, wait for vm1..vm3, print their logs, down
#   test/containers.sh setup   install podman & co. when missing, containers.conf, the base image
#   test/containers.sh build   podman build --format docker of the Dockerfile (prints size, time)
#   test/containers.sh up      podman-compose up --no-start, then start in depends_on order
#   test/containers.sh wait    wait (bounded) for vm1..vm3; their logs and exit codes
#   test/containers.sh down    podman-compose down, remove containers and the project's volume
#   test/containers.sh project the compose project name (one per checkout: a rerun cleans up after
#                              an interrupted one)
#
# Exit status: 0 done, 1 failed, 77 skipped (no root, or no podman and no way to install it; the
# reason is printed).
#
# THE BASE IMAGE IS A CI DEVICE. The Dockerfile says FROM node:20-bookworm-slim; CI machines reach
# only Debian's mirror and the npm registry, not Docker Hub. So `setup` builds a stand-in under
# that exact name: a minimal Debian bookworm root (debootstrap) with this host's node binary and
# npm, this host's CA certificates (NODE_EXTRA_CA_CERTS as the host sets it) and a `node` user
# 1000:1000. It is labelled org.remote-spmc.ci-standin, kept in local storage between runs, and
# never pushed: this script refuses to push it, and nothing here logs in anywhere. Users build on
# the real node image.
set -uo pipefail
cd "$(dirname "$0")/.."

BASE=docker.io/library/node:20-bookworm-slim
STANDIN_LABEL=org.remote-spmc.ci-standin
IMAGE=${REMOTE_SPMC_IMAGE:-localhost/remote-spmc:latest}
# One project name per checkout directory, so two clones on one machine do not share containers.
PROJECT=${COMPOSE_PROJECT_NAME:-rspmc$(pwd | cksum | cut -c1-6)}
export COMPOSE_PROJECT_NAME=$PROJECT
WAIT_S=${CONTAINERS_WAIT_S:-180}
VMS=(vm1 vm2 vm3)

say() { printf 'containers: %s\n' "$*"; }
skip() {
  say "skipped: $*"
  exit 77
}
die() {
  say "FAILED: $*"
  exit 1
}
compose() { podman-compose -p "$PROJECT" -f docker-compose.yml "$@"; }
# podman-compose names containers PROJECT_SERVICE_1.
ctr() { printf '%s_%s_1' "$PROJECT" "$1"; }

need_root() { [ "$(id -u)" = 0 ] || skip "needs root (podman with runc and bridge networks, as CI runs it)"; }

setup() {
  need_root
  local need=()
  command -v podman >/dev/null || need+=(podman)
  command -v podman-compose >/dev/null || need+=(podman-compose)
  command -v runc >/dev/null || need+=(runc)
  command -v debootstrap >/dev/null || need+=(debootstrap)
  # The bridge network with service names as DNS names, and its port forwarding.
  [ -x /usr/lib/podman/netavark ] || need+=(netavark)
  [ -x /usr/lib/podman/aardvark-dns ] || need+=(aardvark-dns)
  command -v iptables >/dev/null || need+=(iptables)
  if [ ${#need[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || skip "no podman, and no apt-get to install ${need[*]}"
    say "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    (apt-get install -y --no-install-recommends "${need[@]}" >/dev/null 2>&1 ||
      { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends "${need[@]}" >/dev/null 2>&1; }) ||
      skip "could not install ${need[*]}"
  fi
  # runc: crun refuses this machine's hybrid cgroup layout ("cgroups in hybrid mode not
  # supported"). Default ulimits the sandbox allows: podman's own fail with "setrlimit ...
  # Operation not permitted".
  mkdir -p /etc/containers
  local conf=/etc/containers/containers.conf
  if ! grep -q 'remote-spmc CI' "$conf" 2>/dev/null; then
    [ -e "$conf" ] && cp "$conf" "$conf.before-remote-spmc"
    cat >"$conf" <<'EOF'
# Written by remote-spmc CI (test/containers.sh): runc, not crun (hybrid cgroups), and ulimits
# this sandbox allows.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"

[network]
network_backend = "netavark"
EOF
  fi
  podman info >/dev/null 2>&1 || skip "podman does not work here: $(podman info 2>&1 | tail -n 1)"
  base_image
}

base_image() {
  if podman image exists "$BASE"; then
    if [ -n "$(podman image inspect --format "{{ index .Labels \"$STANDIN_LABEL\" }}" "$BASE" 2>/dev/null | grep -v '<no value>')" ]; then
      say "base image: the CI stand-in for $BASE, cached"
    else
      say "base image: $BASE (a real one)"
    fi
    return 0
  fi
  local t0=$SECONDS root node npm
  node=$(command -v node) || die "no node on this host to put in the stand-in base image"
  npm=$(dirname "$(readlink -f "$(command -v npm)")")/..
  [ -f "$npm/package.json" ] || die "cannot find this host's npm (from $(command -v npm))"
  root=$(mktemp -d /var/tmp/rspmc-base.XXXXXX)
  # shellcheck disable=SC2064
  trap "rm -rf '$root'" RETURN
  say "building the CI stand-in for $BASE (debootstrap bookworm; cached afterwards)"
  debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >"$root.log" 2>&1 ||
    { tail -n 20 "$root.log"; rm -f "$root.log"; die "debootstrap failed"; }
  rm -f "$root.log"
  install -D -m 755 "$node" "$root/usr/local/bin/node"
  mkdir -p "$root/usr/local/lib/node_modules"
  cp -a "$(readlink -f "$npm")" "$root/usr/local/lib/node_modules/npm"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
  local changes=(--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin')
  # The host's CA certificates, where the host has them, and NODE_EXTRA_CA_CERTS as the host sets it.
  if [ -n "${NODE_EXTRA_CA_CERTS:-}" ] && [ -f "$NODE_EXTRA_CA_CERTS" ]; then
    install -D -m 644 "$NODE_EXTRA_CA_CERTS" "$root$NODE_EXTRA_CA_CERTS"
    changes+=(--change "ENV NODE_EXTRA_CA_CERTS=$NODE_EXTRA_CA_CERTS")
  fi
  [ -f /etc/ssl/certs/ca-certificates.crt ] && install -D -m 644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  chroot "$root" groupadd --gid 1000 node && chroot "$root" useradd --uid 1000 --gid node --shell /bin/bash --create-home node ||
    die "could not add the node user"
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*
  changes+=(--change "LABEL $STANDIN_LABEL=\"CI stand-in for $BASE built by test/containers.sh; never push\"")
  changes+=(--change "ENV NODE_VERSION=$("$node" -p 'process.versions.node')" --change 'CMD ["node"]')
  tar -C "$root" -c . | podman import "${changes[@]}" --message 'remote-spmc CI stand-in' - "$BASE" >/dev/null 2>&1 ||
    die "podman import of the stand-in failed"
  say "base image built in $((SECONDS - t0)) s: $(podman image inspect --format '{{.Size}}' "$BASE") bytes"
}

build() {
  need_root
  command -v podman >/dev/null || skip "no podman (run test/containers.sh setup as root)"
  local t0=$SECONDS log
  log=$(mktemp)
  # One build at a time on this machine: another checkout's prune must not take this build's
  # untagged layers from under it. (Released when the script exits.)
  exec 9>/run/lock/remote-spmc-podman-build.lock && flock 9
  # --format docker keeps HEALTHCHECK (the OCI format has no field for it). --pull=never: the base
  # image is local (see the top of this file). The build stage is tagged too, so that pruning
  # keeps it as the next build's cache (its `npm ci` takes most of a cold build).
  if ! { podman build --format docker --pull=never --target build -t "$IMAGE-build-cache" -f Dockerfile . &&
    podman build --format docker --pull=never -t "$IMAGE" -f Dockerfile .; } >"$log" 2>&1; then
    tail -n 40 "$log"
    rm -f "$log"
    die "podman build failed"
  fi
  rm -f "$log"
  say "build time: $((SECONDS - t0)) s"
  # What earlier builds left untagged: gigabytes after a few runs.
  podman image prune -f >/dev/null 2>&1
  say "image size: $(podman image inspect --format '{{.Size}}' "$IMAGE") bytes ($IMAGE)"
}

healthy() { podman healthcheck run "$(ctr "$1")" >/dev/null 2>&1; }
state() { podman inspect --format '{{.State.Status}}' "$(ctr "$1")" 2>/dev/null; }

# Start one container and wait (bounded) for what its dependants need: service_healthy by running
# its health check here (podman has no systemd here to run it on its interval, so nothing else
# would), service_completed_successfully by its exit status.
start_service() {
  local name=$1 wait=$2 deadline=$((SECONDS + 180))
  podman start "$(ctr "$name")" >/dev/null || die "podman start $name"
  case $wait in
    healthy)
      until healthy "$name"; do
        [ "$(state "$name")" = running ] || { podman logs "$(ctr "$name")" 2>&1 | tail -n 20; die "$name stopped before it was healthy"; }
        [ $SECONDS -lt $deadline ] || die "$name not healthy within 180 s"
        sleep 1
      done
      say "$name healthy" ;;
    completed)
      local code
      code=$(podman wait "$(ctr "$name")") || die "podman wait $name"
      [ "$code" = 0 ] || { podman logs "$(ctr "$name")" 2>&1 | tail -n 20; die "$name exited $code"; }
      say "$name completed" ;;
    *) say "$name started" ;;
  esac
}

up() {
  need_root
  command -v podman-compose >/dev/null || skip "no podman-compose (run test/containers.sh setup as root)"
  down >/dev/null 2>&1 # what an interrupted run left
  # podman-compose 1.0.3 starts every service at once and ignores depends_on conditions: create
  # the containers, then start them here in the compose file's order, waiting for each condition.
  compose up --no-build --no-start >/dev/null 2>&1 || { compose up --no-build --no-start 2>&1 | tail -n 20; die "podman-compose up --no-start"; }
  start_service certs completed
  start_service spmc healthy
  start_service sp-remote started
  for vm in "${VMS[@]}"; do start_service "$vm" started; done
}

wait_vms() {
  local deadline=$((SECONDS + WAIT_S)) failed=0 vm code
  for vm in "${VMS[@]}"; do
    while [ "$(state "$vm")" = running ]; do
      [ $SECONDS -lt $deadline ] || { say "$vm still running after ${WAIT_S} s"; failed=1; break 2; }
      sleep 1
    done
  done
  for vm in "${VMS[@]}"; do
    code=$(podman inspect --format '{{.State.ExitCode}}' "$(ctr "$vm")" 2>/dev/null)
    echo "----- $vm (exit ${code:-?}) -----"
    podman logs "$(ctr "$vm")" 2>&1
    [ "$code" = 0 ] && [ "$(state "$vm")" = exited ] || failed=1
  done
  echo "----- sp-remote -----"
  podman logs "$(ctr sp-remote)" 2>&1 | tail -n 5
  for vm in "${VMS[@]}"; do say "$vm exit code $(podman inspect --format '{{.State.ExitCode}}' "$(ctr "$vm")" 2>/dev/null)"; done
  return $failed
}

down() {
  compose down -t 2 >/dev/null 2>&1
  # Whatever podman-compose did not remove (a container a test started on the project's network).
  podman ps -a --filter "label=io.podman.compose.project=$PROJECT" --format '{{.Names}}' | xargs -r podman rm -f >/dev/null 2>&1
  podman ps -a --filter "network=${PROJECT}_default" --format '{{.Names}}' | xargs -r podman rm -f >/dev/null 2>&1
  podman volume ls --format '{{.Name}}' | grep "^${PROJECT}_" | xargs -r podman volume rm -f >/dev/null 2>&1
  podman network rm -f "${PROJECT}_default" >/dev/null 2>&1
  return 0
}

all() {
  setup || exit $?
  build || exit $?
  # These containers run outside any test's process group: nothing else would remove them.
  trap 'down; say "down"' EXIT
  local t0=$SECONDS
  up || exit $?
  wait_vms
  local status=$?
  say "compose run time: $((SECONDS - t0)) s"
  [ $status = 0 ] && say "all three VMs exited 0" || say "FAILED: a VM did not exit 0"
  exit $status
}

case ${1:-all} in
  all) all ;;
  setup) setup ;;
  build) build ;;
  up) up ;;
  wait) wait_vms ;;
  down) down ;;
  project) echo "$PROJECT" ;;
  push | login) die "refusing: the base image here is a CI stand-in for $BASE and must never be pushed" ;;
  *)
    sed -n '2,/^set -uo/p' "$0" | sed '$d'
    exit 2
    ;;
esac
