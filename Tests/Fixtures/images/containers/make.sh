#!/usr/bin/env bash
# Generates the containers fixtures into OUTDIR: OVAs (ustar, GNU long names, pax), a standalone
# OVF, compressed disks (gzip, xz, zstd, lz4), a GCE-style disk.raw in tar.gz, initramfs archives
# and hand-built kernel headers. Deterministic: fixed times, owners and contents.
set -euo pipefail
out=${1:?usage: make.sh OUTDIR}
mkdir -p "$out"
cd "$out"
export LC_ALL=C TZ=UTC SOURCE_DATE_EPOCH=1000000000
T="--mtime=@1000000000 --owner=0 --group=0 --numeric-owner"
stamp() { touch -d @1000000000 "$@"; }

# A 4 MiB raw disk with an MBR and one partition, and a 2 MiB one without.
truncate -s 4M disk.raw
printf 'label: dos\nlabel-id: 0x12345678\nstart=2048, type=83\n' | sfdisk -q disk.raw >/dev/null
printf 'imgtool fixture data' | dd of=disk.raw bs=1 seek=1048576 conv=notrunc status=none
truncate -s 2M disk2.raw
qemu-img create -q -f qcow2 small.qcow2 64M
qemu-img convert -O vmdk -o subformat=streamOptimized disk.raw disk1.vmdk
qemu-img convert -O vmdk -o subformat=streamOptimized disk2.raw disk2.vmdk
stamp disk.raw disk2.raw small.qcow2 disk1.vmdk disk2.vmdk

ovf() {  # ovf NAME DISKS... (each DISK is file:capacity-in-MiB); FORMAT overrides the disk format URI
  local format=${FORMAT:-http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized}
  local name=$1; shift
  {
    printf '<?xml version="1.0" encoding="UTF-8"?>\n'
    printf '<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf">\n'
    printf '  <References>\n'
    local i=1
    for d in "$@"; do
      printf '    <File ovf:href="%s" ovf:id="file%d" ovf:size="%s"/>\n' "${d%%:*}" $i "$(stat -c %s "${d%%:*}" 2>/dev/null || echo 0)"
      i=$((i + 1))
    done
    printf '  </References>\n  <DiskSection>\n    <Info>Virtual disk information</Info>\n'
    i=1
    for d in "$@"; do
      printf '    <Disk ovf:capacity="%s" ovf:capacityAllocationUnits="byte * 2^20" ovf:diskId="vmdisk%d" ovf:fileRef="file%d" ovf:format="%s"/>\n' "${d##*:}" $i $i "$format"
      i=$((i + 1))
    done
    printf '  </DiskSection>\n  <VirtualSystem ovf:id="vm">\n    <Info>A virtual machine</Info>\n    <Name>fixture</Name>\n'
    printf '    <OperatingSystemSection ovf:id="101" vmw:osType="otherLinux64Guest">\n      <Info>OS</Info>\n      <Description>Linux</Description>\n    </OperatingSystemSection>\n'
    printf '    <VirtualHardwareSection>\n      <Info>hardware</Info>\n'
    printf '      <Item><rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>2</rasd:VirtualQuantity></Item>\n'
    printf '      <Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits><rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>512</rasd:VirtualQuantity></Item>\n'
    i=1
    for d in "$@"; do
      printf '      <Item><rasd:HostResource>ovf:/disk/vmdisk%d</rasd:HostResource><rasd:InstanceID>%d</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType></Item>\n' $i $((i + 10))
      i=$((i + 1))
    done
    printf '    </VirtualHardwareSection>\n  </VirtualSystem>\n</Envelope>\n'
  } > "$name"
  stamp "$name"
}
manifest() {  # manifest NAME FILES...
  local name=$1; shift
  for f in "$@"; do printf 'SHA256(%s)= %s\n' "$f" "$(sha256sum "$f" | cut -d' ' -f1)"; done > "$name"
  stamp "$name"
}

# One-disk OVA, ovftool's layout: descriptor, manifest, disk.
ovf app.ovf disk1.vmdk:4
manifest app.mf app.ovf disk1.vmdk
tar --format=ustar $T -cf app.ova app.ovf app.mf disk1.vmdk
cp app.ovf standalone.ovf

# Two disks (4 MiB and 2 MiB).
ovf two.ovf disk1.vmdk:4 disk2.vmdk:2
manifest two.mf two.ovf disk1.vmdk disk2.vmdk
tar --format=ustar $T -cf two-disks.ova two.ovf two.mf disk1.vmdk disk2.vmdk

# GNU tar with a member name longer than 100 bytes (a 'L' long-name header).
long=disk-with-a-very-long-name-that-does-not-fit-in-the-one-hundred-byte-ustar-name-field-of-a-tar-header.vmdk
cp disk1.vmdk "$long"; stamp "$long"
ovf gnu.ovf "$long":4
tar --format=gnu $T -cf gnu-longname.ova gnu.ovf "$long"

# pax (POSIX.1-2001) tar: extended headers for the long name.
ovf pax.ovf "$long":4
tar --format=pax $T --pax-option=delete=atime,delete=ctime -cf pax.ova pax.ovf "$long"

# Descriptor not first (ESXi refuses these).
tar --format=ustar $T -cf disk-first.ova disk1.vmdk app.ovf app.mf

