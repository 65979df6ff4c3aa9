#!/bin/busybox sh
# Guest init: mount the basics, load the virtio modules, bring up the NIC if the
# lab gave one an address (ferry.net=ADDR/PREFIX), run the workload.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /lib/modules/order); do
  insmod /lib/modules/$m.ko 2>/dev/null
done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
if grep -q ferry.probe=1 /proc/cmdline; then
  echo FERRY PROBE OK > /dev/ttyS0
  poweroff -f
fi
net=$(sed -n 's/.*ferry\.net=\([0-9./]*\).*/\1/p' /proc/cmdline)
if [ -n "$net" ]; then
  i=0
  while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
  ip link set lo up
  ip addr add "$net" dev eth0
  ip link set eth0 up
  # announce the address (a new guest may reuse a deleted one's: clients' ARP caches
  # would still name the old MAC)
  arping -U -c 2 -I eth0 "${net%/*}" >/dev/null 2>&1 &
  /bin/netecho > /dev/ttyS0 2>&1 &
fi
/bin/workload
echo "FERRY FATAL workload exited" > /dev/ttyS1
while true; do sleep 3600; done
