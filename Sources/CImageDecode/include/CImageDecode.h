// PNG and JPEG decoding (and, for tests, encoding) that reports failures as a return code and a message instead of
// libpng's and libjpeg's default longjmp/exit: Swift cannot catch a longjmp, so the setjmp lives here in C.
#ifndef VITFORGE_CIMAGEDECODE_H
#define VITFORGE_CIMAGEDECODE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Decoded 8-bit pixels, row-major [height, width, channels], channels 1 (grey) or 3 (RGB). Free with
/// vf_image_free.
typedef struct vf_image {
    unsigned char *pixels;
    int width;
    int height;
    int channels;
} vf_image;

/// Largest side and pixel count accepted, so a hostile header (a few bytes claiming 32768×32768) cannot ask for more
/// memory than a machine has: 64 Mpixel is 192 MB of RGB, above any photo a data set holds.
#define VF_MAX_SIDE 32768
#define VF_MAX_PIXELS (1 << 26)

/// Decode a PNG held in memory. Palette, low bit depths and 16 bits become 8-bit grey or RGB; an alpha channel is
/// dropped without compositing (what PIL's convert("RGB") does for torchvision's ImageFolder). Returns 0 on success;
/// otherwise non-zero, *image untouched, and a one-line reason in message (always NUL-terminated).
int vf_decode_png(const unsigned char *bytes, size_t size, vf_image *image, char *message, size_t message_size);

/// Decode a JPEG held in memory to grey (one-component files) or RGB; CMYK and YCCK files become RGB as Pillow's
/// convert("RGB") makes them (Adobe's inverted CMYK assumed, as Pillow does). A file that ends early is an error, not
/// libjpeg's grey fill. Same return convention as vf_decode_png.
int vf_decode_jpeg(const unsigned char *bytes, size_t size, vf_image *image, char *message, size_t message_size);

/// vf_decode_jpeg at 1/scale_denom of the size (1, 2, 4 or 8), by libjpeg's DCT scaling: each side becomes
/// ceil(side / scale_denom), far cheaper than decoding at full size and resizing.
int vf_decode_jpeg_scaled(const unsigned char *bytes, size_t size, int scale_denom, vf_image *image, char *message,
                          size_t message_size);

/// A file's size and the channels it decodes to (1 or 3), read from its header alone.
typedef struct vf_image_header {
    int width;
    int height;
    int channels;
} vf_image_header;

/// Read the header of a PNG or JPEG whose first `size` bytes are given. Returns 0 and fills *header; 1 with a
/// one-line reason in message when the file is not a readable image; 2 when the bytes end before the header does
/// (call again with more of the file).
int vf_probe_image(const unsigned char *bytes, size_t size, vf_image_header *header, char *message,
                   size_t message_size);

void vf_image_free(vf_image *image);

/// Test support: write [height, width, channels] 8-bit pixels (channels 1 or 3) as a PNG or a JPEG file.
int vf_encode_png(const char *path, const unsigned char *pixels, int width, int height, int channels,
                  char *message, size_t message_size);
int vf_encode_jpeg(const char *path, const unsigned char *pixels, int width, int height, int channels, int quality,
                   char *message, size_t message_size);

#ifdef __cplusplus
}
#endif

#endif
