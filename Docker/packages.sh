#!/bin/sh
# Prints the runtime packages of one image (cpu or gpu) from Docker/runtime-packages, one per line. Used by both
# Dockerfiles and by the CI check, so that they install exactly the same list.
set -eu
image=${1:?usage: packages.sh cpu|gpu}
awk -v image="$image" '!/^#/ && NF { for (i = 2; i <= NF; i++) if ($i == image) print $1 }' \
    "$(dirname "$0")/runtime-packages"
