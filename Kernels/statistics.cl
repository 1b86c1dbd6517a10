// statistics kernels (to be written)
