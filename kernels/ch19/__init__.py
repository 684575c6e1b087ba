"""Chapter 19: low-precision training and memory systems. One module per technique, each holding both arms;
``fp8`` holds the e4m3 rowwise quantization the FP8 cases share."""
