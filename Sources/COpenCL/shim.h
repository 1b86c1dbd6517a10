// OpenCL 1.2 host API (what every driver we target implements) plus CLBlast's C API.
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <clblast_c.h>
