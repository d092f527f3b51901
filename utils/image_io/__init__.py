"""Image files: reading any format as a viewer shows it (read), writing row band by row band
(write; PNG compressed in parallel threads)."""
from .read import ImageData, image_size, is_srgb, read_image, resize_alpha
from .write import check_output, output_bits, output_format, write_bands, write_image
