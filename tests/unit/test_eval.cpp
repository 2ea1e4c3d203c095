// lm-eval-loss's library: windowing of token records against direct forward passes, chunked
// delivery, PAD handling, bits per byte, the SIGReg term and mean embedding, and the
// checkpoint tokenizer checks.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"
#include "eval/eval.h"
#include "eval/model_tokenizer.h"
#include "io/stream.h"
#include "io/tokstream.h"
#include "model/loss.h"
#include "model/params.h"
#include "model/sigreg.h"
#include "model/transformer.h"
#include "tokenizer/byte_v1.h"

namespace lm {
namespace {

namespace fs = std::filesystem;

ModelWeights fixture(const std::string& name) {
  return ModelWeights::load(fs::path(LMKIT_SOURCE_DIR) / "tests" / "fixtures" / name / "model.safetensors");
}

// A small soma-like model (byte vocab, PAD 256, EOS 257) with random weights.
ModelConfig soma_like(int64_t seq = 16) {
  ModelConfig c;
  c.dim = 32;
  c.n_layers = 2;
  c.n_heads = 2;
  c.vocab_size = 264;
  c.max_seq_len = seq;
  c.norm_type = NormType::LayerNorm;
  c.norm_bias = true;
  c.ffn_type = FfnType::GELU;
  c.pad_id = 256;
  c.eos_id = 257;
  c.bos_id = -1;
  return c;
}

TokenChunk make_chunk(std::vector<uint32_t> tokens, uint64_t start, bool first = true, bool last = true,
                      uint64_t record = 0) {
  TokenChunk ch;
  ch.tokens = std::move(tokens);
  ch.start = start;
  ch.first = first;
  ch.last = last;
  ch.record = record;
  return ch;
}

// Loss sum and count of one window computed directly: inputs tok[0, min(n,T)) padded with
// `filler`, targets tok[1, n) then ignored.
std::pair<double, int64_t> direct_window(Transformer& m, const std::vector<uint32_t>& tok, uint64_t start, int64_t T) {
  const int64_t n = static_cast<int64_t>(tok.size());
  const int64_t inputs = std::min(n, T);
  std::vector<int32_t> x(T), y(T);
  std::vector<int64_t> p(T);
  const int32_t pad = static_cast<int32_t>(m.config().pad_id);
  for (int64_t t = 0; t < T; ++t) {
    x[t] = t < inputs ? static_cast<int32_t>(tok[t]) : pad;
    p[t] = static_cast<int64_t>(start) + std::min(t, inputs);
    y[t] = t + 1 < n ? static_cast<int32_t>(tok[t + 1]) : pad;
  }
  m.forward(x.data(), p.data(), 1, T);
  const LossResult r = m.loss(y.data());
  return {r.loss * r.count, r.count};
}

TEST(Eval, ShortRecordIsOneSomaSequence) {
  Transformer m(ModelWeights::random(soma_like(16), 7));
  const std::vector<uint32_t> rec{72, 101, 108, 108, 111, 257};  // "Hello" EOS
  Evaluator ev(m, EvalOptions{});
  ev.add(make_chunk(rec, 1000));
  const EvalResult r = ev.finish();
  const auto [sum, count] = direct_window(m, rec, 1000, 16);
  EXPECT_EQ(r.tokens, 5);
  EXPECT_EQ(count, 5);
  EXPECT_NEAR(r.loss_sum, sum, 1e-4 * std::abs(sum));
  EXPECT_EQ(r.windows, 1);
  EXPECT_EQ(r.records, 1);
  EXPECT_EQ(r.ignored, 16 - 5);
}

TEST(Eval, LongRecordSplitsIntoWindowsSharingTheBoundaryToken) {
  const int64_t T = 8;
  Transformer m(ModelWeights::random(soma_like(T), 3));
  std::vector<uint32_t> rec;
  for (int i = 0; i < 20; ++i) rec.push_back(static_cast<uint32_t>(97 + i % 26));
  EvalOptions o;
  o.batch = 2;
  Evaluator ev(m, o);
  ev.add(make_chunk(rec, 0));
  const EvalResult r = ev.finish();
  // windows: [0,9) [8,17) [16,20)
  double sum = 0;
  int64_t count = 0;
  for (auto [a, b] : {std::pair{0, 9}, std::pair{8, 17}, std::pair{16, 20}}) {
    const auto [s, c] = direct_window(m, std::vector<uint32_t>(rec.begin() + a, rec.begin() + b), a, T);
    sum += s;
    count += c;
  }
  EXPECT_EQ(r.tokens, 19);  // every token but the first
  EXPECT_EQ(count, 19);
  EXPECT_EQ(r.windows, 3);
  EXPECT_EQ(r.batches, 2);
  EXPECT_NEAR(r.loss_sum, sum, 1e-4 * std::abs(sum));
  EXPECT_NEAR(r.loss(), sum / 19, 1e-4);
}

TEST(Eval, ChunkedDeliveryAndBatchSizeDoNotChangeTheResult) {
  const int64_t T = 8;
  Transformer m(ModelWeights::random(soma_like(T), 5));
  std::vector<uint32_t> a, b;
  for (int i = 0; i < 29; ++i) a.push_back(static_cast<uint32_t>((i * 37) % 256));
  for (int i = 0; i < 11; ++i) b.push_back(static_cast<uint32_t>((i * 11) % 256));
  b.push_back(257);
  auto run = [&](int64_t batch, size_t piece) {
    EvalOptions o;
    o.batch = batch;
    Evaluator ev(m, o);
    uint64_t rec = 0;
    for (const auto& r : {a, b}) {
      for (size_t off = 0; off < r.size(); off += piece) {
        const size_t end = std::min(r.size(), off + piece);
        ev.add(make_chunk(std::vector<uint32_t>(r.begin() + off, r.begin() + end), off, off == 0, end == r.size(), rec));
      }
      ++rec;
    }
    return ev.finish();
  };
  const EvalResult whole = run(8, 1000), pieces = run(3, 5), ones = run(1, 1);
  EXPECT_EQ(whole.tokens, 28 + 11);
  EXPECT_EQ(pieces.tokens, whole.tokens);
  EXPECT_EQ(ones.tokens, whole.tokens);
  EXPECT_EQ(whole.records, 2);
  EXPECT_NEAR(pieces.loss(), whole.loss(), 1e-5);
  EXPECT_NEAR(ones.loss(), whole.loss(), 1e-5);
}

TEST(Eval, PadTokensInTheInputAreNotTargetsAndBytesCountOnlyBytes) {
  Transformer m(ModelWeights::random(soma_like(16), 9));
  ByteV1Tokenizer tok;
  const auto lengths = token_byte_lengths(tok, 264);
  EXPECT_EQ(lengths[65], 1);
  EXPECT_EQ(lengths[256], 0);
  EXPECT_EQ(lengths[257], 0);
  EXPECT_EQ(lengths[260], 0);
  Evaluator ev(m, EvalOptions{}, lengths);
  ev.add(make_chunk({65, 66, 256, 67, 257}, 0));
  const EvalResult r = ev.finish();
  EXPECT_EQ(r.tokens, 3);  // 66, 67, EOS (the PAD target is skipped)
  EXPECT_EQ(r.bytes, 2);
  ASSERT_TRUE(r.bits_per_byte());
  EXPECT_NEAR(*r.bits_per_byte(), r.loss_sum / std::log(2.0) / 2, 1e-12);
  EXPECT_NEAR(r.bits_per_token(), r.loss() / std::log(2.0), 1e-12);
  EXPECT_NEAR(r.perplexity(), std::exp(r.loss()), 1e-9);
}

TEST(Eval, MaxWindowsStopsEarlyAndUnknownBytesStayUnknown) {
  Transformer m(ModelWeights::random(soma_like(4), 1));
  EvalOptions o;
  o.max_windows = 2;
  Evaluator ev(m, o);
  std::vector<uint32_t> rec(40, 120);
  EXPECT_FALSE(ev.add(make_chunk(rec, 0)));
  const EvalResult r = ev.finish();
  EXPECT_EQ(r.windows, 2);
  EXPECT_EQ(r.tokens, 8);
  EXPECT_EQ(r.bytes, -1);
  EXPECT_FALSE(r.bits_per_byte());
}

TEST(Eval, RejectsBadOptions) {
  Transformer m(ModelWeights::random(soma_like(8), 1));
  EvalOptions o;
  o.seq = 9;
  EXPECT_THROW(Evaluator(m, o), Error);
  o.seq = 0;
  o.batch = 0;
  EXPECT_THROW(Evaluator(m, o), Error);
}

TEST(Eval, FixtureWithoutPadCountsEveryTarget) {
  Transformer m(fixture("llama2"));  // pad_id -1
  Evaluator ev(m, EvalOptions{});
  ev.add(make_chunk({1, 5, 9, 2, 7}, 0));
  const EvalResult r = ev.finish();
  EXPECT_EQ(r.tokens, 4);
  EXPECT_TRUE(std::isfinite(r.loss()));
}

TEST(Eval, SigregTermAndMeanEmbeddingMatchADirectComputation) {
  ModelConfig c = soma_like(8);
  c.sigreg.enabled = true;
  c.sigreg.slices = 16;
  Transformer m(ModelWeights::random(c, 11));
  std::vector<uint32_t> rec;
  for (int i = 0; i < 30; ++i) rec.push_back(static_cast<uint32_t>(40 + i));
  EvalOptions o;
  o.batch = 2;
  o.embedding = true;
  o.sigreg_seed = 42;
  Evaluator ev(m, o);
  ev.add(make_chunk(rec, 0));
  const EvalResult r = ev.finish();
  ASSERT_TRUE(r.sigreg_enabled);
  EXPECT_EQ(r.batches, 2);  // windows [0,9) [8,17) | [16,25) [24,30)
  ASSERT_EQ(r.embedding.size(), 32u);

  std::vector<float> noise(32 * 16);
  Rng rng(42);
  sigreg_draw_noise(noise.data(), rng, 32, 16);
  double sig = 0;
  std::vector<double> emb(32, 0.0);
  int k = 0;
  for (auto [a, b] : {std::pair{0, 16}, std::pair{16, 30}}) {
    // the batch: two windows starting at a and a+8
    std::vector<int32_t> x;
    std::vector<int64_t> p;
    for (int w = a; w < b; w += 8) {
      const int inputs = std::min(8, static_cast<int>(rec.size()) - w);
      for (int t = 0; t < 8; ++t) {
        x.push_back(t < inputs ? static_cast<int32_t>(rec[w + t]) : 256);
        p.push_back(w + std::min(t, inputs));
      }
    }
    const int64_t B = static_cast<int64_t>(x.size()) / 8;
    m.forward(x.data(), p.data(), B, 8);
    const float* lnf = m.activations().lnf;
    ++k;
    sig += (sigreg_value(lnf, noise.data(), B * 8, 32, c.sigreg) - sig) / k;
    std::vector<float> e(32);
    mean_embedding(e.data(), lnf, B * 8, 32);
    for (int i = 0; i < 32; ++i) emb[i] += (e[i] - emb[i]) / k;
  }
  EXPECT_NEAR(r.sigreg, sig, 1e-5 * std::abs(sig));
  for (int i = 0; i < 32; ++i) EXPECT_NEAR(r.embedding[i], emb[i], 1e-5);
  EXPECT_NEAR(r.total_loss(), r.loss() + c.sigreg.coefficient * r.sigreg, 1e-12);
}

// ---- checkpoint tokenizer ----

TEST(ModelTokenizer, SpecsFromCheckpointMetadata) {
  const TokenizerSpec byte = model_tokenizer_spec(R"({"kind":"byte-v1","vocab_size":264,"pad_id":256,"eos_id":257})",
                                                  264, "'m'");
  EXPECT_EQ(byte, byte_v1::spec());
  const TokenizerSpec raw = model_tokenizer_spec(R"({"kind": "none", "vocab_size": 200})", 256, "'m'");
  EXPECT_EQ(raw.kind, TokenizerKind::Raw);
  EXPECT_EQ(raw.vocab_size, 200u);
  EXPECT_EQ(model_tokenizer_spec("", 300, "'m'").vocab_size, 300u);
  const TokenizerSpec sp =
      model_tokenizer_spec(R"({"kind":"sentencepiece","vocab_size":32000,"bos_id":1,"eos_id":2,"fingerprint":"0x10"})",
                           32000, "'m'");
  EXPECT_EQ(sp.kind, TokenizerKind::SentencePiece);
  EXPECT_EQ(sp.bos_id, 1);
  EXPECT_EQ(sp.fingerprint, 16u);

  try {
    model_tokenizer_spec(R"({"kind":"byte-v1","vocab_size":264})", 200, "'m'");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("vocab mismatch"), std::string::npos) << e.what();
  }
  EXPECT_THROW(model_tokenizer_spec("{nope", 264, "'m'"), Error);
  EXPECT_THROW(model_tokenizer_spec(R"({"kind":"klingon"})", 264, "'m'"), Error);
  // Malformed fields are Data errors naming the source and the field (a bad fingerprint or a
  // non-string kind escaped as std::invalid_argument or nlohmann's type_error: found by fuzzing).
  auto error_of = [](const std::string& json) {
    try {
      model_tokenizer_spec(json, 32000, "'m'");
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Data) << e.what();
      return std::string(e.what());
    }
    return std::string();
  };
  for (const auto& [json, field] : std::vector<std::pair<std::string, std::string>>{
           {R"({"kind":"sentencepiece","fingerprint":"zz"})", "'fingerprint'"},
           {R"({"kind":"sentencepiece","fingerprint":"0x10000000000000000"})", "'fingerprint'"},
           {R"({"kind":"sentencepiece","fingerprint":-1})", "'fingerprint'"},
           {R"({"kind":5})", "'kind'"},
           {R"({"kind":"sentencepiece","bos_id":4294967297})", "'bos_id'"},
           {R"({"kind":"sentencepiece","eos_id":-2})", "'eos_id'"},
           {R"({"kind":"sentencepiece","kind":"sentencepiece"})", "duplicate key 'kind'"}}) {
    const std::string err = error_of(json);
    EXPECT_EQ(err.rfind("'m': ", 0), 0u) << json << " -> " << err;
    EXPECT_NE(err.find(field), std::string::npos) << json << " -> " << err;
  }
  EXPECT_THROW(make_model_tokenizer(raw, "'m'"), Error);
  EXPECT_NE(make_model_tokenizer(byte, "'m'"), nullptr);
}

