#!/usr/bin/env bash
# Runs one distributed training across network namespaces whose links are shaped by the
# kernel (tc netem), as a second opinion on asgd's own --net-delay/--net-rate emulation.
#
# Usage (as root, with iproute2):
#   scripts/netem.sh [--ranks N] [--delay MS] [--rate MBIT] [--asgd PATH] -- <asgd train flags>
# Example:
#   scripts/netem.sh --ranks 4 --delay 50 -- --algo dasgd --data mnist --data-dir ../shared/data/mnist --epochs 1
#
# It creates namespaces asgd-ns0..N-1, each joined to a bridge by a veth pair with
# `tc qdisc ... netem delay MS [rate MBIT]` on both ends (so a message between two ranks is
# delayed by MS at the sender's end and MS at the receiver's end: 2*MS one way), runs rank i
# in namespace i, prints each rank's output prefixed by its rank, and removes everything on
# exit, also on failure or Ctrl-C.
set -euo pipefail

ranks=4
delay=50
rate=""
asgd="$(dirname "$0")/../target/release/asgd"
while [ $# -gt 0 ]; do
    case "$1" in
        --ranks) ranks="$2"; shift 2 ;;
        --delay) delay="$2"; shift 2 ;;
        --rate) rate="$2"; shift 2 ;;
        --asgd) asgd="$2"; shift 2 ;;
        --) shift; break ;;
        *) echo "unknown option $1 (see the header of $0)" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "run as root: network namespaces need it" >&2; exit 2; }
command -v ip >/dev/null && command -v tc >/dev/null || { echo "needs iproute2 (ip, tc): apt-get install iproute2" >&2; exit 2; }
[ -x "$asgd" ] || { echo "no asgd binary at $asgd; build it with cargo build --release or pass --asgd" >&2; exit 2; }
asgd="$(cd "$(dirname "$asgd")" && pwd)/$(basename "$asgd")"

bridge=asgd-br0
cleanup() {
    for i in $(seq 0 $((ranks - 1))); do
        ip netns del "asgd-ns$i" 2>/dev/null || true
        ip link del "asgd-v$i" 2>/dev/null || true
    done
    ip link del "$bridge" 2>/dev/null || true
}
trap cleanup EXIT INT TERM
cleanup

# netem for a delay (and a rate with it); tbf when only a rate is asked for, since some kernels
# ship tbf but not netem.
if [ "$delay" != 0 ]; then
    qdisc="netem delay ${delay}ms${rate:+ rate ${rate}mbit}"
elif [ -n "$rate" ]; then
    qdisc="tbf rate ${rate}mbit burst 64kbit latency 400ms"
else
    qdisc=""
fi
ip link add "$bridge" type bridge
if [ -n "$qdisc" ] && ! tc qdisc add dev "$bridge" root $qdisc 2>/dev/null; then
    echo "this kernel cannot shape links with '$qdisc' (netem needs CONFIG_NET_SCH_NETEM);" \
         "use asgd's own --net-delay/--net-rate, or a kernel with netem" >&2
    exit 2
fi
[ -n "$qdisc" ] && tc qdisc del dev "$bridge" root
ip link set "$bridge" up
for i in $(seq 0 $((ranks - 1))); do
    ns="asgd-ns$i"
    ip netns add "$ns"
    ip link add "asgd-v$i" type veth peer name eth0 netns "$ns"
    ip link set "asgd-v$i" master "$bridge" up
    ip -n "$ns" addr add "10.77.0.$((i + 1))/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    if [ -n "$qdisc" ]; then
        tc qdisc add dev "asgd-v$i" root $qdisc
        tc -n "$ns" qdisc add dev eth0 root $qdisc
    fi
done
echo "ranks: $ranks in namespaces asgd-ns0..$((ranks - 1)), each end of each link: ${qdisc:-unshaped}"

# Addresses other than loopback need a shared secret.
secret="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
pids=()
for i in $(seq 0 $((ranks - 1))); do
    (
        ip netns exec "asgd-ns$i" env RANK="$i" WORLD_SIZE="$ranks" MASTER_ADDR=10.77.0.1 MASTER_PORT=29500 \
            ASGD_SECRET="$secret" ASGD_BIND_ADDR="10.77.0.$((i + 1))" \
            "$asgd" train "$@" 2>&1 | sed -u "s/^/[rank $i] /"
        exit "${PIPESTATUS[0]}"
    ) &
    pids+=($!)
done
status=0
for p in "${pids[@]}"; do
    wait "$p" || status=1
done
exit $status
