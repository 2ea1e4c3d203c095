// Scaled dot-product attention over heads, GQA-aware (query head h reads kv head
// h / (NH / NKV), Meta's repeat_kv), with causal and document masks expressed as one
// contiguous key span per query. Keys and values live in "slots": the T new tokens
// occupy slots P..P+T-1 after P earlier ones (a KV cache), or P = 0 for a plain forward.
// Shape letters: B batch, T new tokens, P past slots, S slot capacity per batch row
// (S >= P + T), NH / NKV query / kv heads, HS head size.
//
// The spans are the whole mask: no [T, T] mask exists anywhere. The kernels run each run of
// consecutive queries that share a span start (a chunk, a document, or the whole row) over
// its own key window, so a chunked layer's work and memory traffic grow with T * chunk, not T^2.
#pragma once

#include <cstdint>
#include <vector>

#include "core/dtype.h"

namespace lm {

// The inclusive key spans [lo, hi] (absolute slots) of each query: lo, hi [B, T].
// causal: hi = the query's own slot; else the last slot (P + T - 1). doc_mask: keys only
// within the query's document, where a document ends at and includes an eos_id token
// (doc_mask_boundary "end"), or, with eos_starts_document ("start", xlstm-jax), begins at
// one (segment ids = cumsum(tokens == eos)). doc_start [B] (may be null = 0) is the slot
// where row b's current document began; it is read and advanced past the EOS tokens in
// `tokens` [B, T], so a cache carries it between calls.
void attention_spans(int64_t* lo, int64_t* hi, const int32_t* tokens, int64_t B, int64_t T, int64_t P, bool causal,
                     bool doc_mask, int64_t eos_id, int64_t* doc_start, bool eos_starts_document = false);
// Chunked local attention (docs/llama4.md §3): narrows causal spans lo [B, T] in place to each
// query's chunk of `chunk` slots, lo = max(lo, s - s mod chunk) for the query at slot s = P + t.
// Chunks follow slots (places in the row), not position ids; hi (the query's own slot) is
// already inside the chunk.
void narrow_spans_to_chunks(int64_t* lo, int64_t B, int64_t T, int64_t P, int64_t chunk);

// Attention temperature tuning (docs/llama4.md §4), the query scale of NoPE layers:
// scale[n] = log(floor((pos[n] + 1) / floor_scale) + 1) * attn_scale + 1, computed in double.
void temperature_scales(float* scale, const int64_t* pos, int64_t N, double floor_scale, double attn_scale);
// out [N, D] = inp [N, D] with row n times scale[n] (out may equal inp).
void temperature_forward(float* out, const float* inp, const float* scale, int64_t N, int64_t D);
// Its backward (the scale is a constant of the input): dinp [N, D] += dout row n times scale[n].
void temperature_backward(float* dinp, const float* dout, const float* scale, int64_t N, int64_t D);

// out [B, T, NH*HS] = softmax(q k^T / sqrt(HS), over each query's span) v.
// att [B, NH, T, P+T]: the probabilities (0 outside the span), saved for backward; may be null.
// q [B, T, NH*HS]; k, v [B, S, NKV*HS]; lo, hi [B, T]. Per (b, h): two lm::sgemm calls.
// dropout > 0 (training; needs att): the probabilities multiplied by dropout_scale(seed, i)
// (dropout.h, i the element's index in att) weight v; att keeps them before dropout.
// v_ld > 0: v's slots at a stride of v_ld floats (v read in place from a fused [N, v_ld] q/k/v
// projection); 0: NKV*HS.
void attention_forward(float* out, float* att, const float* q, const float* k, const float* v, const int64_t* lo,
                       const int64_t* hi, int64_t B, int64_t T, int64_t P, int64_t S, int64_t NH, int64_t NKV,
                       int64_t HS, float dropout = 0, uint64_t seed = 0, int64_t v_ld = 0);
// A KV cache's keys and values, k and v [B, S, NKV*HS] each, of type dtype: F32, or BF16 or
// F16 (widened to f32 as they are read; KVCache).
struct CachedKV {
  const void* k = nullptr;
  const void* v = nullptr;
  DType dtype = DType::F32;
};
// One query (decode, T = 1) of row b, heads [h0, h1) only: out [B, NH*HS] from q [B, NH*HS]
// and the cache's keys and values over the slots [k0, k1]. What attention_forward does for
// T = 1 without att, split so that a caller can run head groups on their own threads; a
// bf16 or f16 cache gives the numbers of an f32 one holding the widened values, bit for bit.
// scratch: reused between calls.
void attention_one_query_heads(float* out, const float* q, const CachedKV& kv, int64_t b, int64_t k0, int64_t k1,
                               int64_t S, int64_t NH, int64_t NKV, int64_t HS, int64_t h0, int64_t h1,
                               std::vector<float>& scratch);
// One query per row over the cache (decode): out [B, NH*HS] from q [B, NH*HS], row b over the
// slots [lo[b], hi[b]]; attention_one_query_heads for every (row, head), on the threads.
void attention_decode(float* out, const float* q, const CachedKV& kv, const int64_t* lo, const int64_t* hi,
                      int64_t B, int64_t S, int64_t NH, int64_t NKV, int64_t HS);
// The same with plain loops and double accumulation: the reference the fast one is held to.
void attention_forward_ref(float* out, float* att, const float* q, const float* k, const float* v,
                           const int64_t* lo, const int64_t* hi, int64_t B, int64_t T, int64_t P, int64_t S,
                           int64_t NH, int64_t NKV, int64_t HS);

// Backward of attention_forward without a cache (P = 0, S = T), accumulating:
// dq [B, T, NH*HS], dk, dv [B, T, NKV*HS] += gradients given dout [B, T, NH*HS], the forward's
// q, k, v, its probabilities att [B, NH, T, T] and spans, and the same dropout and seed.
// Parallel over (b, kv head), so GQA heads sharing a kv head never race; per query head and
// query block four lm::sgemm calls over the block's key window. With add_to_grads false, dq,
// dk and dv are written instead (each (b, kv head) unit zeroes its own slices first: no
// zeroing pass, and no parallel region of its own, before the call). v_ld > 0: the rows of v
// and of dv at a stride of v_ld floats (the fused q/k/v projection and its gradient).
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* att, const int64_t* lo, const int64_t* hi, int64_t B, int64_t T,
                        int64_t NH, int64_t NKV, int64_t HS, float dropout = 0, uint64_t seed = 0,
                        bool add_to_grads = true, int64_t v_ld = 0);
// The same with plain loops and double accumulation.
void attention_backward_ref(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                            const float* v, const float* att, const int64_t* lo, const int64_t* hi, int64_t B,
                            int64_t T, int64_t NH, int64_t NKV, int64_t HS, float dropout = 0, uint64_t seed = 0);

}  // namespace lm
