"""Image codecs in the loop: real JPEG / WebP round trips (OpenCV) and, for SAIN, a differentiable JPEG."""
from src.codecs.real import FORMATS, bits_per_pixel, decode, encode, roundtrip, roundtrip_batch

__all__ = ['FORMATS', 'bits_per_pixel', 'decode', 'encode', 'roundtrip', 'roundtrip_batch']
