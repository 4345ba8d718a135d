#!/usr/bin/env bash
# Fetch the dashboard's front-end libraries from the npm registry and unpack the files the page
# uses, with their licence files, into service/web/static/vendor/. The result is committed, so
# `pip install .` and `ews run` need neither npm nor a CDN. Re-run after changing a version;
# the integrity hashes npm prints are recorded in vendor/VERSIONS.txt.
set -euo pipefail

LEAFLET_VERSION=1.9.4   # BSD-2-Clause, https://leafletjs.com
UPLOT_VERSION=1.6.32    # MIT, https://github.com/leeoniya/uPlot

here="$(cd "$(dirname "$0")/.." && pwd)"
dest="$here/service/web/static/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cd "$work"
npm pack --silent "leaflet@$LEAFLET_VERSION" "uplot@$UPLOT_VERSION" > packed.txt
mkdir leaflet uplot
tar -xzf "leaflet-$LEAFLET_VERSION.tgz" -C leaflet
tar -xzf "uplot-$UPLOT_VERSION.tgz" -C uplot

rm -rf "$dest/leaflet" "$dest/uplot"
mkdir -p "$dest/leaflet/images" "$dest/uplot"
cp leaflet/package/dist/leaflet.js leaflet/package/dist/leaflet.css leaflet/package/LICENSE "$dest/leaflet/"
cp leaflet/package/dist/images/*.png "$dest/leaflet/images/"
cp uplot/package/dist/uPlot.iife.min.js uplot/package/dist/uPlot.min.css uplot/package/LICENSE "$dest/uplot/"

{
  echo "Vendored by scripts/vendor-frontend.sh from the npm registry (npm pack)."
  echo "leaflet $LEAFLET_VERSION  integrity $(npm view "leaflet@$LEAFLET_VERSION" dist.integrity)"
  echo "uplot   $UPLOT_VERSION  integrity $(npm view "uplot@$UPLOT_VERSION" dist.integrity)"
} > "$dest/VERSIONS.txt"
echo "vendored into $dest:"; find "$dest" -type f | sort
