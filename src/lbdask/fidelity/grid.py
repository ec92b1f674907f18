"""The grid the rate-distortion report (`lbdask.fidelity.rate_distortion`) sweeps by default.

A module of its own so that `lbdask fidelity`'s argument parser, built by every `lbdask`
command, reads these defaults without importing numpy, Pillow and the codecs that the
report itself needs (`lbdask ls` starts fast, issue 18).
"""

#: Refinement step counts and latent precisions reported.
DEFAULT_STEPS = (0, 10, 30, 100)
DEFAULT_BITS = (16, 8, 6)
#: Precision the report's one refinement run is quantisation-aware for.
REFINE_BITS = 8
#: PSNR floors (the migration's --min-psnr) at which lossy JPEG XL is searched and the chooser applied.
DEFAULT_FLOORS = (30.0, 38.0, 42.0)
#: `--lossy-fallback` values: the lossy formats searched per floor (`lbdask.image.kept.LOSSY_POLICIES` less "off").
LOSSY_FALLBACKS = ("jxl", "avif", "best")
