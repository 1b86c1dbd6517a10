// layernorm kernels (to be written)
