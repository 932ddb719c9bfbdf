"""MindSpore implementation of IRN (Invertible Rescaling Net, Xiao et al., ECCV 2020)."""
