#!/usr/bin/env bash
# Generates the disc fixture group into OUTDIR: ISOs (plain, Rock Ridge/Joliet, El Torito BIOS and
# EFI, hybrid MBR/GPT, UDF bridge), partitioned raw disks (MBR with logical partitions, GPT, hybrid
# MBR, 4K-sector GPT) and raw filesystem images. Deterministic where the tools allow it: fixed
# dates, UUIDs, serials and labels, so manifest values do not change between runs.
set -euo pipefail
out=${1:?usage: make.sh OUTDIR}
mkdir -p "$out"
cd "$out"
export SOURCE_DATE_EPOCH=1700000000 LC_ALL=C
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# ---- ISO content ----
mkdir -p "$work/tree/boot" "$work/tree/docs"
printf 'hello from imgtool\n' > "$work/tree/docs/readme.txt"
# A tiny "boot image": no-emulation images are loaded as-is, content does not matter.
head -c 2048 /dev/zero | tr '\0' '\220' > "$work/tree/boot/boot.bin"
# An EFI El Torito image is a FAT filesystem image.
mkfs.vfat -C -n EFIBOOT -i 12345678 "$work/tree/boot/efi.img" 1440 >/dev/null

xo() { xorriso -abort_on FAILURE -report_about SORRY -as mkisofs "$@" 2>/dev/null; }
dates=(--modification-date=2023111422132000)

xo "${dates[@]}" -V PLAIN -o plain.iso "$work/tree/docs"
xo "${dates[@]}" -r -J -V RRJOLIET -publisher IMGTOOL -A "imgtool fixtures" -o rr-joliet.iso "$work/tree"
genisoimage -quiet -r -J -V GENISO -o genisoimage.iso "$work/tree/docs"
xo "${dates[@]}" -r -J -V BIOSBOOT -b boot/boot.bin -c boot/boot.cat -no-emul-boot -boot-load-size 4 \
  -o eltorito-bios.iso "$work/tree"
xo "${dates[@]}" -r -J -V EFIBOOT -e boot/efi.img -no-emul-boot -o eltorito-efi.iso "$work/tree"
# BIOS + EFI boot entries; the EFI image appended as a GPT partition (xorriso's own hybrid layout,
# no syslinux needed): protective MBR and GPT in the system area.
xo "${dates[@]}" -r -J -V HYBRIDGPT -b boot/boot.bin -c boot/boot.cat -no-emul-boot -boot-load-size 4 \
  -append_partition 2 0xef "$work/tree/boot/efi.img" -appended_part_as_gpt \
  -eltorito-alt-boot -e --interval:appended_partition_2:all:: -no-emul-boot -o hybrid-gpt.iso "$work/tree"
# The layout distribution installers ship (syslinux isohybrid MBR, GPT listing the whole ISO from
# LBA 0 and the EFI image inside it): overlapping partitions that are legitimate on an ISO.
isohdpfx=/usr/lib/ISOLINUX/isohdpfx.bin
if [ -f "$isohdpfx" ]; then
  xo "${dates[@]}" -r -J -V ISOHYBRID -isohybrid-mbr "$isohdpfx" -b boot/boot.bin -c boot/boot.cat -no-emul-boot \
    -boot-load-size 4 -boot-info-table -eltorito-alt-boot -e boot/efi.img -no-emul-boot -isohybrid-gpt-basdat \
    -o isohybrid.iso "$work/tree"
fi
# Mac-bootable layouts: an Apple partition map (HFS+ hybrid), and MBR + GPT + APM together (the
# isohdppx.bin MBR starts with the APM's "ER" signature).
xo "${dates[@]}" -r -J -V APMHFS -hfsplus -apm-block-size 2048 -o apm-hfsplus.iso "$work/tree"
if [ -f /usr/lib/ISOLINUX/isohdppx.bin ]; then
  xo "${dates[@]}" -r -J -V MACHYBRID -isohybrid-mbr /usr/lib/ISOLINUX/isohdppx.bin -b boot/boot.bin -c boot/boot.cat \
    -no-emul-boot -boot-load-size 4 -boot-info-table -eltorito-alt-boot -e boot/efi.img -no-emul-boot \
    -isohybrid-gpt-basdat -isohybrid-apm-hfsplus -o mac-hybrid.iso "$work/tree"
fi
# MBR-only hybrid: a DOS partition table in the system area listing the ISO.
xo "${dates[@]}" -r -J -V HYBRIDMBR --protective-msdos-label -o hybrid-mbr.iso "$work/tree"
# Appended EFI system partition after the ISO, as distribution installers do.
xo "${dates[@]}" -r -J -V APPENDED -append_partition 2 0xef "$work/tree/boot/efi.img" -o appended-esp.iso "$work/tree"
genisoimage -quiet -udf -r -J -V UDFBRIDGE -o udf-bridge.iso "$work/tree/docs"
# Polyglot: a qcow2 header (qemu-img's own) in the system area of an ISO. qemu-img's format probe
# calls it qcow2; imgtool must never call it a safe ISO.
qemu-img create -q -f qcow2 "$work/header.qcow2" 1M
cp plain.iso iso-qcow2-polyglot.iso
dd if="$work/header.qcow2" of=iso-qcow2-polyglot.iso bs=512 count=1 conv=notrunc status=none

