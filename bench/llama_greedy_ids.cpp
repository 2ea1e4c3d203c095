// Greedy generation with llama.cpp's library, printing token ids: the peer side of
// bench/interop.sh. Built by that script against a llama.cpp build (not by lmkit's CMake).
//   llama_greedy_ids MODEL.gguf N PROMPT
// prints two lines: the prompt's ids (llama.cpp's tokenizer, BOS as the file says) and the N
// greedy ids after it (fewer when an end-of-generation token comes first; it is printed).
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "llama.h"

static void quiet(enum ggml_log_level, const char*, void*) {}

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s MODEL.gguf N PROMPT\n", argv[0]);
    return 2;
  }
  const int n_new = std::atoi(argv[2]);
  const std::string prompt = argv[3];
  llama_log_set(quiet, nullptr);
  llama_backend_init();
  llama_model_params mp = llama_model_default_params();
  llama_model* model = llama_model_load_from_file(argv[1], mp);
  if (!model) return 1;
  const llama_vocab* vocab = llama_model_get_vocab(model);
  const int n = -llama_tokenize(vocab, prompt.data(), static_cast<int32_t>(prompt.size()), nullptr, 0, true, false);
  std::vector<llama_token> ids(static_cast<size_t>(n));
  if (llama_tokenize(vocab, prompt.data(), static_cast<int32_t>(prompt.size()), ids.data(), n, true, false) < 0) return 1;
  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = static_cast<uint32_t>(n + n_new + 8);
  cp.n_batch = static_cast<uint32_t>(n);
  cp.n_threads = cp.n_threads_batch = 2;
  llama_context* ctx = llama_init_from_model(model, cp);
  if (!ctx) return 1;
  llama_sampler* smpl = llama_sampler_chain_init(llama_sampler_chain_default_params());
  llama_sampler_chain_add(smpl, llama_sampler_init_greedy());
  for (size_t i = 0; i < ids.size(); ++i) std::printf("%s%d", i ? " " : "", ids[i]);
  std::printf("\n");
  llama_batch batch = llama_batch_get_one(ids.data(), static_cast<int32_t>(ids.size()));
  llama_token next = 0;
  for (int i = 0; i < n_new; ++i) {
    if (llama_decode(ctx, batch)) return 1;
    next = llama_sampler_sample(smpl, ctx, -1);
    std::printf("%s%d", i ? " " : "", next);
    if (llama_vocab_is_eog(vocab, next)) break;
    batch = llama_batch_get_one(&next, 1);
  }
  std::printf("\n");
  llama_sampler_free(smpl);
  llama_free(ctx);
  llama_model_free(model);
  return 0;
}
