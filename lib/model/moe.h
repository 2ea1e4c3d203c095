// Mixture-of-experts feed-forward (docs/llama4.md §5, §6): a router picks the top K of E
// bias-free SwiGLU experts for each token; Llama 4's sigmoid routing scales each selected
// expert's input by sigmoid(logit), Mixtral's softmax routing weights the experts' outputs by
// the softmax over the selected logits; an optional shared expert runs on every token. And
// the Switch-style load-balancing loss of one layer.
//
// The fast kernels are sparse: the (token, slot) assignments are grouped by expert and each
// expert runs one GEMM over its gathered rows (lm::sgemm through matmul_forward; with up to
// kMatmulFewRows rows, the few-rows kernel, so decode reads only the selected experts'
// weights). The *_ref twins compute every expert on every token, masked by the selection
// (the reference's formulation), in double: the tests hold the fast ones to them.
//
// Shape letters: N rows (B*T), C dim, E experts, K top_k, Fe expert width, A = N*K assignments.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "model/config.h"

namespace lm {

struct MoEShape {
  int64_t N = 0, C = 0, E = 0, K = 0, Fe = 0;
  MoERouting routing = MoERouting::Sigmoid;
  bool shared = false;  // a shared expert
};
MoEShape moe_shape(const ModelConfig& cfg, int64_t N);

// One MoE layer's parameters (or their gradients); shared_* null without a shared expert.
struct MoEParams {
  float* router = nullptr;     // [E, C]
  float* w1 = nullptr;         // [E, Fe, C]  gate
  float* w2 = nullptr;         // [E, C, Fe]  down
  float* w3 = nullptr;         // [E, Fe, C]  up
  float* shared_w1 = nullptr;  // [Fe, C]
  float* shared_w2 = nullptr;  // [C, Fe]
  float* shared_w3 = nullptr;  // [Fe, C]
};

// What the forward saves for the backward (views into an activation arena).
struct MoEActivations {
  float* logits = nullptr;     // [N, E]  router logits
  int32_t* expert = nullptr;   // [N, K]  selected experts, largest logit first (ties: lower index)
  float* gate = nullptr;       // [N, K]  sigmoid(logit), or the softmax over the K selected logits
  int32_t* order = nullptr;    // [A]     assignments a = n*K + k grouped by expert, tokens ascending
  int32_t* row = nullptr;      // [A]     the grouped row of assignment a (order's inverse)
  int32_t* offsets = nullptr;  // [E+1]   expert e owns grouped rows offsets[e] .. offsets[e+1]
  float* xs = nullptr;         // [A, C]  expert inputs by grouped row: gate * x (sigmoid) or x
  float* h1 = nullptr;         // [A, Fe] w1 xs
  float* h3 = nullptr;         // [A, Fe] w3 xs
  float* act = nullptr;        // [A, Fe] silu(h1) * h3
  float* ye = nullptr;         // [A, C]  expert outputs by grouped row
  float* sh1 = nullptr;        // [N, Fe] shared expert: w1 x
  float* sh3 = nullptr;        // [N, Fe] w3 x
  float* sact = nullptr;       // [N, Fe] silu(sh1) * sh3
};
// Backward scratch.
struct MoEScratch {
  float* dxs = nullptr;      // [A, C]  (first the experts' output gradients, then their input gradients)
  float* dact = nullptr;     // [A, Fe]
  float* dh1 = nullptr;      // [A, Fe]
  float* dh3 = nullptr;      // [A, Fe]
  float* dgate = nullptr;    // [A]
  float* dlogits = nullptr;  // [N, E]
};
// The buffers of each struct and their sizes in 4-byte elements (int32 or float), for an
// arena planner to hand out views.
std::vector<std::pair<void**, int64_t>> moe_buffers(MoEActivations& a, const MoEShape& s);
std::vector<std::pair<void**, int64_t>> moe_buffers(MoEScratch& g, const MoEShape& s);

// out [N, C] = MoE(inp [N, C]); fills `a`. The routing is a function of the logits alone.
void moe_forward(float* out, MoEActivations& a, const float* inp, const MoEParams& w, const MoEShape& s);

// The layer's load-balancing loss E * sum_e f_e P_e (f_e: expert e's share of the N*K
// assignments; P_e: the mean over the N tokens of softmax(all E logits)_e), from a forward's
// activations.
double moe_balance_loss(const MoEActivations& a, const MoEShape& s);

// Backward of moe_forward, accumulating: dinp [N, C] += and every gradient in `g` +=, from
// dout [N, C]. aux_scale != 0 adds aux_scale * d(moe_balance_loss)/d(logits) to the router's
// logit gradient (aux_scale = the loss's coefficient of this layer's balance loss, times the
// gradient scale). The selection is a constant (no gradient through the choice).
void moe_backward(float* dinp, const MoEParams& g, const float* dout, const float* inp, const MoEActivations& a,
                  const MoEParams& w, const MoEShape& s, float aux_scale, const MoEScratch& scratch);

// ---- reference twins: every expert on every token, masked by the selection, in double ----

// out [N, C]; logits [N, E] (may be null).
void moe_forward_ref(float* out, float* logits, const float* inp, const MoEParams& w, const MoEShape& s);
// The balance loss from logits alone (selection recomputed).
double moe_balance_loss_ref(const float* logits, const MoEShape& s);
// dinp, g += as moe_backward (no scratch; recomputes the forward).
void moe_backward_ref(float* dinp, const MoEParams& g, const float* dout, const float* inp, const MoEParams& w,
                      const MoEShape& s, float aux_scale);

}  // namespace lm
