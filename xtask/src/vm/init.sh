#!/bin/busybox sh
# PID 1 of the test VM: load the modules for virtio and 9p, put an overlay
# (tmpfs upper) over the host's root shared read-only, and run the guest
# script inside it. Results go to the writable share; the VM powers off.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules.order); do insmod "/mods/$m" 2>/dev/null; done
REL=$(uname -r)
mkdir -p /lower /rw /newroot
o=trans=virtio,version=9p2000.L,msize=512000
mount -t 9p -o "$o,ro,cache=loose" hostroot /lower || { echo "vm: no host root"; echo o > /proc/sysrq-trigger; }
mount -t tmpfs -o size=2g tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot
mkdir -p "/newroot/lib/modules/$REL" /newroot/mnt/netflow-vm
mount -t 9p -o "$o,ro" mods "/newroot/lib/modules/$REL"
mount -t 9p -o "$o" guest /newroot/mnt/netflow-vm
mount -t proc proc /newroot/proc
mount -t sysfs sys /newroot/sys
mount -t devtmpfs dev /newroot/dev
cd /newroot
chroot /newroot /bin/sh /mnt/netflow-vm/run.sh > /newroot/mnt/netflow-vm/console.log 2>&1
sync
echo o > /proc/sysrq-trigger
sleep 10