# ---- partitioned raw disks ----
truncate -s 8M mbr-logical.img
sfdisk -q mbr-logical.img <<'SF'
label: dos
label-id: 0x1234abcd
start=2048, size=2048, type=83, bootable
start=4096, size=4096, type=c
start=8192, type=5
start=10240, size=2048, type=83
start=14336, size=1024, type=82
SF
truncate -s 8M gpt.img
sfdisk -q gpt.img <<'SF'
label: gpt
label-id: 11111111-2222-3333-4444-555555555555
first-lba: 34
start=2048, size=2048, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=aaaaaaaa-0000-0000-0000-000000000001, name="EFI system"
start=4096, size=4096, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=aaaaaaaa-0000-0000-0000-000000000002, name="root"
start=8192, size=2048, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F, uuid=aaaaaaaa-0000-0000-0000-000000000003, name="swap"
SF
# Filesystems inside the GPT partitions (written at the partition offsets).
mkfs.vfat --offset 2048 -i 0badcafe -n ESP gpt.img 1024 >/dev/null 2>&1
mkfs.ext4 -q -F -E offset=$((4096 * 512)) -U 22222222-3333-4444-5555-666666666666 -L root \
  -E lazy_itable_init=1,nodiscard,offset=$((4096 * 512)) gpt.img 2048 >/dev/null
dd if=/dev/zero of="$work/swap" bs=1M count=1 status=none
mkswap -q -L swap -U 33333333-4444-5555-6666-777777777777 "$work/swap" >/dev/null
dd if="$work/swap" of=gpt.img bs=512 seek=8192 conv=notrunc status=none

# GPT with a hybrid MBR (sgdisk -h): MBR-only firmware sees partition 1 and 2.
cp gpt.img gpt-hybrid-mbr.img
sgdisk -h 1:2 gpt-hybrid-mbr.img >/dev/null
# GPT on a 4Kn disk (fdisk -b sets the logical sector size of a file; expert commands fix the
# disk and partition GUIDs).
truncate -s 16M gpt-4k.img
printf 'g\nn\n1\n256\n+4M\nx\ni\n44444444-2222-3333-4444-555555555555\nu\nbbbbbbbb-0000-0000-0000-000000000001\nn\ndata\nr\nw\n' \
  | fdisk -b 4096 gpt-4k.img >/dev/null 2>&1
# A GPT image that lost its last sector (backup header): truncated by a careless copy.
head -c $((8 * 1024 * 1024 - 512)) gpt.img > gpt-no-backup.img

# ---- raw filesystem images ----
mkfs.vfat -C -n FLOPPY -i 1234abcd floppy-1440k.img 1440 >/dev/null
truncate -s 16M fat16.img; mkfs.vfat -F 16 -n FAT16 -i 16161616 fat16.img >/dev/null
truncate -s 40M fat32.img; mkfs.vfat -F 32 -n FAT32 -i 32323232 fat32.img >/dev/null
truncate -s 4M ext2.img; mkfs.ext2 -q -F -L ext2 -U 00000000-0000-0000-0000-000000000002 ext2.img >/dev/null
truncate -s 4M ext3.img; mkfs.ext3 -q -F -L ext3 -U 00000000-0000-0000-0000-000000000003 ext3.img >/dev/null
truncate -s 4M ext4.img; mkfs.ext4 -q -F -L ext4 -U 00000000-0000-0000-0000-000000000004 ext4.img >/dev/null
truncate -s 4M ntfs.img; mkfs.ntfs -q -F -f -L NTFS ntfs.img >/dev/null 2>&1
truncate -s 128M btrfs.img; mkfs.btrfs -q -f -L btrfs -U 00000000-0000-0000-0000-0000000000bf btrfs.img >/dev/null
# XFS needs 300 MiB and a 64 MiB log at least: sparse, generated only here, never committed.
truncate -s 300M xfs.img; mkfs.xfs -q -f -L xfs -m uuid=00000000-0000-0000-0000-0000000000f5 xfs.img >/dev/null
truncate -s 1M swap.img; mkswap -q -L swap -U 00000000-0000-0000-0000-000000000005 swap.img >/dev/null
mksquashfs "$work/tree/docs" squashfs.img -quiet -noappend -all-root >/dev/null

# ---- real images with one hostile edit each ----
# Patches bytes (given as \xNN escapes) into a file at an offset.
patch() { printf "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none; }
# An ISO cut short of the volume its primary descriptor declares.
head -c 1000000 rr-joliet.iso > iso-truncated.iso
# The El Torito validation entry's checksum off by one (catalog sector from the boot record).
cp eltorito-bios.iso iso-bad-catalog.iso
catalog=$(od -An -t u4 -j $((17 * 2048 + 71)) -N 4 eltorito-bios.iso | tr -d ' ')
patch iso-bad-catalog.iso $((catalog * 2048 + 28)) '\x01\x02'
# The volume space size's big-endian half disagreeing with the little-endian one.
cp plain.iso iso-endian-mismatch.iso
patch iso-endian-mismatch.iso $((16 * 2048 + 84)) '\x00\x00\x10\x00'
# GPT primary header CRC broken (the backup stays intact).
cp gpt.img gpt-bad-header-crc.img
patch gpt-bad-header-crc.img $((512 + 16)) '\xff'
# A byte of partition 1's name changed without updating the entry array CRC.
cp gpt.img gpt-bad-entries-crc.img
patch gpt-bad-entries-crc.img $((1024 + 56)) 'X'
# The first EBR's link pointing back at itself: an endless logical partition chain.
cp mbr-logical.img mbr-ebr-loop.img
patch mbr-ebr-loop.img $((8192 * 512 + 462)) '\x00\x00\x00\x00\x05\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00'
# Two MBR partitions overlapping (partition 2 moved to start inside partition 1).
cp mbr-logical.img mbr-overlap.img
patch mbr-overlap.img $((446 + 16 + 8)) '\x00\x0c\x00\x00'
