// libjpeg-turbo's classic libjpeg API (Debian: libjpeg62-turbo-dev). jpeglib.h needs FILE and size_t first.
#include <stdio.h>
#include <stddef.h>
#include <jpeglib.h>
