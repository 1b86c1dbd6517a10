// optimizer kernels (to be written)
