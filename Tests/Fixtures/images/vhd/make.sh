#!/usr/bin/env bash
# Generates the VHD and VHDX fixtures with qemu-img into OUTDIR (deterministic sizes and content;
# qemu writes random UUIDs and timestamps, which the manifest does not compare).
set -euo pipefail
out=${1:?usage: make.sh OUTDIR}
mkdir -p "$out"
cd "$out"
q() { qemu-img "$@" >/dev/null; }

# A small raw disk with data in a few places (first block, middle, last sector).
head -c 1048576 < <(yes 'imgtool vhd fixture data') > data.raw
truncate -s 3M data.raw
printf 'middle' | dd of=data.raw bs=1 seek=2000000 conv=notrunc status=none
printf 'end' | dd of=data.raw bs=1 seek=3145000 conv=notrunc status=none

# --- VHD (qemu driver "vpc") ---
# Legacy qemu mode: the size is rounded up to a CHS geometry and current size = CHS x 512.
q create -f vpc -o subformat=dynamic vhd-dynamic-10m.vhd 10M
# force_size=on: creator "qem2", current size is exactly what was asked, CHS rounds down.
q create -f vpc -o subformat=dynamic,force_size=on vhd-dynamic-10m-force.vhd 10M
# A size no CHS geometry expresses exactly (33 MiB + 7 sectors).
q create -f vpc -o subformat=dynamic vhd-dynamic-odd.vhd 34606592
q create -f vpc -o subformat=dynamic,force_size=on vhd-dynamic-odd-force.vhd 34606592
q create -f vpc -o subformat=fixed vhd-fixed-4m.vhd 4M
q create -f vpc -o subformat=fixed,force_size=on vhd-fixed-6m-force.vhd 6M
q convert -O vpc data.raw vhd-converted.vhd
q convert -O vpc -o subformat=fixed data.raw vhd-converted-fixed.vhd

# A dynamic disk whose creator is VirtualBox ("vbox"): current size is the disk size (VirtualBox
# reads it so), the CHS geometry is the spec's (appendix "CHS calculation") for 10 MiB, 301/4/17,
# which rounds down. Made from a force_size image by rewriting the creator application and the
# geometry in both footer copies and recomputing their checksums.
cp vhd-dynamic-10m-force.vhd vhd-creator-vbox.vhd
perl -e '
  my $f = shift; open(my $h, "+<:raw", $f) or die; my $size = -s $f;
  for my $at (0, $size - 512) {
    seek($h, $at, 0); read($h, my $b, 512) == 512 or die;
    substr($b, 28, 4) = "vbox"; substr($b, 56, 4) = pack("nCC", 301, 4, 17);
    substr($b, 64, 4) = "\0\0\0\0";
    my $sum = 0; $sum += $_ for unpack("C*", $b);
    substr($b, 64, 4) = pack("N", (~$sum) & 0xffffffff);
    seek($h, $at, 0); print $h $b;
  }
  close($h);' vhd-creator-vbox.vhd

# A differencing disk (qemu cannot create one): the force_size dynamic image with disk type 4, a
# parent UUID and name, and one W2ku parent locator whose UTF-16LE path sits in a sector appended
# after the BAT. Both checksums are recomputed; the footer copy is written again at the end.
perl -e '
  my ($in, $out) = @ARGV; open(my $h, "<:raw", $in) or die; local $/; my $d = <$h>; close($h);
  sub sum { my $s = 0; $s += $_ for unpack("C*", $_[0]); return (~$s) & 0xffffffff }
  my $footer = substr($d, 0, 512); my $header = substr($d, 512, 1024);
  substr($footer, 60, 4) = pack("N", 4); substr($footer, 64, 4) = "\0" x 4;
  substr($footer, 64, 4) = pack("N", sum($footer));
  my $name = "base.vhd"; my $name16 = join("", map { pack("n", ord) } split(//, $name));
  my $path = "C:\\images\\base.vhd"; my $path16 = join("", map { pack("v", ord) } split(//, $path));
  substr($header, 40, 16) = "\x11" x 16;
  substr($header, 64, length $name16) = $name16;
  substr($header, 576, 24) = "W2ku" . pack("NNN", 1, length $path16, 0) . pack("Q>", 2048);
  substr($header, 36, 4) = "\0" x 4; substr($header, 36, 4) = pack("N", sum($header));
  my $locator = $path16 . ("\0" x (512 - length $path16));
  open(my $o, ">:raw", $out) or die;
  print $o $footer, $header, substr($d, 1536, 512), $locator, $footer; close($o);' \
  vhd-dynamic-10m-force.vhd vhd-differencing.vhd

# --- VHDX ---
q create -f vhdx vhdx-dynamic-default.vhdx 10M
q create -f vhdx -o block_size=1M vhdx-dynamic-1m.vhdx 64M
q create -f vhdx -o block_size=32M,log_size=2M vhdx-dynamic-32m-log2m.vhdx 100M
q create -f vhdx -o block_state_zero=off vhdx-dynamic-nozero.vhdx 20M
# qemu marks a fixed image's blocks ZERO (state 2, no offset) unless block_state_zero=off.
q create -f vhdx -o subformat=fixed,block_size=1M vhdx-fixed-4m.vhdx 4M
q create -f vhdx -o subformat=fixed,block_size=1M,block_state_zero=off vhdx-fixed-4m-allocated.vhdx 4M
q convert -O vhdx -o block_size=1M data.raw vhdx-converted.vhdx
rm -f data.raw
