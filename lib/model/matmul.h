// Linear layers: out = inp @ weight^T + bias, weights in PyTorch orientation [out, in].
// Shape letters: N rows (B*T), IC input features, OC output features.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <vector>

#include "core/tensor.h"

namespace lm {

struct WeightView;
enum class WeightType : uint8_t;  // core/rows.h

// Up to this many rows, matmul_forward streams the weights once (decode: the row kernel
// matmul_rows of core/rows.h, blocked for many rows, rows shared out by parallel_chunks);
// above, it calls lm::sgemm. Not while bf16 matmuls are active (below): see few_rows_path.
inline constexpr int64_t kMatmulFewRows = 3;
// The same over a KV cache (PromptRowsScope: a prompt's prefill, whose rows need not be the
// full forward's bit for bit). The crossover, prompt processing on stories110M (lm-bench
// forward --prompt-tokens P, 2 threads, 2026-12-03): the row kernel 1.3x sgemm's tokens/s at
// P = 8, 1.6x at 16, 1.1x at 32, 0.9x at 64. Training and evaluation keep kMatmulFewRows (and
// the fused projections' GEMMs).
inline constexpr int64_t kPromptFewRows = 16;
// The same for f32 rows with panels (core/panels.h), whose tiles take 16 rows at a time:
// stories110M prompts (2 threads, 2026-12-04) 1.4-2.2x the GEMM's speed at 24-32 tokens,
// 1.25x at 64, even at 128.
inline constexpr int64_t kPanelPromptRows = 128;
// The same for the block types' rows (q8_0, q4_0, q4_K, q6_K) with panels: any number (their
// rows alone: q8_0 64, the others 16 in a PromptRowsScope, 3 without). On panels stories110M
// prompts ran 2-7x the GEMM on the decoded rows at 16-512 tokens (2 threads, 2026-12-04:
// README, "Batched generation").
inline constexpr int64_t kIntPanelRows = int64_t{1} << 40;
// The same for weights stored in another type, whose f32 copies the GEMM needs decoded per
// call (a pass writing two to four times the weights' bytes) while the row kernel reads them as
// stored: bf16 (on the bf16 dot product) 2.3x sgemm at P = 8, 1.6x at 64, 1.3x at 128 and 256;
// f16 7.6x at 8, 1.3x at 128, 1.1x at 256; q8_0 (register tiles) 2.7x at 8, 1.2x at 64, 0.9x at
// 128; other types (q4_0, q4_K, q6_K: one row-dot per element) as f32 (kMatmulFewRows, or
// kPromptFewRows in a PromptRowsScope).
int64_t few_rows_limit(WeightType type);
// Whether a product of N rows takes the few-rows loop: N <= kMatmulFewRows (kPromptFewRows in
// a PromptRowsScope; few_rows_limit for weights of `type`; any N inside a RowKernelScope), in
// f32 compute.
bool few_rows_path(int64_t N);
bool few_rows_path(int64_t N, WeightType type);
// For a view: as for its type, and f32 panels take up to kPanelPromptRows in a PromptRowsScope,
// the block types' panels any number (kIntPanelRows).
bool few_rows_path(int64_t N, const WeightView& w);

// While one lives on the calling thread, matmul_forward and matmul_forward_parts take the
// few-rows loop for any number of rows (f32 compute): batched decode of independent
// sequences, where each row's outputs must be those of a one-row product bit for bit (the
// row kernel computes every output element alone; the GEMM's blocking does not) and the
// weights are still read once for all rows. Nests.
class RowKernelScope {
 public:
  RowKernelScope();
  ~RowKernelScope();
  RowKernelScope(const RowKernelScope&) = delete;
  RowKernelScope& operator=(const RowKernelScope&) = delete;

 private:
  bool prev_;
};
// Whether a RowKernelScope is active on the calling thread.
bool row_kernel_forced();
// While one lives on the calling thread, f32 products of up to kPromptFewRows rows take the
// few-rows loop (Transformer's forward over a KV cache). Nests.
class PromptRowsScope {
 public:
  PromptRowsScope();
  ~PromptRowsScope();
  PromptRowsScope(const PromptRowsScope&) = delete;
  PromptRowsScope& operator=(const PromptRowsScope&) = delete;

 private:
  bool prev_;
};

// Weight rows per parallel_chunks chunk in the few-rows kernels: about 128 KiB of weights,
// long enough for the hardware prefetcher to stream, short enough to even out the threads'
// finishing times.
int64_t few_rows_chunk(int64_t IC);
// For a view: with panels at least kPanelChunkRows, so that one input's pass keeps 8 panels'
// chains in flight (a piece of 1-2 panels ran one chain at a time, bound by the FMA's latency).
inline constexpr int64_t kPanelChunkRows = 8 * 16;
int64_t few_rows_chunk(const WeightView& w);
// Rows per group of a piece for N input rows (parallel_chunks_grouped): the blocked f32
// kernel's 4-row register tile for N >= kBlockedMinRows, else 1; for a view with panels a
// panel's 16 rows (a piece cut inside a panel would compute it twice).
int64_t row_group(int64_t N);
int64_t row_group(int64_t N, const WeightView& w);

// out [N, OC] = inp [N, IC] @ weight [OC, IC]^T + bias [OC] (bias may be null).
void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int64_t N, int64_t IC,
                    int64_t OC);
