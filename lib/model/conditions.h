// materium's conditions (docs/materium.md): the values of one batch, carried beside its tokens,
// and the condition prologue of the forward pass, forward and backward side by side: the K
// condition positions of every row (linear, embedding and formula projections, the mask
// embedding of a null value) and the type embeddings added to every position.
// Shape letters: B batch, T tokens, K condition positions, S = K + T positions per row, C dim.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "model/config.h"

namespace lm {

struct ParameterTensors;

// The condition values of a batch of B rows: per configured condition (config order) either
// present, with a value or a null for every row, or dropped for the whole batch (its positions
// do not exist; the others keep their type rows). A new batch has every condition present and
// every row null; the setters fill it (what a conditions-file reader does record by record).
// Values are checked when set: a Data error names the condition and the row.
class ConditionBatch {
 public:
  // One condition's values. Rows that are null hold 0 / (-1, 0) slots.
  struct Values {
    bool present = true;
    std::vector<float> linear;     // linear    [B, input_dim]
    std::vector<int32_t> classes;  // embedding [B]
    std::vector<int32_t> formula;  // formula   [B, positions(), 2] (element token id, count); unused (-1, 0)
    std::vector<uint8_t> null;     // [B] 1: the record's value is unknown (the mask embedding)
  };

  ConditionBatch() = default;
  ConditionBatch(const ModelConfig& cfg, int64_t B);

  int64_t batch() const { return B_; }
  int64_t vocab_size() const { return V_; }
  const std::vector<ConditionConfig>& conditions() const { return conds_; }
  // The index of a condition by name; -1 when the model has none of that name.
  int64_t find(const std::string& name) const;

  // Condition i of row b: input_dim finite floats (linear); a class 0 <= k < input_dim
  // (embedding); 1..positions() (element token id, count) pairs with ids in [0, vocab_size),
  // distinct, and counts in 1..input_dim (formula, kept in the given order); or null.
  void set_linear(size_t i, int64_t b, const float* x);
  void set_class(size_t i, int64_t b, int64_t k);
  void set_formula(size_t i, int64_t b, const std::vector<std::pair<int64_t, int64_t>>& pairs);
  void set_null(size_t i, int64_t b);
  // A batch of rows.size() rows: row j is row rows[j] of this one (presence as here).
  ConditionBatch gather(const std::vector<int64_t>& rows) const;
  // Condition i has no positions in this batch (classifier-free training, unconditional use).
  void drop(size_t i);

  const Values& values(size_t i) const { return values_.at(i); }
  // K: the condition positions of this batch (sum of positions() over the present conditions).
  int64_t positions() const;
  // A Usage error unless the batch was made for `cfg`'s conditions and vocabulary, with B rows.
  void check_fits(const ModelConfig& cfg, int64_t B) const;

 private:
  const ConditionConfig& expect(size_t i, int64_t b, ProjLayerType type) const;

  int64_t B_ = 0, V_ = 0;
  std::vector<ConditionConfig> conds_;
  std::vector<Values> values_;
};

// Type ids [S] of a row of K condition positions and T tokens: i + 1 at the positions of
// condition i (present ones, config order), 0 at the tokens. The same for every row.
std::vector<int32_t> position_types(const ModelConfig& cfg, const ConditionBatch* cb, int64_t T);

// What conditions_forward saves for conditions_backward (the formula MLPs' activations).
struct ConditionActivations {
  struct Formula {
    std::vector<int64_t> rows;     // [M] b * S + k of each used slot (k < K)
    std::vector<int32_t> element;  // [M]
    std::vector<int32_t> count;    // [M]
    std::vector<float> x;          // [M, C]   tok_embeddings[element] + count_emb[count]
    std::vector<float> h;          // [M, 2C]  combined_emb.0 output (GELU input)
    std::vector<float> g;          // [M, 2C]  GELU output
  };
  std::vector<Formula> formula;  // [N conditions]; empty entries for the other types
};

// Writes the condition positions of every row into x [B, S, C]: rows b*S + k, k < K (the token
// rows are left alone), without the type embeddings. Saves what the backward pass needs.
void conditions_forward(float* x, ConditionActivations& saved, const ConditionBatch& cb, const ModelConfig& cfg,
                        const ParameterTensors& w, int64_t S);
// Backward, accumulating into grads: dx [B, S, C] at the condition rows (the formula's share of
// the token embedding goes into grads.tok_embeddings, with its tied classifier).
void conditions_backward(const ParameterTensors& grads, const float* dx, const ConditionActivations& saved,
                         const ConditionBatch& cb, const ModelConfig& cfg, const ParameterTensors& w, int64_t S);

// x [B, S, C] += type_emb [N + 1, C] rows of types [S]; backward: dtype_emb += the rows of dx.
void type_embedding_forward(float* x, const float* type_emb, const int32_t* types, int64_t B, int64_t S, int64_t C);
void type_embedding_backward(float* dtype_emb, const float* dx, const int32_t* types, int64_t B, int64_t S, int64_t C);

}  // namespace lm
