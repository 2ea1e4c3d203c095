// What the CPU can run, read once from cpuid (and xgetbv: the OS must save the wider
// registers too). Kernels and the GEMM choose their path from this at run time, never from
// the compiler flags of the build or from a BLAS's own setting (OPENBLAS_CORETYPE).
#pragma once

#include <string>

namespace lm {

struct CpuFeatures {
  bool fma = false;
  bool avx2 = false;         // with the OS saving ymm state
  bool avx512f = false;      // with the OS saving zmm and opmask state
  bool avx512bw = false;
  bool avx512dq = false;
  bool avx512vl = false;
  bool avx512_vnni = false;
  bool avx512_bf16 = false;
};

const CpuFeatures& cpu_features();

// The vector ISAs lmkit has FMA code for: AVX2 + FMA (8 floats), AVX-512 F/BW/DQ/VL (16 floats).
enum class Isa { avx2, avx512 };

bool cpu_has(Isa isa);
const char* isa_name(Isa isa);  // "avx2", "avx512"
int isa_floats(Isa isa);        // floats per vector register: 8, 16

// The features above that the CPU has, space separated, e.g. "fma avx2 avx512f ... avx512_bf16".
std::string cpu_features_string();

}  // namespace lm
