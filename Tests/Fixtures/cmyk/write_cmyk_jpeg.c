// Writes a CMYK or YCCK JPEG (libjpeg adds the Adobe marker) from a deterministic pattern, for the decoder's
// CMYK/YCCK fixtures. Usage: write_cmyk_jpeg cmyk|ycck WIDTH HEIGHT OUT.jpg
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s cmyk|ycck WIDTH HEIGHT OUT.jpg\n", argv[0]);
        return 2;
    }
    int ycck = strcmp(argv[1], "ycck") == 0;
    int width = atoi(argv[2]), height = atoi(argv[3]);
    FILE *file = fopen(argv[4], "wb");
    if (file == NULL || width < 1 || height < 1) return 1;
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
