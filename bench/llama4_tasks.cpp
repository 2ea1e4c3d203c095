// llama4_tasks: synthetic tasks that only a Llama 4 attention feature solves (issue 13, "Proof"),
// trained for a few hundred steps with the library (Transformer::train_step + AdamW) and
// evaluated on fresh batches. Prints one line per run and a JSON summary.
//
//     build/bench/llama4_tasks [--steps N] [--threads N] [--seed S]
//
// 1. Chunked attention still solves a copy task within the chunk. Rows of 64 tokens are four
//    chunks of 16: [BOS, x1..x7, SEP, x1..x7]; the targets are the copied tokens (at SEP: x1, at
//    the i-th copy: x(i+1)); everything else is PAD (ignored). A 2-layer model whose every layer
//    is chunked (attn_chunk_size 16) learns it. Control: "cross-chunk copy", where each chunk
//    copies the first half of the chunk BEFORE it: the chunked model cannot see it and stays at
//    chance (1/29), while the same model with global attention learns it: the chunk mask is what
//    stops it, and the within-chunk copy is solved despite the mask.
// 2. Image features decide the next token. Rows of 16 tokens hold two image places (the
//    image_token_id); each place's feature [8] is its class's mean vector plus noise (8
//    classes); the target at the place is the class's token, every other target is PAD. The
//    evaluation features go through a --vision file (VisionFile, docs/llama4.md §8). Control:
//    the same model given another place's features predicts that place's class, not the row's.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <unistd.h>

#include "core/error.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "core/threads.h"
#include "io/safetensors.h"
#include "model/transformer.h"
#include "model/vision.h"
#include "train/optimizer.h"

