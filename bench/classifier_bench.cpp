// classifier_bench: a training step (Transformer::train_step: forward, the fused classifier +
// cross-entropy, backward) timed at several classifier chunk sizes
// (Transformer::set_classifier_chunk), to choose classifier_chunk_rows by measurement.
//
//     build/bench/classifier_bench [--model stories15m] [--batch 8] [--seq 256] [--threads 2]
//                                  [--rounds 3] [--steps 3] [--chunks 16,32,64,128,256,0]
//
// Rows in parallel as lm-train chooses (Transformer::row_parallel_pays). Chunk 0 is the
// measured default; a chunk of B*T rows (or more) is one chunk, the whole [B*T, V] logits at
// once (the memory traffic of the step before the chunks). Each round times every chunk size
// in turn (the median of --steps steps after one warm-up step); the table gives the median
// and range over the rounds in ms per step and tokens/s.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/rng.h"
#include "core/tensor.h"
#include "core/threads.h"
#include "model/presets.h"
#include "model/transformer.h"

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::vector<int64_t> parse_list(const char* s) {
  std::vector<int64_t> out;
  std::string item;
  for (const char* p = s;; ++p) {
    if (*p == ',' || *p == 0) {
      if (!item.empty()) out.push_back(std::stoll(item));
      item.clear();
      if (*p == 0) break;
    } else {
      item += *p;
    }
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_name = "stories15m";
  int64_t B = 8, T = 256;
  int threads = 2, rounds = 3, steps = 3;
  std::vector<int64_t> chunks = {16, 32, 64, 128, 256, 0};
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--model") model_name = argv[i + 1];
    else if (a == "--batch") B = std::atoll(argv[i + 1]);
    else if (a == "--seq") T = std::atoll(argv[i + 1]);
    else if (a == "--threads") threads = std::atoi(argv[i + 1]);
    else if (a == "--rounds") rounds = std::atoi(argv[i + 1]);
    else if (a == "--steps") steps = std::atoi(argv[i + 1]);
    else if (a == "--chunks") chunks = parse_list(argv[i + 1]);
    else {
      std::fprintf(stderr, "classifier_bench: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  try {
    lm::set_threads(threads);
    const lm::ModelConfig c = lm::preset(model_name);
    lm::Transformer model(lm::ModelWeights::random(c, 0));
    model.set_row_parallel(lm::Transformer::row_parallel_pays(c));
    std::vector<int32_t> tokens(static_cast<size_t>(B * T)), targets(tokens.size());
    lm::Rng rng(3);
    for (auto& t : tokens) t = static_cast<int32_t>(rng.below(static_cast<uint64_t>(c.vocab_size)));
    for (auto& t : targets) t = static_cast<int32_t>(rng.below(static_cast<uint64_t>(c.vocab_size)));
    const lm::ParameterLayout& layout = model.weights().layout();
    lm::Tensor arena = lm::Tensor::zeros(lm::DType::F32, {layout.arena_floats()});
    const lm::ParameterTensors grads = layout.bind(arena.data_mut<float>());
    std::vector<std::vector<double>> ms(chunks.size());
    for (int r = 0; r < rounds; ++r)
      for (size_t k = 0; k < chunks.size(); ++k) {
        model.set_classifier_chunk(chunks[k]);
        std::vector<double> times;
        for (int s = 0; s <= steps; ++s) {
          const auto t0 = std::chrono::steady_clock::now();
          std::memset(arena.data_mut<float>(), 0, arena.nbytes());
          model.train_step(grads, tokens.data(), nullptr, targets.data(), B, T);
          const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
          if (s > 0) times.push_back(dt * 1e3);
        }
        ms[k].push_back(median(times));
      }
    std::printf("%s %lld x %lld, %d threads, rows in parallel: %s, %d rounds x %d steps\n", model_name.c_str(),
                static_cast<long long>(B), static_cast<long long>(T), threads,
                model.row_parallel_applies(B, lm::TrainStepOptions{}) ? "yes" : "no", rounds, steps);
    std::printf("%-24s %12s %12s %12s %10s\n", "chunk rows", "median ms", "min ms", "max ms", "tokens/s");
    for (size_t k = 0; k < chunks.size(); ++k) {
      model.set_classifier_chunk(chunks[k]);
      const int64_t rows = model.row_parallel_applies(B, lm::TrainStepOptions{}) ? (B / std::min<int64_t>(B, threads)) * T : B * T;
      const std::string name = chunks[k] == 0 ? "default (" + std::to_string(model.classifier_chunk(rows)) + ")"
                                              : std::to_string(chunks[k]);
      const double med = median(ms[k]);
      std::printf("%-24s %12.1f %12.1f %12.1f %10.0f\n", name.c_str(), med, *std::min_element(ms[k].begin(), ms[k].end()),
                  *std::max_element(ms[k].begin(), ms[k].end()), static_cast<double>(B * T) / med * 1e3);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "classifier_bench: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
