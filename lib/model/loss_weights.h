// Per-token-id loss weights (materium): a [V] float vector w that weighs each target's
// cross-entropy, loss = sum_n w[t_n] ce_n / sum_n w[t_n] over the targets t_n != pad_id
// (the reference: tests/fixtures/reference.py weighted_loss). A model whose config has
// loss_weights = true carries its vector in the checkpoint as the tensor "loss_weights"
// [V] F32 (docs/checkpoint-format.md); lm-train --loss-weights FILE sets it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lm {

class MappedFile;
class SafeTensorsFile;

inline constexpr const char* kLossWeightsTensor = "loss_weights";

// Data error "<where>: ..." unless w has vocab_size entries, every one finite and >= 0, and
// at least one > 0.
void check_loss_weights(const std::vector<float>& w, int64_t vocab_size, const std::string& where);

// A weight file for a vocabulary of vocab_size ids ("-" = stdin): a JSON object
// {"token_id": weight, ...} (decimal ids in [0, vocab_size); ids not listed weigh 1), or a
// safetensors file holding exactly one F32, F16 or BF16 tensor of shape [vocab_size]. Checked as
// check_loss_weights; every error is one line naming the file (Io when unreadable, Data for
// the content).
std::vector<float> read_loss_weights(const std::string& path, int64_t vocab_size);
// The same for a file already in memory, named by its path().
std::vector<float> read_loss_weights(std::shared_ptr<MappedFile> file, int64_t vocab_size);

// The tensor "loss_weights" of a checkpoint (which must have it): shape [vocab_size], dtype
// F32, F16 or BF16, checked as check_loss_weights; Data errors start with `where`.
std::vector<float> loss_weights_from_checkpoint(const SafeTensorsFile& file, int64_t vocab_size,
                                                const std::string& where);

// Summary for reports: how many ids weigh other than 1, and the range of the weights.
struct LossWeightStats {
  int64_t non_unit = 0;  // ids whose weight != 1
  int64_t zero = 0;      // ids whose weight == 0
  double min = 0, max = 0;
};
LossWeightStats loss_weight_stats(const float* w, int64_t vocab_size);

}  // namespace lm