namespace {

using lm::ModelConfig;
using lm::Rng;
using lm::Transformer;
using lm::VisionRow;

constexpr int32_t kPad = 0, kBos = 1, kSep = 2;

// One batch: tokens, targets [B, T] (PAD = ignored) and, for the vision task, per-row features.
struct Batch {
  int64_t B = 0, T = 0;
  std::vector<int32_t> tokens, targets;
  std::vector<float> features;    // [M, Dv] row-major over the image places
  std::vector<int64_t> feature0;  // [B] first feature of each row
  std::vector<int64_t> count;     // [B]
  std::vector<int32_t> classes;   // [M] the class each feature was drawn from
  std::vector<VisionRow> rows(int64_t Dv) const {
    std::vector<VisionRow> out;
    for (int64_t b = 0; b < static_cast<int64_t>(count.size()); ++b)
      out.push_back({features.data() + feature0[b] * Dv, count[b], nullptr});
    return out;
  }
};

// ---- task 1: copy within a chunk (or from the previous chunk) ----

constexpr int64_t kChunk = 16, kHalf = 7, kCopyT = 64, kCopyV = 32;  // content tokens 3..31

Batch copy_batch(Rng& rng, int64_t B, bool cross_chunk) {
  Batch x;
  x.B = B;
  x.T = kCopyT;
  x.tokens.assign(static_cast<size_t>(B * kCopyT), kPad);
  x.targets.assign(x.tokens.size(), kPad);
  for (int64_t b = 0; b < B; ++b) {
    int32_t* tok = x.tokens.data() + b * kCopyT;
    int32_t* tgt = x.targets.data() + b * kCopyT;
    std::vector<int32_t> prev(kHalf);
    for (int64_t c = 0; c < kCopyT / kChunk; ++c) {
      int32_t* t = tok + c * kChunk;
      std::vector<int32_t> own(kHalf);
      for (auto& v : own) v = 3 + static_cast<int32_t>(rng.below(kCopyV - 3));
      t[0] = kBos;
      for (int64_t i = 0; i < kHalf; ++i) t[1 + i] = own[i];
      t[1 + kHalf] = kSep;
      const std::vector<int32_t>& src = cross_chunk ? prev : own;
      for (int64_t i = 0; i < kHalf; ++i) t[2 + kHalf + i] = src[i];
      // Targets: the next copied token from SEP to the second-last copy (the first chunk of
      // the cross-chunk task has nothing to copy: no targets).
      if (!cross_chunk || c > 0)
        for (int64_t i = 0; i < kHalf; ++i) tgt[c * kChunk + 1 + kHalf + i] = src[i];
      prev = own;
    }
  }
  return x;
}

ModelConfig copy_config(int64_t chunk) {
  ModelConfig c;
  c.name = "copy";
  c.dim = 64;
  c.n_layers = 2;
  c.n_heads = 4;
  c.vocab_size = kCopyV;
  c.hidden_dim = 128;
  c.max_seq_len = kCopyT;
  c.bos_id = kBos;
  c.eos_id = -1;
  c.pad_id = kPad;
  c.attn_chunk_size = chunk;
  c.qk_norm = true;  // Llama 4's weightless QK-norm on the RoPE layers
  c.qk_norm_weight = false;
  return c;
}

// ---- task 2: image features decide the next token ----

constexpr int64_t kVisT = 16, kVisV = 32, kClasses = 8, kDv = 8, kPlaces = 2;
constexpr int32_t kImage = 2, kFirstClass = 3;  // class k is token 3 + k; other tokens 11..31

Batch vision_batch(Rng& rng, int64_t B, const std::vector<float>& means) {
  Batch x;
  x.B = B;
  x.T = kVisT;
  x.tokens.resize(static_cast<size_t>(B * kVisT));
  x.targets.assign(x.tokens.size(), kPad);
  for (int64_t b = 0; b < B; ++b) {
    int32_t* tok = x.tokens.data() + b * kVisT;
    for (int64_t t = 0; t < kVisT; ++t) tok[t] = 11 + static_cast<int32_t>(rng.below(kVisV - 11));
    tok[0] = kBos;
    // Two image places, apart, before the end.
    const int64_t p0 = 1 + static_cast<int64_t>(rng.below(kVisT / 2 - 2));
    const int64_t p1 = kVisT / 2 + static_cast<int64_t>(rng.below(kVisT / 2 - 2));
    x.feature0.push_back(static_cast<int64_t>(x.classes.size()));
    x.count.push_back(kPlaces);
    for (int64_t p : {p0, p1}) {
      const int32_t k = static_cast<int32_t>(rng.below(kClasses));
      tok[p] = kImage;
      x.targets[b * kVisT + p] = kFirstClass + k;
      x.classes.push_back(k);
      for (int64_t d = 0; d < kDv; ++d) x.features.push_back(means[k * kDv + d] + 0.5f * rng.normal());
    }
  }
  return x;
}

ModelConfig vision_config() {
  ModelConfig c;
  c.name = "vision";
  c.dim = 32;
  c.n_layers = 2;
  c.n_heads = 4;
  c.vocab_size = kVisV;
  c.hidden_dim = 64;
  c.max_seq_len = kVisT;
  c.bos_id = kBos;
  c.eos_id = -1;
  c.pad_id = kPad;
  c.vision_dim = kDv;
  c.image_token_id = kImage;
  return c;
}

// ---- training and evaluation ----

struct Run {
  double final_loss = 0;  // mean training loss of the last 20 steps
  double seconds = 0;
};

Run train(Transformer& model, int64_t steps, double lr, const std::function<Batch()>& next, bool vision) {
  const lm::ParameterLayout& layout = model.weights().layout();
  lm::train::AdamWConfig ac;
  ac.weight_decay = 0;
  lm::train::AdamW opt(layout, ac);
  lm::Tensor grads = lm::Tensor::zeros(lm::DType::F32, {layout.arena_floats()});
  const lm::ParameterTensors g = layout.bind(grads.data_mut<float>());
  Run r;
  const auto t0 = std::chrono::steady_clock::now();
  double tail = 0;
  int64_t tail_n = 0;
  for (int64_t step = 1; step <= steps; ++step) {
    const Batch x = next();
    std::memset(grads.data_mut<float>(), 0, grads.nbytes());
    const std::vector<VisionRow> rows = vision ? x.rows(kDv) : std::vector<VisionRow>{};
    lm::TrainStepOptions so;
    if (vision) so.vision = rows.data();
    const lm::TrainStepResult res = model.train_step(g, x.tokens.data(), nullptr, x.targets.data(), x.B, x.T, so);
    // Linear warmup over the first 20 steps, then constant.
    opt.step(model.weights().arena(), grads.data<float>(), lr * std::min(1.0, step / 20.0), step);
    if (step > steps - 20) tail += res.loss, ++tail_n;
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.final_loss = tail / static_cast<double>(std::max<int64_t>(tail_n, 1));
  return r;
}

// Share of the non-PAD targets whose argmax logit equals `want` (want [B, T]).
double accuracy(const float* logits, const std::vector<int32_t>& targets, const std::vector<int32_t>& want,
                int64_t V) {
  int64_t hit = 0, n = 0;
  for (size_t i = 0; i < targets.size(); ++i) {
    if (targets[i] == kPad) continue;
    const float* l = logits + static_cast<int64_t>(i) * V;
    hit += (std::max_element(l, l + V) - l) == want[i];
    ++n;
  }
  return n ? static_cast<double>(hit) / static_cast<double>(n) : 0.0;
}

double copy_accuracy(Transformer& model, bool cross_chunk, uint64_t seed) {
  Rng rng(seed);
  const Batch x = copy_batch(rng, 64, cross_chunk);
  return accuracy(model.forward(x.tokens.data(), nullptr, x.B, x.T), x.targets, x.targets, kCopyV);
}

}  // namespace

int main(int argc, char** argv) {
  int64_t steps = 300;
  int threads = 0;
  uint64_t seed = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--steps" && i + 1 < argc) steps = std::atoll(argv[++i]);
    else if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (a == "--seed" && i + 1 < argc) seed = std::strtoull(argv[++i], nullptr, 10);
    else {
      std::fprintf(stderr, "usage: llama4_tasks [--steps N] [--threads N] [--seed S]\n");
      return 2;
    }
  }
  try {
    lm::set_threads(threads);
    std::string json = "{\"steps\": " + std::to_string(steps) + ", \"runs\": [";
    auto report = [&](const char* name, const Run& r, const std::string& fields) {
      std::printf("%-44s loss %.3f, %s (%.1f s)\n", name, r.final_loss, fields.c_str(), r.seconds);
      std::fflush(stdout);
    };

    // 1. Copy within the chunk (chunked), copy from the previous chunk (chunked, then global).
    struct CopyRun {
      const char* name;
      int64_t chunk;
      bool cross;
    };
    bool first = true;
    for (const CopyRun& cr : {CopyRun{"copy within the chunk, chunked (16)", kChunk, false},
                              CopyRun{"copy from the previous chunk, chunked (16)", kChunk, true},
                              CopyRun{"copy from the previous chunk, global", 0, true}}) {
      Transformer model(lm::ModelWeights::random(copy_config(cr.chunk), seed));
      Rng rng(seed + 100);
      const Run r = train(model, steps, 3e-3, [&] { return copy_batch(rng, 16, cr.cross); }, false);
      const double acc = copy_accuracy(model, cr.cross, seed + 999);
      char buf[160];
      std::snprintf(buf, sizeof buf, "copy accuracy %.3f (chance %.3f)", acc, 1.0 / (kCopyV - 3));
      report(cr.name, r, buf);
      std::snprintf(buf, sizeof buf, "%s{\"task\": \"%s\", \"loss\": %.4f, \"accuracy\": %.4f, \"seconds\": %.2f}",
                    first ? "" : ", ", cr.name, r.final_loss, acc, r.seconds);
      json += buf;
      first = false;
    }

    // 2. Image features decide the next token.
    std::vector<float> means(static_cast<size_t>(kClasses * kDv));
    Rng mrng(seed + 7);
    for (auto& m : means) m = mrng.normal();
    Transformer model(lm::ModelWeights::random(vision_config(), seed));
    Rng rng(seed + 200);
    const Run r = train(model, steps, 3e-3, [&] { return vision_batch(rng, 16, means); }, true);
    // Evaluation rows through a --vision file: record.{b} = row b's features.
    Rng erng(seed + 999);
    const Batch x = vision_batch(erng, 64, means);
    const std::filesystem::path file =
        std::filesystem::temp_directory_path() / ("llama4_tasks_" + std::to_string(::getpid()) + ".safetensors");
    {
      lm::SafeTensorsWriter w;
      for (int64_t b = 0; b < x.B; ++b) {
        lm::Tensor t = lm::Tensor::zeros(lm::DType::F32, {x.count[b], kDv});
        std::memcpy(t.data_mut<float>(), x.features.data() + x.feature0[b] * kDv, t.nbytes());
        w.add("record." + std::to_string(b), t);
      }
      w.write_file(file.string());
    }
    const lm::VisionFile vf = lm::VisionFile::open(file.string(), model.config());
    std::filesystem::remove(file);
    std::vector<VisionRow> rows;
    for (int64_t b = 0; b < x.B; ++b) rows.push_back(vf.row(b));
    const double acc = accuracy(model.forward(x.tokens.data(), nullptr, x.B, x.T, nullptr, rows.data()), x.targets,
                                x.targets, kVisV);
    // Control: every place gets the features of the place one further on (cyclically): the
    // prediction follows the features (their class), not the row.
    Batch swapped = x;
    const int64_t M = static_cast<int64_t>(x.classes.size());
    std::vector<int32_t> follows(x.targets.size(), kPad);
    int64_t m = 0;
    for (size_t i = 0; i < x.targets.size(); ++i)
      if (x.targets[i] != kPad) {
        const int64_t from = (m + 1) % M;
        std::memcpy(swapped.features.data() + m * kDv, x.features.data() + from * kDv, kDv * sizeof(float));
        follows[i] = kFirstClass + x.classes[static_cast<size_t>(from)];
        ++m;
      }
    const std::vector<VisionRow> srows = swapped.rows(kDv);
    const float* sl = model.forward(swapped.tokens.data(), nullptr, x.B, x.T, nullptr, srows.data());
    const double acc_row = accuracy(sl, x.targets, x.targets, kVisV);
    const double acc_feat = accuracy(sl, x.targets, follows, kVisV);
    char buf[240];
    std::snprintf(buf, sizeof buf,
                  "next-token accuracy %.3f (chance %.3f); features of another place: the row's class %.3f, "
                  "that place's class %.3f",
                  acc, 1.0 / kClasses, acc_row, acc_feat);
    report("image features decide the next token", r, buf);
    std::snprintf(buf, sizeof buf,
                  ", {\"task\": \"image features decide the next token\", \"loss\": %.4f, \"accuracy\": %.4f, "
                  "\"swapped_row_class\": %.4f, \"swapped_feature_class\": %.4f, \"seconds\": %.2f}",
                  r.final_loss, acc, acc_row, acc_feat, r.seconds);
    json += buf;
    json += "]}";
    std::printf("%s\n", json.c_str());
    return 0;
  } catch (const lm::Error& e) {
    std::fprintf(stderr, "llama4_tasks: error: %s\n", e.what());
    return 1;
  }
}
