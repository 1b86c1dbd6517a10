#include "CMPI.h"

#ifdef VITFORGE_MPI
#include <limits.h>
#include <mpi.h>
#include <stdio.h>

int vf_mpi_built(void) { return 1; }

int vf_mpi_init(void) {
    int provided = 0;
    int status = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    if (status != MPI_SUCCESS) return status;
    // Errors come back as codes (turned into Swift errors) instead of aborting inside the library.
    return MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}

int vf_mpi_active(void) {
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    return initialized && !finalized;
}

int vf_mpi_rank(int *rank) { return MPI_Comm_rank(MPI_COMM_WORLD, rank); }
int vf_mpi_size(int *size) { return MPI_Comm_size(MPI_COMM_WORLD, size); }

// MPI counts are ints: a buffer longer than INT_MAX elements goes in pieces.
static int allreduce(void *values, long count, MPI_Datatype type, size_t elementSize) {
    char *bytes = values;
    while (count > 0) {
        int n = count > INT_MAX ? INT_MAX : (int)count;
        int status = MPI_Allreduce(MPI_IN_PLACE, bytes, n, type, MPI_SUM, MPI_COMM_WORLD);
        if (status != MPI_SUCCESS) return status;
        bytes += (size_t)n * elementSize;
        count -= n;
    }
    return MPI_SUCCESS;
}

int vf_mpi_allreduce_sum_float(float *values, long count) {
    return allreduce(values, count, MPI_FLOAT, sizeof(float));
}

int vf_mpi_allreduce_sum_double(double *values, long count) {
    return allreduce(values, count, MPI_DOUBLE, sizeof(double));
}

int vf_mpi_broadcast_float(float *values, long count, int root) {
    while (count > 0) {
        int n = count > INT_MAX ? INT_MAX : (int)count;
        int status = MPI_Bcast(values, n, MPI_FLOAT, root, MPI_COMM_WORLD);
        if (status != MPI_SUCCESS) return status;
        values += n;
        count -= n;
    }
    return MPI_SUCCESS;
}

int vf_mpi_barrier(void) { return MPI_Barrier(MPI_COMM_WORLD); }
int vf_mpi_finalize(void) { return MPI_Finalize(); }
void vf_mpi_abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); }

void vf_mpi_error_string(int code, char *text, int capacity) {
    char message[MPI_MAX_ERROR_STRING];
    int length = 0;
    if (MPI_Error_string(code, message, &length) != MPI_SUCCESS) length = 0;
    message[length < MPI_MAX_ERROR_STRING ? length : MPI_MAX_ERROR_STRING - 1] = 0;
    snprintf(text, (size_t)capacity, "%s", length > 0 ? message : "unknown MPI error");
}

#else
#include <stdio.h>

int vf_mpi_built(void) { return 0; }
int vf_mpi_init(void) { return VF_MPI_NOT_BUILT; }
int vf_mpi_active(void) { return 0; }
int vf_mpi_rank(int *rank) { *rank = 0; return VF_MPI_NOT_BUILT; }
int vf_mpi_size(int *size) { *size = 1; return VF_MPI_NOT_BUILT; }
int vf_mpi_allreduce_sum_float(float *values, long count) { (void)values; (void)count; return VF_MPI_NOT_BUILT; }
int vf_mpi_allreduce_sum_double(double *values, long count) { (void)values; (void)count; return VF_MPI_NOT_BUILT; }
int vf_mpi_broadcast_float(float *values, long count, int root) {
    (void)values; (void)count; (void)root;
    return VF_MPI_NOT_BUILT;
}
int vf_mpi_barrier(void) { return VF_MPI_NOT_BUILT; }
int vf_mpi_finalize(void) { return VF_MPI_NOT_BUILT; }
void vf_mpi_abort(int code) { (void)code; }
void vf_mpi_error_string(int code, char *text, int capacity) {
    snprintf(text, (size_t)capacity, "%s", code == VF_MPI_NOT_BUILT ? "built without the MPI package trait"
                                                                     : "unknown MPI error");
}
#endif
