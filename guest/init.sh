#!/bin/busybox sh
# Guest init: mount the basics, load the virtio modules, run the workload.
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
/bin/workload
echo "FERRY FATAL workload exited" > /dev/ttyS1
while true; do sleep 3600; done
