// tensor kernels (to be written)
