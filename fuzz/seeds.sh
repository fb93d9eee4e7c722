#!/usr/bin/env bash
# Small built-in seed images, one or more per format, made with the real tools (qemu-img, xorriso,
# sfdisk, mkfs.*, tar, compressors). They complement the fixture groups' images so every target
# starts from a valid instance of each format even before any fixture group exists.
# usage: fuzz/seeds.sh OUTDIR     (deterministic; a missing tool just skips its seeds)
set -uo pipefail
out=${1:?usage: seeds.sh OUTDIR}
mkdir -p "$out"
cd "$out"
have() { command -v "$1" >/dev/null 2>&1; }
q() { qemu-img create -q "$@" >/dev/null 2>&1 || echo "seeds: qemu-img create $* failed" >&2; }
# Scattered data so tables have allocated entries.
poke() { # file fmt
  have qemu-io || return 0
  for off in 0 65536 524288; do qemu-io -f "$2" -c "write -q -P 0x5a $off 4096" "$1" >/dev/null 2>&1; done
}

if have qemu-img; then
  q -f qcow2 -o compat=1.1 qcow2-v3.qcow2 1M;                   poke qcow2-v3.qcow2 qcow2
  q -f qcow2 -o compat=0.10 qcow2-v2.qcow2 1M;                  poke qcow2-v2.qcow2 qcow2
  q -f qcow2 -o cluster_size=512 qcow2-c512.qcow2 256K;        poke qcow2-c512.qcow2 qcow2
  q -f qcow2 -o cluster_size=4096,refcount_bits=1 qcow2-r1.qcow2 1M
  q -f qcow2 -o extended_l2=on,cluster_size=16384 qcow2-l2x.qcow2 1M
  q -f qcow2 -o compression_type=zstd qcow2-zstd.qcow2 1M
  q -f qcow2 -u -b base.img -F raw qcow2-backing.qcow2 1M
  q -f qcow2 -o data_file=data.raw,data_file_raw=on qcow2-datafile.qcow2 1M; rm -f data.raw
  q -f qcow2 --object secret,id=s0,data=seed -o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 qcow2-luks.qcow2 1M
  q -f qcow qcow1.qcow 1M;                                      poke qcow1.qcow qcow
  q -f qed qed.qed 1M;                                          poke qed.qed qed
  q -f luks --object secret,id=s0,data=seed -o key-secret=s0,iter-time=10 luks.luks 1M
  q -f vpc -o subformat=dynamic vhd-dynamic.vhd 1M;             poke vhd-dynamic.vhd vpc
  q -f vpc -o subformat=fixed vhd-fixed.vhd 256K
  q -f vhdx vhdx.vhdx 1M;                                       poke vhdx.vhdx vhdx
  q -f vmdk -o subformat=monolithicSparse vmdk-sparse.vmdk 1M;  poke vmdk-sparse.vmdk vmdk
  q -f vmdk -o subformat=streamOptimized vmdk-stream.vmdk 1M
  q -f vmdk -o subformat=monolithicFlat vmdk-flat.vmdk 64K;     rm -f vmdk-flat-flat.vmdk
  q -f vmdk -o subformat=twoGbMaxExtentSparse vmdk-2gb.vmdk 64K; rm -f vmdk-2gb-s*.vmdk
  q -f vdi vdi.vdi 1M;                                          poke vdi.vdi vdi
  q -f vdi -o static=on vdi-static.vdi 64K
  q -f parallels ploop.hds 1M;                                  poke ploop.hds parallels
fi

# Raw disks: partition tables and filesystems.
if have sfdisk; then
  truncate -s 1M mbr.raw && printf 'label: dos\n2048,512,83\n' | sfdisk -q mbr.raw >/dev/null 2>&1
  truncate -s 1M gpt.raw && printf 'label: gpt\n2048,512,L\n' | sfdisk -q gpt.raw >/dev/null 2>&1
fi
if have mkfs.vfat; then truncate -s 256K fat.raw && mkfs.vfat -i 12345678 fat.raw >/dev/null 2>&1; fi
if have mkfs.ext4; then
  truncate -s 1M ext4.raw && mkfs.ext4 -q -F -U 0f0f0f0f-0000-0000-0000-000000000001 -E root_owner=0:0 ext4.raw >/dev/null 2>&1
fi
if have mksquashfs; then
  mkdir -p sqroot && echo hello > sqroot/a && rm -f squash.raw && mksquashfs sqroot squash.raw -quiet -no-progress -all-root -mkfs-time 0 >/dev/null 2>&1
  rm -rf sqroot
fi
if have xorriso; then
  mkdir -p isoroot && echo hello > isoroot/readme.txt && rm -f disc.iso
  SOURCE_DATE_EPOCH=0 xorriso -as mkisofs -quiet -V SEED -J -R -o disc.iso isoroot >/dev/null 2>&1
  rm -rf isoroot
fi

# Containers: OVA (tar of OVF + disk), OVF alone, compressed images, kernel and ramdisk.
cat > seed.ovf <<'OVF'
<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">
  <References><File ovf:id="file1" ovf:href="disk.vmdk" ovf:size="65536"/></References>
  <DiskSection><Info>disks</Info>
    <Disk ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:capacity="1" ovf:capacityAllocationUnits="byte * 2^20"
          ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <VirtualSystem ovf:id="vm"><Info>vm</Info></VirtualSystem>
</Envelope>
OVF
if [ -f vmdk-stream.vmdk ] && have tar; then
  cp vmdk-stream.vmdk disk.vmdk
  tar --format=ustar --mtime=@0 --owner=0 --group=0 -cf appliance.ova seed.ovf disk.vmdk 2>/dev/null
  rm -f disk.vmdk
fi
if [ -f qcow2-v3.qcow2 ]; then
  have gzip && gzip -n -c qcow2-v3.qcow2 > qcow2.gz
  have xz && xz -c qcow2-v3.qcow2 > qcow2.xz
  have zstd && zstd -q -c qcow2-v3.qcow2 > qcow2.zst
  have lz4 && lz4 -q -c qcow2-v3.qcow2 > qcow2.lz4
  have bzip2 && bzip2 -c qcow2-v3.qcow2 > qcow2.bz2
fi
# A bzImage-like kernel header: boot flag 0x55aa at 0x1fe, "HdrS" at 0x202, protocol 2.15.
python3 - <<'PY' 2>/dev/null
b = bytearray(16384)
b[0x1f1] = 4                       # setup_sects
b[0x1fe:0x200] = b"\x55\xaa"       # boot_flag
b[0x202:0x206] = b"HdrS"           # header magic
b[0x206:0x208] = (0x020f).to_bytes(2, "little")
open("kernel.aki", "wb").write(b)
PY
if have cpio; then
  mkdir -p rd && echo init > rd/init && (cd rd && echo init | cpio -o -H newc --quiet --reproducible 2>/dev/null) > initrd.cpio
  have gzip && gzip -n -c initrd.cpio > initrd.ari
  rm -rf rd
fi
rm -f base.img
ls | wc -l | sed 's/^/seeds: /;s/$/ files/' >&2