# A raw disk (oVirt's format URI for raw), and one whose declared capacity (8 MiB) exceeds the
# disk (4 MiB), and one whose capacity (2 MiB) is smaller than the disk.
FORMAT=http://en.wikipedia.org/wiki/Byte ovf raw.ovf disk.raw:4
manifest raw.mf raw.ovf disk.raw
tar --format=ustar $T -cf raw.ova raw.ovf raw.mf disk.raw
FORMAT=http://en.wikipedia.org/wiki/Byte ovf cap.ovf disk.raw:8
tar --format=ustar $T -cf capacity-larger.ova cap.ovf disk.raw
FORMAT=http://en.wikipedia.org/wiki/Byte ovf cap2.ovf disk.raw:2
tar --format=ustar $T -cf capacity-smaller.ova cap2.ovf disk.raw
# A gzip-compressed disk member (ovftool --compress), declared with ovf:compression="gzip".
gzip -n -c disk.raw > disk.raw.gz.member
FORMAT=http://en.wikipedia.org/wiki/Byte ovf gz.ovf disk.img.gz:4
sed -i 's|ovf:href="disk.img.gz"|ovf:compression="gzip" ovf:href="disk.img.gz"|' gz.ovf
mv disk.raw.gz.member disk.img.gz; stamp disk.img.gz gz.ovf
tar --format=ustar $T -cf compressed-member.ova gz.ovf disk.img.gz
rm -f disk.img.gz

# Compressed disks.
gzip -9 -c disk.raw > disk.raw.gz
xz -c --check=crc64 disk.raw > disk.raw.xz
zstd -q -c disk.raw > disk.raw.zst
lz4 -q -c disk.raw > disk.raw.lz4
bzip2 -c disk.raw > disk.raw.bz2
gzip -c small.qcow2 > small.qcow2.gz
xz -c small.qcow2 > small.qcow2.xz
# GCE style: disk.raw inside tar.gz, written sparse (-S) as Google documents.
tar --format=oldgnu $T -Sczf gce.tar.gz disk.raw
# Trailing garbage after a gzip stream.
{ cat disk.raw.gz; printf 'this is not gzip'; } > trailing.gz
# Two concatenated gzip members (legal).
{ head -c 2097152 disk.raw | gzip -n -c; tail -c +2097153 disk.raw | gzip -n -c; } > members.raw.gz

# initramfs: newc cpio, compressed every way the kernel accepts.
mkdir -p root/bin root/etc root/kernel/x86/microcode
printf '#!/bin/sh\necho hello\n' > root/init; chmod 755 root/init
printf 'root:x:0:0::/root:/bin/sh\n' > root/etc/passwd
printf 'busybox' > root/bin/sh
printf 'microcode blob' > root/kernel/x86/microcode/GenuineIntel.bin
find root -exec touch -h -d @1000000000 {} +
(cd root && find init bin etc | sort | cpio --quiet -o -H newc -R 0:0 --reproducible) > initrd.cpio
gzip -n -9 -c initrd.cpio > initrd.gz
xz --check=crc32 -c initrd.cpio > initrd.xz
zstd -q -c initrd.cpio > initrd.zst
lz4 -q -l -c initrd.cpio > initrd.lz4
(cd root && find kernel | sort | cpio --quiet -o -H newc -R 0:0 --reproducible) > early.cpio
cat early.cpio initrd.gz > initrd-microcode.img
(cd root && find init bin etc | sort | cpio --quiet -o -H odc -R 0:0 --reproducible) > initrd-odc.cpio

# Kernels: hand-built headers (no kernel is shipped with the fixtures).
python3 - <<'PY'
import struct
def bzimage(path, loadflags=1, version=0x020f):
    b = bytearray(64 * 1024)
    b[0:2] = b"MZ"                                   # EFI stub
    b[0x1f1] = 27                                    # setup_sects
    struct.pack_into("<I", b, 0x1f4, (len(b) - 28 * 512) // 16)  # syssize
    b[0x1fe:0x200] = b"\x55\xaa"                     # boot_flag
    b[0x200:0x202] = b"\xeb\x6a"                     # jump
    b[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", b, 0x206, version)
    struct.pack_into("<H", b, 0x20e, 0x3000)         # kernel_version -> 0x3200
    b[0x211] = loadflags
    struct.pack_into("<H", b, 0x236, 0x7f)           # xloadflags
    struct.pack_into("<II", b, 0x248, 0x3a5, 0x9000) # payload offset/length
    struct.pack_into("<I", b, 0x260, 0x1000000)      # init_size
    v = b"6.1.0-imgtool (fixture@example) #1 SMP PREEMPT_DYNAMIC\x00"
    b[0x3200:0x3200 + len(v)] = v
    open(path, "wb").write(b)
bzimage("vmlinuz")
bzimage("zimage-x86", loadflags=0, version=0x0204)
def image(path, magic, riscv=False):
    b = bytearray(8192)
    b[0:4] = b"MZ\x00\x00" if not riscv else b"\x6f\x00\x00\x00"
    struct.pack_into("<QQQ", b, 8, 0x80000 if not riscv else 0x200000, 0x1230000, 0xa)
    if riscv:
        struct.pack_into("<I", b, 0x2c, 0x00000002)  # header version 0.2
        b[0x30:0x38] = b"RISCV\x00\x00\x00"
    b[0x38:0x3c] = magic
    open(path, "wb").write(b)
image("Image-arm64", b"ARM\x64")
image("Image-riscv", b"RSC\x05", riscv=True)
b = bytearray(16384)
struct.pack_into("<III", b, 0x24, 0x016F2818, 0, len(b))
open("zImage-arm", "wb").write(b)
PY
rm -rf root
