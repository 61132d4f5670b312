"""Files in and out: images, TIFF, videos, pictures. Imports `core` and `config`."""