std::unique_ptr<TokenReader> stream_of(const TokenizerSpec& spec, std::vector<uint8_t>& bytes) {
  bytes.clear();
  auto sink = memory_sink(&bytes);
  TokenStreamWriter w(*sink, spec);
  const uint32_t t[2] = {1, 2};
  w.write_record(t, 2, 0);
  w.finish();
  return open_token_reader(memory_source(bytes.data(), bytes.size(), "in.tok"));
}

TEST(ModelTokenizer, TokenInputMustMatchTheModel) {
  std::vector<uint8_t> buf;
  const TokenizerSpec byte = byte_v1::spec();
  EXPECT_NO_THROW(require_tokens_for_model(byte, 264, *stream_of(byte, buf)));
  TokenizerSpec raw;
  raw.vocab_size = 264;
  EXPECT_THROW(require_tokens_for_model(byte, 264, *stream_of(raw, buf)), Error);  // other tokenizer
  EXPECT_NO_THROW(require_tokens_for_model(raw, 264, *stream_of(raw, buf)));
  TokenizerSpec small = raw;
  small.vocab_size = 200;
  EXPECT_THROW(require_tokens_for_model(raw, 264, *stream_of(small, buf)), Error);  // vocab differs
  EXPECT_THROW(require_tokens_for_model(small, 200, *stream_of(byte, buf)), Error);  // larger than the model
}

}  // namespace
}  // namespace lm
