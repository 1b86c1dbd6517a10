#include "CImageDecode.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>
#include <jpeglib.h>
#include <jerror.h>

static void set_message(char *message, size_t message_size, const char *text) {
    if (message == NULL || message_size == 0) return;
    snprintf(message, message_size, "%s", text);
}

static int check_size(int width, int height, char *message, size_t message_size) {
    if (width <= 0 || height <= 0 || width > VF_MAX_SIDE || height > VF_MAX_SIDE) {
        char text[96];
        snprintf(text, sizeof text, "image size %dx%d is empty or beyond %d pixels a side", width, height, VF_MAX_SIDE);
        set_message(message, message_size, text);
        return 0;
    }
    if ((long long)width * (long long)height > VF_MAX_PIXELS) {
        char text[96];
        snprintf(text, sizeof text, "image size %dx%d is beyond the limit of %d pixels", width, height, VF_MAX_PIXELS);
        set_message(message, message_size, text);
        return 0;
    }
    return 1;
}

// MARK: PNG

typedef struct png_state {
    const unsigned char *bytes;
    size_t size;
    size_t offset;
    char message[256];
} png_state;

static void png_error_jump(png_structp png, png_const_charp text) {
    png_state *state = (png_state *)png_get_error_ptr(png);
    snprintf(state->message, sizeof state->message, "PNG: %s", text);
    png_longjmp(png, 1);
}

// libpng's warnings (unknown chunks, a bad sRGB profile) do not make the pixels wrong; keep stderr clean.
static void png_warning_ignore(png_structp png, png_const_charp text) {
    (void)png;
    (void)text;
}

static void png_read_memory(png_structp png, png_bytep out, size_t count) {
    png_state *state = (png_state *)png_get_io_ptr(png);
    if (count > state->size - state->offset) png_error(png, "truncated file (data ends early)");
    memcpy(out, state->bytes + state->offset, count);
    state->offset += count;
}

// The read struct of a PNG in memory (`state` holds the bytes), or NULL with `message` set when the signature is
// missing or memory runs out. Shared by decoding and header probing; each sets its own longjmp target.
static png_structp open_png(png_state *state, char *message, size_t message_size) {
    if (state->size < 8 || png_sig_cmp(state->bytes, 0, 8) != 0) {
        set_message(message, message_size, "PNG: not a PNG file (signature missing)");
        return NULL;
    }
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, state, png_error_jump, png_warning_ignore);
    if (png == NULL) set_message(message, message_size, "PNG: out of memory");
    return png;
}

