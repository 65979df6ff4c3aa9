#!/usr/bin/env bash
# Ferry's main job on the embedded default: a three-host lab, a VM whose
# workload dirties memory, migrated there and back with progress shown; then
# its host drained (plan first) and brought back.
set -euo pipefail
cd "$(dirname "$0")/.."
FERRY=.venv/bin/ferry
VM=demo1

VM2=demo2

$FERRY lab up --hosts 3
$FERRY host activate node1 >/dev/null  # a previous demo may have left it in maintenance
for v in "$VM" "$VM2"; do
  if $FERRY vm show "$v" --json >/dev/null 2>&1; then
    echo "removing the previous demo VM $v"
    $FERRY vm delete "$v" --delete-volumes
  fi
done
$FERRY vm create "$VM" --host node1 --memory 256 --workload-wss 64 --workload-dirty 16 \
  --disk shared:0.25
$FERRY vm create "$VM2" --host node1 --memory 128 --workload-wss 16 --workload-dirty 0
$FERRY host list
echo
echo "== migrating $VM node1 -> node2 (guest keeps dirtying 16 MiB/s)"
$FERRY migrate "$VM" --to node2 --wait
echo
echo "== and back node2 -> node1, with a 50 ms downtime limit"
$FERRY migrate "$VM" --to node1 --wait --max-downtime 50
echo
$FERRY migration list --vm "$VM"
echo "== what the guest saw (its heartbeats, read on every host it ran on), and what"
echo "   its network client saw (UDP every 10 ms, one TCP stream: blackout, resets)"
$FERRY lab check "$VM"
echo
echo "== emptying node1 for maintenance: the plan first, then the drain"
$FERRY host drain node1 --dry-run
$FERRY host drain node1 --wait
echo
echo "== maintenance over: the VMs come back"
$FERRY host activate node1 --return --wait
cat <<MSG

Explore further:
  .venv/bin/ferry vm list                      VMs and where they run
  .venv/bin/ferry migration show ID            events and figures of one migration
  .venv/bin/ferry migrate $VM --to node2 --wait --json
  .venv/bin/ferry host drain node1 --dry-run --json   a drain's plan, for scripts
  .venv/bin/ferry drain list                   drains and their state
  .venv/bin/ferry ui                           the web view's link (hosts, drains, migrations
                                               live; open it in a browser on this machine)
  virsh -c qemu+tls://198.18.0.11/system list  the real libvirt of node1
Tear the lab down (guests, daemons, namespaces, controller):
  .venv/bin/ferry lab down
MSG
