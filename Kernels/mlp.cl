// mlp kernels (to be written)
