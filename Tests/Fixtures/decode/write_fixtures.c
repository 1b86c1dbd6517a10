// Writes the decoder fixtures Pillow cannot write: a CMYK or YCCK JPEG (libjpeg adds the Adobe marker) and a
// 16-bit RGB PNG, from deterministic patterns. Usage: write_fixtures cmyk|ycck|rgb16 WIDTH HEIGHT OUT
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>
#include <png.h>

// 16-bit samples whose low bytes vary, so a decoder that rounds instead of keeping the high byte shows.
static int write_rgb16(int width, int height, FILE *file) {
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (png == NULL || info == NULL || setjmp(png_jmpbuf(png))) return 1;
    png_init_io(png, file);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 16, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    unsigned char *row = malloc((size_t)width * 6);
    for (int y = 0; y < height; y++) {
        for (int x = 0; x < width; x++) {
            for (int channel = 0; channel < 3; channel++) {
                unsigned sample = (unsigned)((x * 4999 + y * 1237 + channel * 20011) % 65536);
                row[6 * x + 2 * channel] = (unsigned char)(sample >> 8);
                row[6 * x + 2 * channel + 1] = (unsigned char)(sample & 0xFF);
            }
        }
        png_write_row(png, row);
    }
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(row);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s cmyk|ycck|rgb16 WIDTH HEIGHT OUT\n", argv[0]);
        return 2;
    }
    int ycck = strcmp(argv[1], "ycck") == 0;
    int width = atoi(argv[2]), height = atoi(argv[3]);
    FILE *file = fopen(argv[4], "wb");
    if (file == NULL || width < 1 || height < 1) return 1;
    if (strcmp(argv[1], "rgb16") == 0) return write_rgb16(width, height, file) || fclose(file) != 0;
    struct jpeg_compress_struct cinfo;
    struct jpeg_error_mgr errors;
    cinfo.err = jpeg_std_error(&errors);
    jpeg_create_compress(&cinfo);
    jpeg_stdio_dest(&cinfo, file);
    cinfo.image_width = (JDIMENSION)width;
    cinfo.image_height = (JDIMENSION)height;
    cinfo.input_components = 4;
    cinfo.in_color_space = JCS_CMYK;
    jpeg_set_defaults(&cinfo);
    jpeg_set_colorspace(&cinfo, ycck ? JCS_YCCK : JCS_CMYK);
    jpeg_set_quality(&cinfo, 95, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    unsigned char *row = malloc((size_t)width * 4);
    // Smooth ramps on every ink (so lossy coding stays close) plus a few flat blocks of strong colour.
    while (cinfo.next_scanline < cinfo.image_height) {
        int y = (int)cinfo.next_scanline;
        for (int x = 0; x < width; x++) {
            int block = (x / 8 + y / 8) % 4;
            row[4 * x + 0] = (unsigned char)(255 * x / (width - 1 > 0 ? width - 1 : 1));
            row[4 * x + 1] = (unsigned char)(255 * y / (height - 1 > 0 ? height - 1 : 1));
            row[4 * x + 2] = (unsigned char)(block == 0 ? 40 : block == 1 ? 220 : 128);
            row[4 * x + 3] = (unsigned char)(block == 3 ? 60 : 255 - (x + y) % 64);
        }
        JSAMPROW rows[1] = {row};
        jpeg_write_scanlines(&cinfo, rows, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    free(row);
    return fclose(file) == 0 ? 0 : 1;
}
