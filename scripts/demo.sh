#!/usr/bin/env bash
# Ferry's main job on the embedded default: a two-host lab, a VM whose
# workload dirties memory, migrated there and back with progress shown.
set -euo pipefail
cd "$(dirname "$0")/.."
FERRY=.venv/bin/ferry
VM=demo1

$FERRY lab up --hosts 2
if $FERRY vm show "$VM" --json >/dev/null 2>&1; then
  echo "removing the previous demo VM"
  $FERRY vm delete "$VM" --delete-volumes
fi
$FERRY vm create "$VM" --host node1 --memory 256 --workload-wss 64 --workload-dirty 16 \
  --disk shared:0.25
$FERRY host list
echo
echo "== migrating $VM node1 -> node2 (guest keeps dirtying 16 MiB/s)"
$FERRY migrate "$VM" --to node2 --wait
echo
echo "== and back node2 -> node1, with a 50 ms downtime limit"
$FERRY migrate "$VM" --to node1 --wait --max-downtime 50
echo
$FERRY migration list --vm "$VM"
echo "== what the guest saw (its heartbeats, read on every host it ran on)"
$FERRY lab check "$VM"
cat <<MSG

Explore further:
  .venv/bin/ferry vm list                      VMs and where they run
  .venv/bin/ferry migration show ID            events and figures of one migration
  .venv/bin/ferry migrate $VM --to node2 --wait --json
  virsh -c qemu+tcp://198.18.0.11/system list  the real libvirt of node1
Tear the lab down (guests, daemons, namespaces, controller):
  .venv/bin/ferry lab down
MSG