int vf_decode_png(const unsigned char *bytes, size_t size, vf_image *image, char *message, size_t message_size) {
    png_state state = {bytes, size, 0, {0}};
    png_structp png = open_png(&state, message, message_size);
    if (png == NULL) return 1;
    png_infop info = png_create_info_struct(png);
    // Written after setjmp and read after the longjmp, hence volatile.
    unsigned char *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    if (info == NULL || setjmp(png_jmpbuf(png))) {
        set_message(message, message_size, info == NULL ? "PNG: out of memory" : state.message);
        free(pixels);
        free(rows);
        png_destroy_read_struct(&png, info == NULL ? NULL : &info, NULL);
        return 1;
    }
    png_set_user_limits(png, VF_MAX_SIDE, VF_MAX_SIDE);
    png_set_read_fn(png, &state, png_read_memory);
    png_read_info(png, info);
    int width = (int)png_get_image_width(png, info);
    int height = (int)png_get_image_height(png, info);
    int color_type = png_get_color_type(png, info);
    int bit_depth = png_get_bit_depth(png, info);
    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    // PIL keeps the high byte of 16-bit samples; so does png_set_strip_16 (the simplified API would instead treat
    // 16-bit data as linear light and re-encode it as sRGB, giving different pixels than torchvision sees).
    if (bit_depth == 16) png_set_strip_16(png);
    if (color_type & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int channels = png_get_channels(png, info);
    size_t row_bytes = png_get_rowbytes(png, info);
    if (!check_size(width, height, message, message_size)) {
        png_destroy_read_struct(&png, &info, NULL);
        return 1;
    }
    if ((channels != 1 && channels != 3) || row_bytes != (size_t)width * (size_t)channels) {
        char text[96];
        snprintf(text, sizeof text, "PNG: unexpected layout after conversion (%d channels, %zu bytes a row)",
                 channels, row_bytes);
        set_message(message, message_size, text);
        png_destroy_read_struct(&png, &info, NULL);
        return 1;
    }
    pixels = malloc(row_bytes * (size_t)height);
    rows = malloc(sizeof(png_bytep) * (size_t)height);
    if (pixels == NULL || rows == NULL) png_error(png, "out of memory");
    for (int y = 0; y < height; y++) rows[y] = pixels + (size_t)y * row_bytes;
    png_read_image(png, rows);
    // Not png_read_end: PIL does not require the chunks after the pixels either, and the pixels are complete here.
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    image->pixels = pixels;
    image->width = width;
    image->height = height;
    image->channels = channels;
    return 0;
}

// MARK: JPEG

typedef struct jpeg_state {
    struct jpeg_error_mgr base;
    jmp_buf jump;
    int ended_early;
    char message[JMSG_LENGTH_MAX + 16];
} jpeg_state;

static void jpeg_error_jump(j_common_ptr cinfo) {
    jpeg_state *state = (jpeg_state *)cinfo->err;
    char text[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, text);
    snprintf(state->message, sizeof state->message, "JPEG: %s", text);
    longjmp(state->jump, 1);
}

// Warnings (level −1) are mostly harmless ("extraneous bytes before marker"), but a premature end means libjpeg
// filled the rest of the image with grey: that is a truncated file, and PIL refuses it too.
static void jpeg_message(j_common_ptr cinfo, int level) {
    jpeg_state *state = (jpeg_state *)cinfo->err;
    if (level == -1 && cinfo->err->msg_code == JWRN_JPEG_EOF) state->ended_early = 1;
}

// libjpeg's default error_exit calls exit(); ours longjmps back into the function that called setjmp.
static struct jpeg_error_mgr *jpeg_errors(jpeg_state *state) {
    memset(state, 0, sizeof *state);
    struct jpeg_error_mgr *errors = jpeg_std_error(&state->base);
    state->base.error_exit = jpeg_error_jump;
    state->base.emit_message = jpeg_message;
    return errors;
}

// Pillow's CMYK → RGB for a JPEG it opened as "CMYK;I" (it assumes Adobe's inverted storage for every CMYK JPEG):
// with c = 255 − stored c and k = 255 − stored k, r = (255 − k) − round(c · (255 − k) / 255), the rounding of its
// MULDIV255. libjpeg has already turned YCCK into the stored CMYK.
static void cmyk_row_to_rgb(const unsigned char *cmyk, unsigned char *rgb, int width) {
    for (int x = 0; x < width; x++) {
        int keep = cmyk[4 * x + 3];  // 255 − k
        for (int channel = 0; channel < 3; channel++) {
            int ink = 255 - cmyk[4 * x + channel];
            int product = ink * keep + 128;
            int value = keep - (((product >> 8) + product) >> 8);
            rgb[3 * x + channel] = (unsigned char)(value < 0 ? 0 : value);
        }
    }
}

int vf_decode_jpeg_scaled(const unsigned char *bytes, size_t size, int scale_denom, vf_image *image, char *message,
                          size_t message_size) {
    if (size < 3 || bytes[0] != 0xFF || bytes[1] != 0xD8) {
        set_message(message, message_size, "JPEG: not a JPEG file (SOI marker missing)");
        return 1;
    }
    if (scale_denom != 1 && scale_denom != 2 && scale_denom != 4 && scale_denom != 8) {
        set_message(message, message_size, "JPEG: scale must be 1/1, 1/2, 1/4 or 1/8");
        return 1;
    }
    struct jpeg_decompress_struct cinfo;
    jpeg_state state;
    cinfo.err = jpeg_errors(&state);
    unsigned char *volatile pixels = NULL;
    unsigned char *volatile cmyk_row = NULL;
    if (setjmp(state.jump)) {
        set_message(message, message_size, state.message);
        free(pixels);
        free(cmyk_row);
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, bytes, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    // Four components are CMYK or YCCK (a print workflow, a scanner): libjpeg gives the stored CMYK, converted here.
    int is_cmyk = cinfo.num_components == 4;
    cinfo.out_color_space = cinfo.num_components == 1 ? JCS_GRAYSCALE : is_cmyk ? JCS_CMYK : JCS_RGB;
    cinfo.scale_num = 1;
    cinfo.scale_denom = (unsigned int)scale_denom;
    if (!check_size((int)cinfo.image_width, (int)cinfo.image_height, message, message_size)) {
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    jpeg_start_decompress(&cinfo);
    int width = (int)cinfo.output_width;
    int height = (int)cinfo.output_height;
    int channels = is_cmyk ? 3 : cinfo.output_components;
    size_t row_bytes = (size_t)width * (size_t)channels;
    pixels = malloc(row_bytes * (size_t)height);
    if (pixels == NULL) ERREXIT(&cinfo, JERR_OUT_OF_MEMORY);
    if (is_cmyk) {
        cmyk_row = malloc((size_t)width * 4);
        if (cmyk_row == NULL) ERREXIT(&cinfo, JERR_OUT_OF_MEMORY);
    }
    while (cinfo.output_scanline < cinfo.output_height && !state.ended_early) {
        unsigned char *target = pixels + (size_t)cinfo.output_scanline * row_bytes;
        JSAMPROW row = is_cmyk ? cmyk_row : target;
        if (jpeg_read_scanlines(&cinfo, &row, 1) == 1 && is_cmyk) cmyk_row_to_rgb(cmyk_row, target, width);
    }
    free(cmyk_row);
    cmyk_row = NULL;
    if (state.ended_early) {
        set_message(message, message_size, "JPEG: truncated file (premature end of data)");
        free(pixels);
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    image->pixels = pixels;
    image->width = width;
    image->height = height;
    image->channels = channels;
    return 0;
}

int vf_decode_jpeg(const unsigned char *bytes, size_t size, vf_image *image, char *message, size_t message_size) {
    return vf_decode_jpeg_scaled(bytes, size, 1, image, message, message_size);
}

// MARK: Probing (headers only)

static int probe_jpeg(const unsigned char *bytes, size_t size, vf_image_header *header, char *message,
                      size_t message_size) {
    struct jpeg_decompress_struct cinfo;
    jpeg_state state;
    cinfo.err = jpeg_errors(&state);
    if (setjmp(state.jump)) {
        int more = state.ended_early;
        set_message(message, message_size, more ? "JPEG: truncated file (ends inside its header)" : state.message);
        jpeg_destroy_decompress(&cinfo);
        return more ? 2 : 1;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, bytes, (unsigned long)size);
    int status = jpeg_read_header(&cinfo, TRUE);
    int more = state.ended_early;
    int width = (int)cinfo.image_width, height = (int)cinfo.image_height, components = cinfo.num_components;
    jpeg_destroy_decompress(&cinfo);
    if (more) {
        set_message(message, message_size, "JPEG: truncated file (ends inside its header)");
        return 2;
    }
    if (status != JPEG_HEADER_OK) {
        set_message(message, message_size, "JPEG: no image in the file (tables only)");
        return 1;
    }
    if (!check_size(width, height, message, message_size)) return 1;
    header->width = width;
    header->height = height;
    header->channels = components == 1 ? 1 : 3;
    return 0;
}

static int probe_png(const unsigned char *bytes, size_t size, vf_image_header *header, char *message,
                     size_t message_size) {
    png_state state = {bytes, size, 0, {0}};
    png_structp png = open_png(&state, message, message_size);
    if (png == NULL) return 1;
    png_infop info = png_create_info_struct(png);
    // Set before a read that runs out of the bytes given: the caller then tries again with the whole file.
    volatile int ran_out = 0;
    if (info == NULL || setjmp(png_jmpbuf(png))) {
        set_message(message, message_size, info == NULL ? "PNG: out of memory" : state.message);
        ran_out = info != NULL && strstr(state.message, "truncated file") != NULL;
        png_destroy_read_struct(&png, info == NULL ? NULL : &info, NULL);
        return ran_out ? 2 : 1;
    }
    png_set_user_limits(png, VF_MAX_SIDE, VF_MAX_SIDE);
    png_set_read_fn(png, &state, png_read_memory);
    png_read_info(png, info);
    int width = (int)png_get_image_width(png, info);
    int height = (int)png_get_image_height(png, info);
    int color_type = png_get_color_type(png, info);
    png_destroy_read_struct(&png, &info, NULL);
    if (!check_size(width, height, message, message_size)) return 1;
    header->width = width;
    header->height = height;
    header->channels = (color_type & PNG_COLOR_MASK_COLOR) ? 3 : 1;
    return 0;
}

int vf_probe_image(const unsigned char *bytes, size_t size, vf_image_header *header, char *message,
                   size_t message_size) {
    if (size >= 8 && png_sig_cmp(bytes, 0, 8) == 0) return probe_png(bytes, size, header, message, message_size);
    if (size >= 2 && bytes[0] == 0xFF && bytes[1] == 0xD8) return probe_jpeg(bytes, size, header, message, message_size);
    set_message(message, message_size, "neither a PNG nor a JPEG signature");
    return 1;
}

void vf_image_free(vf_image *image) {
    if (image == NULL) return;
    free(image->pixels);
    image->pixels = NULL;
}

// MARK: Encoding (test support)

int vf_encode_png(const char *path, const unsigned char *pixels, int width, int height, int channels,
                  char *message, size_t message_size) {
    png_image png;
    memset(&png, 0, sizeof png);
    png.version = PNG_IMAGE_VERSION;
    png.width = (png_uint_32)width;
    png.height = (png_uint_32)height;
    png.format = channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
    if (!png_image_write_to_file(&png, path, 0, pixels, 0, NULL)) {
        char text[320];
        snprintf(text, sizeof text, "PNG: %s", png.message);
        set_message(message, message_size, text);
        png_image_free(&png);
        return 1;
    }
    return 0;
}

int vf_encode_jpeg(const char *path, const unsigned char *pixels, int width, int height, int channels, int quality,
                   char *message, size_t message_size) {
    FILE *volatile file = fopen(path, "wb");
    if (file == NULL) {
        set_message(message, message_size, "JPEG: cannot create the file");
        return 1;
    }
    struct jpeg_compress_struct cinfo;
    jpeg_state state;
    cinfo.err = jpeg_errors(&state);
    if (setjmp(state.jump)) {
        set_message(message, message_size, state.message);
        jpeg_destroy_compress(&cinfo);
        fclose(file);
        return 1;
    }
    jpeg_create_compress(&cinfo);
    jpeg_stdio_dest(&cinfo, file);
    cinfo.image_width = (JDIMENSION)width;
    cinfo.image_height = (JDIMENSION)height;
    cinfo.input_components = channels;
    cinfo.in_color_space = channels == 3 ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    size_t row_bytes = (size_t)width * (size_t)channels;
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)cinfo.next_scanline * row_bytes);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    return fclose(file) == 0 ? 0 : (set_message(message, message_size, "JPEG: cannot write the file"), 1);
}
