#!/usr/bin/env bash
# Fetch COCO 2017 (train, val images + instance annotations) into DEST/coco with the layout
# annotations/instances_{train,val}2017.json, train2017/, val2017/ (configs/coco_*.yaml).
# Usage: tools/download_coco.sh [DEST=data]   (about 19 GB)
set -euo pipefail
dest="${1:-data}/coco"
mkdir -p "$dest" && cd "$dest"
for url in http://images.cocodataset.org/zips/train2017.zip http://images.cocodataset.org/zips/val2017.zip \
           http://images.cocodataset.org/annotations/annotations_trainval2017.zip; do
  file="$(basename "$url")"
  [ -f "$file" ] || curl -fL --retry 3 -o "$file" "$url"
  unzip -q -n "$file"
done
echo "COCO ready under $dest"
