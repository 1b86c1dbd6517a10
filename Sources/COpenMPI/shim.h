// Open MPI's C API; only CMPI's shim includes it (MPI_COMM_WORLD and friends are macros Swift cannot import).
#include <mpi.h>
