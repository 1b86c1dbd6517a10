#ifndef VITFORGE_CMPI_H
#define VITFORGE_CMPI_H

// The few MPI calls a data-parallel run needs, with plain C types: MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM and
// MPI_IN_PLACE are macros (casts of library globals in Open MPI) that Swift cannot import. Every function returns 0
// on success, else MPI's error code; a build without the MPI package trait compiles these as stubs that fail with
// VF_MPI_NOT_BUILT, so every configuration compiles and links.

#define VF_MPI_NOT_BUILT (-1)

/// 1 when this binary was built with MPI, else 0.
int vf_mpi_built(void);
/// MPI_Init_thread with MPI_THREAD_FUNNELED (only the training thread calls MPI).
int vf_mpi_init(void);
/// 1 when MPI is initialised and not yet finalised.
int vf_mpi_active(void);
int vf_mpi_rank(int *rank);
int vf_mpi_size(int *size);
/// In-place element-wise sum over MPI_COMM_WORLD; counts beyond INT_MAX are split into several calls.
int vf_mpi_allreduce_sum_float(float *values, long count);
int vf_mpi_allreduce_sum_double(double *values, long count);
int vf_mpi_broadcast_float(float *values, long count, int root);
int vf_mpi_barrier(void);
int vf_mpi_finalize(void);
/// MPI_Abort on MPI_COMM_WORLD: ends every rank (one rank's error must not leave the others waiting forever).
void vf_mpi_abort(int code);
/// A one-line description of an MPI error code.
void vf_mpi_error_string(int code, char *text, int capacity);

#endif
