"""Chapter 20: end-to-end case studies, and the kernel generator (``kernelgen``) whose promoted kernels become the
optimized arms of ordinary cases."""
