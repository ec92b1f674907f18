"""Images as files: PNG parsing and writing (`pngio`), the exact samples of a source (`pngsamples`), and the kept and lossy copies (lossless and lossy JPEG XL) that stand in for a source (`kept`)."""
