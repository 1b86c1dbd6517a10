// libpng 1.6 (Debian: libpng-dev). Decoding goes through CImageDecode, which catches libpng's longjmp errors.
#include <png.h>
