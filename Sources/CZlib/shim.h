// zlib (zlib1g-dev): gzread reads gzip and plain files alike, so IDX files may be either.
#include <zlib.h>