// One input through several linears (q, k, v; w1, w3): out_i [N, OC_i] = inp @ weight_i^T + bias_i.
// With few rows (decode) all of them run in one parallel region, one barrier instead of one
// each: at batch 1 the barriers, not the arithmetic, are what keeps decode below the memory
// bound. Results are those of matmul_forward, bit for bit.
struct MatmulPart {
  float* out;
  const float* weight;
  const float* bias;
  int64_t OC;
};
void matmul_forward_parts(std::initializer_list<MatmulPart> parts, const float* inp, int64_t N, int64_t IC);
// The same over weights of any type (core/rows.h; OC = w.rows, IC = w.cols): few rows run the
// row kernel on them as stored; more rows decode f32 copies of the weights into a scratch
// buffer and call lm::sgemm (f32 views go to sgemm directly).
void matmul_forward(float* out, const float* inp, const WeightView& w, const float* bias, int64_t N);
struct MatmulViewPart {
  float* out;
  const WeightView* weight;
  const float* bias;
};
void matmul_forward_parts(std::initializer_list<MatmulViewPart> parts, const float* inp, int64_t N);
// The same with plain loops (double accumulation): the reference the fast one is held to.
void matmul_forward_ref(float* out, const float* inp, const float* weight, const float* bias, int64_t N, int64_t IC,
                        int64_t OC);

// Backward of matmul_forward, accumulating: dinp [N, IC] += dout [N, OC] @ weight [OC, IC],
// dweight [OC, IC] += dout^T @ inp [N, IC], dbias [OC] += column sums of dout. dinp and dbias
// may be null (skipped). Two lm::sgemm calls. With add_to_dinp false, dinp is written instead
// (the GEMM's beta = 0): the training step's first product into a buffer needs no zeroing pass.
void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int64_t N, int64_t IC, int64_t OC, bool add_to_dinp = true);
// The same with plain loops (double accumulation).
void matmul_backward_ref(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                         const float* weight, int64_t N, int64_t IC, int64_t OC);

// ---- bf16 compute (Transformer::set_compute_dtype) ----
//
// While a Bf16Matmuls is active on the calling thread (Bf16Matmuls::Scope), matmul_forward,
// matmul_forward_parts (and swiglu_up_forward through it) and matmul_backward multiply bfloat16
// operands with f32 accumulation (lm::gemm_bf16), whatever the number of rows; bf16(x) is x
// rounded to nearest even:
//   forward   out   = bf16(inp) @ bf16(W)^T (+ bias in f32)
//   backward  dinp += bf16(dout) @ bf16(W),  dW += bf16(dout)^T @ bf16(inp),  dbias += sums of dout (f32)
// Activations (inp, dout) are rounded per call (once for all parts of matmul_forward_parts);
// a weight inside a registered tensor comes from its bf16 copy, made by refresh() (once per
// optimizer step, not per call); any other weight is rounded per call. The outputs and every
// accumulation stay f32. tests/fixtures/bf16_reference.py is the PyTorch twin.
class Bf16Matmuls {
 public:
  // Registers the n floats at w (a weight tensor); their copy is made by the next refresh().
  void add_weights(const float* w, int64_t n);
  // Forgets every registered tensor (the copies' memory is kept for the next refresh()).
  void clear_weights();
  // Rounds every registered tensor again: after the weights changed (an optimizer step).
  void refresh();
  // The bf16 copy of the registered weight element at w (any element of a tensor), or null.
  const uint16_t* find(const float* w) const;
  int64_t copy_bytes() const { return static_cast<int64_t>(copies_.nbytes()); }
  // Scratch for rounded activations: buffer `slot` (0..2) of at least n elements, kept and grown.
  uint16_t* scratch(int slot, int64_t n);

  // Makes `m` the calling thread's bf16 matmuls until destroyed (null: f32, the default); nests.
  class Scope {
   public:
    explicit Scope(Bf16Matmuls* m);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    Bf16Matmuls* prev_;
  };

 private:
  struct Entry {
    const float* w;
    int64_t n;
    int64_t at;  // offset of its copy in copies_
  };
  std::vector<Entry> entries_;  // sorted by address
  Tensor copies_;               // BF16, every registered tensor
  bool fresh_ = false;          // copies_ holds every registered tensor as it was at refresh()
  Tensor scratch_[3];
};

// The calling thread's active bf16 matmuls, or null (f32 compute).
Bf16Matmuls* active_bf16_matmuls();

}  // namespace lm
