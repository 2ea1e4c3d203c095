// lm-generate's library: the sampler (greedy, temperature, top-k, top-p, seeds), prompt
// encoding, and the generator (KV-cache decode equal to full forwards, stop strings held
// back and cut, context limit, errors).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "core/error.h"
#include "generate/generate.h"
#include "generate/sampler.h"
#include "model/params.h"
#include "model/presets.h"
#include "model/transformer.h"
#include "tokenizer/byte_v1.h"

namespace lm {
namespace {

namespace fs = std::filesystem;

std::vector<double> softmax(const std::vector<float>& l, double temp) {
  double mx = *std::max_element(l.begin(), l.end()), z = 0;
  std::vector<double> p(l.size());
  for (size_t i = 0; i < l.size(); ++i) z += p[i] = std::exp((l[i] - mx) / temp);
  for (double& x : p) x /= z;
  return p;
}

TEST(Sampler, GreedyAtTemperatureZeroTakesTheFirstMaximum) {
  const std::vector<float> l{0.5f, 2.0f, -1.0f, 2.0f};
  Sampler s({0.0, 0, 1.0}, 1);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(s.sample(l.data(), 4), 1);
  EXPECT_EQ(argmax(l.data(), 4), 1);
}

TEST(Sampler, SameSeedSameDrawsOtherSeedOtherDraws) {
  std::vector<float> l(50);
  for (int i = 0; i < 50; ++i) l[i] = std::sin(i * 1.7f);
  auto draws = [&](uint64_t seed) {
    Sampler s({1.0, 0, 1.0}, seed);
    std::vector<int32_t> out;
    for (int i = 0; i < 40; ++i) out.push_back(s.sample(l.data(), 50));
    return out;
  };
  EXPECT_EQ(draws(7), draws(7));
  EXPECT_NE(draws(7), draws(8));
}

TEST(Sampler, FrequenciesFollowTheTemperedSoftmax) {
  const std::vector<float> l{1.0f, 0.0f, 2.0f, -1.0f, 0.5f};
  for (double temp : {0.5, 1.0, 2.0}) {
    Sampler s({temp, 0, 1.0}, 3);
    std::vector<int> n(5, 0);
    const int draws = 40000;
    for (int i = 0; i < draws; ++i) ++n[s.sample(l.data(), 5)];
    const auto p = softmax(l, temp);
    for (int i = 0; i < 5; ++i)
      EXPECT_NEAR(n[i] / double(draws), p[i], 4 * std::sqrt(p[i] * (1 - p[i]) / draws) + 1e-3) << "temp " << temp;
  }
}

TEST(Sampler, TopKKeepsTheKMostLikely) {
  const std::vector<float> l{0.1f, 3.0f, 2.0f, -5.0f, 2.5f, 0.0f};
  Sampler s({1.0, 3, 1.0}, 5);
  std::map<int32_t, int> seen;
  for (int i = 0; i < 2000; ++i) ++seen[s.sample(l.data(), 6)];
  EXPECT_EQ(seen.size(), 3u);
  EXPECT_TRUE(seen.count(1) && seen.count(2) && seen.count(4));
  const auto& c = s.last_candidates();
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[0].first, 1);
  EXPECT_EQ(c[1].first, 4);
  EXPECT_EQ(c[2].first, 2);
  Sampler one({5.0, 1, 1.0}, 5);  // top-k 1 is greedy at any temperature
  for (int i = 0; i < 20; ++i) EXPECT_EQ(one.sample(l.data(), 6), 1);
}

TEST(Sampler, TopPKeepsTheSmallestSetReachingP) {
  std::vector<float> l(300);
  for (int i = 0; i < 300; ++i) l[i] = static_cast<float>(std::cos(i * 0.37) * 3);
  for (double p : {0.05, 0.3, 0.9, 0.999}) {
    Sampler s({0.8, 0, p}, 9);
    s.sample(l.data(), 300);
    const auto probs = softmax(l, 0.8);
    std::vector<double> sorted = probs;
    std::sort(sorted.rbegin(), sorted.rend());
    size_t want = 0;
    double mass = 0;
    while (mass < p) mass += sorted[want++];
    EXPECT_EQ(s.last_candidates().size(), want) << "p " << p;
    double kept = 0;
    for (const auto& c : s.last_candidates()) kept += probs[static_cast<size_t>(c.first)];
    EXPECT_GE(kept, p - 1e-9);
  }
}

TEST(Sampler, RejectsBadOptions) {
  EXPECT_THROW(Sampler({-1.0, 0, 1.0}, 0), Error);
  EXPECT_THROW(Sampler({1.0, -2, 1.0}, 0), Error);
  EXPECT_THROW(Sampler({1.0, 0, 0.0}, 0), Error);
  EXPECT_THROW(Sampler({1.0, 0, 1.5}, 0), Error);
  EXPECT_THROW(Sampler({NAN, 0, 1.0}, 0), Error);
}

// ---- generation ----

Transformer soma_fixture() {
  return Transformer(ModelWeights::load(fs::path(LMKIT_SOURCE_DIR) / "tests" / "fixtures" / "soma_v1" /
                                        "model.safetensors"));
}

TEST(Sampler, NeverDrawsReservedIds) {
  const std::vector<float> logits{0.f, 9.f, 1.f, 8.f, 2.f};
  const std::vector<uint8_t> reserved{0, 1, 0, 1, 0};
  EXPECT_EQ(argmax(logits.data(), 5, reserved.data()), 4);
  EXPECT_EQ(argmax(logits.data(), 5), 1);
  Sampler greedy({0.0, 0, 1.0}, 1);
  EXPECT_EQ(greedy.sample(logits.data(), 5, reserved.data()), 4);
  Sampler s({1.0, 0, 1.0}, 3);
  for (int i = 0; i < 2000; ++i) {
    const int32_t id = s.sample(logits.data(), 5, reserved.data());
    ASSERT_TRUE(id == 0 || id == 2 || id == 4) << id;
  }
  const std::vector<uint8_t> all(5, 1);
  EXPECT_THROW(greedy.sample(logits.data(), 5, all.data()), Error);
  EXPECT_THROW(s.sample(logits.data(), 5, all.data()), Error);
}

TEST(Generate, ReservedIdsArePadUndecodableAndPastTheTokenizer) {
  ModelConfig cfg = preset("tiny");  // byte-v1 vocabulary: pad 256, eos 257
  cfg.vocab_size = 300;              // padded past the tokenizer
  ByteV1Tokenizer tok;
  const std::vector<uint8_t> r = reserved_ids(cfg, tok.spec(), &tok);
  ASSERT_EQ(r.size(), 300u);
  for (int id = 0; id < 300; ++id) {
    const bool want = id == 256 || (id >= 258);  // PAD, 258..263 undecodable, 264.. past the tokenizer
    EXPECT_EQ(r[static_cast<size_t>(id)] != 0, want) << id;
  }
  TokenizerSpec raw;  // no tokenizer: the spec's vocabulary and the config's pad
  raw.vocab_size = 200;
  cfg.pad_id = 0;
  const std::vector<uint8_t> rr = reserved_ids(cfg, raw, nullptr);
  EXPECT_EQ(rr[0], 1);
  EXPECT_EQ(rr[199], 0);
  EXPECT_EQ(rr[200], 1);
}

TEST(Generate, GreedyNeverEmitsReservedIds) {
  Transformer m = soma_fixture();
  ByteV1Tokenizer tok;
  Generator g(m, &tok);
  GenerateOptions o;
  o.max_new_tokens = 40;
  o.sampling.temperature = 0;
  o.stop_at_eos = false;
  const std::vector<uint8_t> reserved = reserved_ids(m.config(), tok.spec(), &tok);
  int unmasked_hits = 0;  // how often plain argmax would have picked a reserved id
  std::vector<int32_t> seq{84, 111, 32, 98, 101};
  const Completion c = g.generate(seq, o, 0, {});
  for (const int32_t id : c.tokens) {
    EXPECT_EQ(reserved[static_cast<size_t>(id)], 0) << id;
    const int64_t V = m.config().vocab_size;
    const float* l = m.forward(seq.data(), nullptr, 1, static_cast<int64_t>(seq.size()));
    unmasked_hits += reserved[static_cast<size_t>(argmax(l + (seq.size() - 1) * V, V))];
    seq.push_back(id);
  }
  EXPECT_GT(unmasked_hits, 0) << "the fixture never prefers a reserved id: the test proves nothing";
}

TEST(Generate, EncodePromptIsBytesForTheByteTokenizer) {
  ByteV1Tokenizer tok;
  EXPECT_EQ(encode_prompt(tok, "To be"), (std::vector<int32_t>{84, 111, 32, 98, 101}));
  EXPECT_TRUE(encode_prompt(tok, "").empty());
}

TEST(Generate, GreedyKvCacheDecodeEqualsFullForwards) {
  Transformer m = soma_fixture();
  ByteV1Tokenizer tok;
  Generator g(m, &tok);
  GenerateOptions o;
  o.max_new_tokens = 12;
  o.sampling.temperature = 0;
  o.stop_at_eos = false;
  const std::vector<int32_t> prompt{84, 111, 32, 98, 101};
  std::string streamed;
  const Completion c = g.generate(prompt, o, 0, [&](std::string_view s) { streamed += s; });
  ASSERT_EQ(c.tokens.size(), 12u);
  EXPECT_EQ(c.stop_reason, "length");
  EXPECT_EQ(c.prompt_tokens, 5);
  std::vector<int32_t> seq = prompt;
  const int64_t V = m.config().vocab_size;
  const std::vector<uint8_t> reserved = reserved_ids(m.config(), tok.spec(), &tok);
  for (int i = 0; i < 12; ++i) {
    const float* l = m.forward(seq.data(), nullptr, 1, static_cast<int64_t>(seq.size()));
    const int32_t next = argmax(l + (seq.size() - 1) * V, V, reserved.data());
    EXPECT_EQ(next, c.tokens[static_cast<size_t>(i)]) << "step " << i;
    seq.push_back(next);
  }
  std::vector<uint8_t> bytes;
  for (int32_t id : c.tokens) {
    const uint32_t u = static_cast<uint32_t>(id);
    EXPECT_EQ(tok.decode(&u, 1, bytes), 1u) << id;
  }
  EXPECT_EQ(c.text, std::string(bytes.begin(), bytes.end()));
  EXPECT_EQ(streamed, c.text);
}

TEST(Generate, SameSeedSameCompletion) {
  Transformer m = soma_fixture();
  ByteV1Tokenizer tok;
  Generator g(m, &tok);
  GenerateOptions o;
  o.max_new_tokens = 20;
  o.stop_at_eos = false;
  o.sampling.top_k = 40;
  o.sampling.top_p = 0.95;
  const std::vector<int32_t> prompt{65, 66};
  const Completion a = g.generate(prompt, o, 5, {}), b = g.generate(prompt, o, 5, {}), c = g.generate(prompt, o, 6, {});
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_NE(a.tokens, c.tokens);
}

TEST(Generate, StopStringIsCutAndHeldBackWhileUndecided) {
  Transformer m = soma_fixture();
  ByteV1Tokenizer tok;
  Generator g(m, &tok);
  GenerateOptions o;
  o.max_new_tokens = 30;
  o.sampling.temperature = 0;
  o.stop_at_eos = false;
  const std::vector<int32_t> prompt{84, 111};
  const Completion full = g.generate(prompt, o, 0, {});
  ASSERT_GE(full.text.size(), 10u);
  const std::string stop = full.text.substr(4, 3);
  const size_t at = full.text.find(stop);
  o.stop = {"\x01never\x02", stop};
  std::vector<std::string> pieces;
  const Completion c = g.generate(prompt, o, 0, [&](std::string_view s) { pieces.emplace_back(s); });
  EXPECT_EQ(c.stop_reason, "stop");
  EXPECT_EQ(c.text, full.text.substr(0, at));
  std::string joined;
  for (const auto& p : pieces) joined += p;
  EXPECT_EQ(joined, c.text);
  EXPECT_EQ(c.tokens.size(), at);  // byte tokens: one per byte
}

TEST(Generate, StopsAtTheEndOfTheContext) {
  Transformer m = soma_fixture();  // max_seq_len 64
  Generator g(m, nullptr);
  GenerateOptions o;
  o.max_new_tokens = 1000;
  o.stop_at_eos = false;
  std::vector<int32_t> prompt(60, 97);
  const Completion c = g.generate(prompt, o, 1, {});
  EXPECT_EQ(c.stop_reason, "max_seq_len");
  EXPECT_EQ(c.generated, 5);  // positions 60..63 fed back, the 5th token never is
  EXPECT_TRUE(c.text.empty());  // no tokenizer, no text
}

TEST(Generate, Errors) {
  Transformer m = soma_fixture();
  Generator g(m, nullptr);
  GenerateOptions o;
  EXPECT_THROW(g.generate(std::vector<int32_t>(65, 97), o, 0, {}), Error);  // longer than max_seq_len
  EXPECT_THROW(g.generate({}, o, 0, {}), Error);
  o.stop = {"x"};
  EXPECT_THROW(g.generate({97}, o, 0, {}), Error);  // stop strings need a tokenizer
  ByteV1Tokenizer tok;
  Generator gt(m, &tok);
  o.stop = {""};
  EXPECT_THROW(gt.generate({97}, o, 0, {}), Error);
  o.stop.clear();
  o.max_new_tokens = 0;
  EXPECT_EQ(gt.generate({97}, o, 0, {}).generated, 0);
}

}  // namespace
}  // namespace lm
