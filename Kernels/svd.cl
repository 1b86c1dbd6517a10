// svd kernels (to be written)
