// The sampler's steps against a plain reference on fixed logits: the penalties (llama.cpp's
// repeat penalty, OpenAI's presence and frequency penalties over the last repeat_last_n
// tokens), then top-k, top-p and min-p in llama.cpp's order; and per-token log-probabilities.
// The reference sorts everything, works in double, and shares no code with lm::Sampler.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "generate/generate.h"
#include "generate/sampler.h"

namespace lm {
namespace {

struct RefResult {
  std::vector<double> logits;        // after the penalties
  std::map<int32_t, double> probs;   // the candidates and their probabilities
};

RefResult reference(const std::vector<float>& raw, const std::vector<int32_t>& history, const SamplerOptions& o) {
  const auto V = static_cast<int64_t>(raw.size());
  RefResult r;
  r.logits.assign(raw.begin(), raw.end());
  // 1. penalties over the window
  std::vector<int32_t> window = history;
  if (o.repeat_last_n == 0) window.clear();
  if (o.repeat_last_n > 0 && static_cast<int64_t>(window.size()) > o.repeat_last_n)
    window.erase(window.begin(), window.end() - o.repeat_last_n);
  std::map<int32_t, int> count;
  for (int32_t t : window) ++count[t];
  for (const auto& [id, n] : count) {
    double& l = r.logits[static_cast<size_t>(id)];
    l = l > 0 ? l / o.repeat_penalty : l * o.repeat_penalty;
    l -= n * o.frequency_penalty + o.presence_penalty;
  }
  if (o.temperature == 0) {
    int32_t best = 0;
    for (int32_t i = 1; i < V; ++i)
      if (r.logits[static_cast<size_t>(i)] > r.logits[static_cast<size_t>(best)]) best = i;
    r.probs[best] = 1;
    return r;
  }
  // 2. everything sorted, most likely first (ties: lower id)
  std::vector<int32_t> ids(static_cast<size_t>(V));
  for (int32_t i = 0; i < V; ++i) ids[static_cast<size_t>(i)] = i;
  std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) {
    return r.logits[a] > r.logits[b] || (r.logits[a] == r.logits[b] && a < b);
  });
  // 3. top-k
  if (o.top_k > 0 && o.top_k < V) ids.resize(static_cast<size_t>(o.top_k));
  auto softmax = [&](const std::vector<int32_t>& set) {
    std::vector<double> p;
    double z = 0;
    for (int32_t id : set) z += std::exp(r.logits[id] / o.temperature);
    for (int32_t id : set) p.push_back(std::exp(r.logits[id] / o.temperature) / z);
    return p;
  };
  // 4. top-p: the shortest prefix reaching top_p
  if (o.top_p < 1) {
    const std::vector<double> p = softmax(ids);
    double mass = 0;
    size_t keep = ids.size();
    for (size_t i = 0; i < ids.size(); ++i) {
      mass += p[i];
      if (mass >= o.top_p) {
        keep = i + 1;
        break;
      }
    }
    ids.resize(keep);
  }
  // 5. min-p: at least min_p times the most likely one's probability
  {
    const std::vector<double> p = softmax(ids);
    std::vector<int32_t> kept;
    for (size_t i = 0; i < ids.size(); ++i)
      if (p[i] >= o.min_p * p[0]) kept.push_back(ids[i]);
    ids = kept;
  }
  const std::vector<double> p = softmax(ids);
  for (size_t i = 0; i < ids.size(); ++i) r.probs[ids[i]] = p[i];
  return r;
}

void expect_matches(const std::vector<float>& logits, const std::vector<int32_t>& history, const SamplerOptions& o,
                    const std::string& what) {
  Sampler s(o, 1);
  for (int32_t t : history) s.accept(t);
  s.sample(logits.data(), static_cast<int64_t>(logits.size()));
  const RefResult ref = reference(logits, history, o);
  for (size_t i = 0; i < logits.size(); ++i)
    ASSERT_NEAR(s.last_logits()[i], ref.logits[i], 1e-5 * (1 + std::abs(ref.logits[i]))) << what << " id " << i;
  std::map<int32_t, double> got;
  for (const auto& [id, p] : s.last_candidates()) got[id] = p;
  ASSERT_EQ(got.size(), ref.probs.size()) << what;
  for (const auto& [id, p] : ref.probs) {
    ASSERT_TRUE(got.count(id)) << what << " id " << id;
    EXPECT_NEAR(got[id], p, 1e-9 + 1e-6 * p) << what << " id " << id;
  }
}

