// Shared by CPU (.cpp) and CUDA (.cu) translation units: per-element math is written once
// as HOST_DEVICE_INLINE functions so the CPU tests vouch for the numbers the CUDA kernels compute.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define HOST_DEVICE_INLINE __host__ __device__ __forceinline__
#define HOST_DEVICE __host__ __device__
#else
#define HOST_DEVICE_INLINE inline
#define HOST_DEVICE
#endif
