#!/usr/bin/env bash
# Fetch Pascal VOC 2007 (trainval + test) and 2012 (trainval) into DEST/VOCdevkit/VOC{2007,2012}
# (the layout configs/voc_*.yaml expect). Usage: tools/download_voc.sh [DEST=data]
set -euo pipefail
dest="${1:-data}"
mkdir -p "$dest" && cd "$dest"
base="http://host.robots.ox.ac.uk/pascal/VOC"
for archive in voc2007/VOCtrainval_06-Nov-2007.tar voc2007/VOCtest_06-Nov-2007.tar voc2012/VOCtrainval_11-May-2012.tar; do
  file="$(basename "$archive")"
  [ -f "$file" ] || curl -fL --retry 3 -o "$file" "$base/$archive"
  tar -xf "$file"
done
echo "VOC ready under $dest/VOCdevkit (VOC2007, VOC2012)"