TEST(SamplerSteps, PenaltiesByHand) {
  // ids 0..3; window {0, 1, 1}: 0 once (positive logit: divided), 1 twice (negative: multiplied)
  const std::vector<float> l{2.0f, -1.0f, 0.5f, 3.0f};
  SamplerOptions o;
  o.temperature = 0;
  o.repeat_penalty = 2;
  o.frequency_penalty = 0.5;
  o.presence_penalty = 0.25;
  Sampler s(o, 1);
  for (int32_t t : {0, 1, 1}) s.accept(t);
  EXPECT_EQ(s.sample(l.data(), 4), 3);
  EXPECT_FLOAT_EQ(s.last_logits()[0], 2.0f / 2 - 0.5f - 0.25f);
  EXPECT_FLOAT_EQ(s.last_logits()[1], -1.0f * 2 - 2 * 0.5f - 0.25f);
  EXPECT_FLOAT_EQ(s.last_logits()[2], 0.5f);
  EXPECT_FLOAT_EQ(s.last_logits()[3], 3.0f);
  // A window of 2 holds {1, 1}: 0 is no longer penalised; greedy follows the penalties.
  o.repeat_last_n = 2;
  o.repeat_penalty = 4;
  const std::vector<float> m{3.0f, 1.0f, 0.5f, 2.9f};
  Sampler w(o, 1);
  for (int32_t t : {3, 1, 1}) w.accept(t);
  EXPECT_EQ(w.sample(m.data(), 4), 0);
  EXPECT_FLOAT_EQ(w.last_logits()[3], 2.9f);
  Sampler w2(o, 1);
  for (int32_t t : {1, 1, 3}) w2.accept(t);
  EXPECT_EQ(w2.sample(m.data(), 4), 0);
  EXPECT_FLOAT_EQ(w2.last_logits()[3], 2.9f / 4 - 0.25f - 0.5f);
  // repeat_last_n 0: no penalties at all.
  o.repeat_last_n = 0;
  Sampler off(o, 1);
  for (int32_t t : {0, 0, 3}) off.accept(t);
  EXPECT_EQ(off.sample(m.data(), 4), 0);
  EXPECT_EQ(off.last_logits(), m.data());
}

TEST(SamplerSteps, MinPByHand) {
  // probabilities at T = 1 proportional to e^l: 1, e^-1, e^-2, e^-3 relative to the first
  const std::vector<float> l{0.0f, -1.0f, -2.0f, -3.0f};
  SamplerOptions o;
  o.min_p = std::exp(-2.0) - 1e-9;  // keeps 0, 1, 2
  Sampler s(o, 1);
  s.sample(l.data(), 4);
  ASSERT_EQ(s.last_candidates().size(), 3u);
  const double z = 1 + std::exp(-1.0) + std::exp(-2.0);
  EXPECT_NEAR(s.last_candidates()[0].second, 1 / z, 1e-12);
  o.min_p = 1;  // only the most likely
  Sampler one(o, 1);
  EXPECT_EQ(one.sample(l.data(), 4), 0);
  EXPECT_EQ(one.last_candidates().size(), 1u);
}

TEST(SamplerSteps, EveryStepMatchesThePlainReference) {
  Rng rng(42);
  const int64_t V = 200;
  int cases = 0;
  for (const double temperature : {0.0, 0.7, 1.0, 1.6})
    for (const int64_t top_k : {int64_t{0}, int64_t{1}, int64_t{17}})
      for (const double top_p : {1.0, 0.9, 0.5})
        for (const double min_p : {0.0, 0.05, 0.3})
          for (const int64_t last_n : {int64_t{-1}, int64_t{0}, int64_t{8}, int64_t{64}}) {
            SamplerOptions o;
            o.temperature = temperature;
            o.top_k = top_k;
            o.top_p = top_p;
            o.min_p = min_p;
            o.repeat_last_n = last_n;
            o.repeat_penalty = 1 + 0.5 * (cases % 3);
            o.presence_penalty = 0.3 * (cases % 2);
            o.frequency_penalty = 0.2 * (cases % 5 == 0);
            std::vector<float> logits(static_cast<size_t>(V));
            for (auto& x : logits) x = 3 * rng.normal();
            std::vector<int32_t> history(40);
            for (auto& t : history) t = static_cast<int32_t>(rng.below(30));  // repeats among the first 30 ids
            expect_matches(logits, history, o, "case " + std::to_string(cases));
            ++cases;
          }
}

TEST(SamplerSteps, Validation) {
  SamplerOptions o;
  o.min_p = -0.1;
  EXPECT_THROW(validate(o), Error);
  o.min_p = 1.1;
  EXPECT_THROW(validate(o), Error);
  o = {};
  o.repeat_penalty = 0;
  EXPECT_THROW(validate(o), Error);
  o = {};
  o.presence_penalty = NAN;
  EXPECT_THROW(validate(o), Error);
  o = {};
  o.frequency_penalty = INFINITY;
  EXPECT_THROW(validate(o), Error);
  o = {};
  o.repeat_last_n = -2;
  EXPECT_THROW(validate(o), Error);
  o = {};
  o.repeat_last_n = -1;
  o.min_p = 1;
  EXPECT_NO_THROW(validate(o));
}

TEST(SamplerSteps, LogprobsAreTheModelsLogSoftmax) {
  const std::vector<float> l{1.0f, 3.0f, -2.0f, 3.0f, 0.5f};
  double z = 0;
  for (float x : l) z += std::exp(static_cast<double>(x));
  const StepLogprobs s = step_logprobs(l.data(), 5, 4, 3);
  EXPECT_EQ(s.chosen.id, 4);
  EXPECT_NEAR(s.chosen.logprob, 0.5 - std::log(z), 1e-12);
  ASSERT_EQ(s.top.size(), 3u);
  EXPECT_EQ(s.top[0].id, 1);  // ties: the lower id first
  EXPECT_EQ(s.top[1].id, 3);
  EXPECT_EQ(s.top[2].id, 0);
  EXPECT_NEAR(s.top[2].logprob, 1.0 - std::log(z), 1e-12);
  EXPECT_EQ(step_logprobs(l.data(), 5, 0, 9).top.size(), 5u);
  EXPECT_TRUE(step_logprobs(l.data(), 5, 0, 0).top.empty());
}

}  // namespace
}  // namespace lm
