#include "generate/sampler.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace lm {

void validate(const SamplerOptions& o) {
  if (!(o.temperature >= 0) || !std::isfinite(o.temperature))
    fail_usage(cat("--temperature must be a finite number >= 0, got ", o.temperature));
  if (o.top_k < 0) fail_usage(cat("--top-k must be >= 0, got ", o.top_k));
  if (!(o.top_p > 0 && o.top_p <= 1)) fail_usage(cat("--top-p must be in (0, 1], got ", o.top_p));
  if (!(o.min_p >= 0 && o.min_p <= 1)) fail_usage(cat("--min-p must be in [0, 1], got ", o.min_p));
  if (!(o.repeat_penalty > 0) || !std::isfinite(o.repeat_penalty))
    fail_usage(cat("--repeat-penalty must be a finite number > 0, got ", o.repeat_penalty));
  if (!std::isfinite(o.presence_penalty))
    fail_usage(cat("--presence-penalty must be a finite number, got ", o.presence_penalty));
  if (!std::isfinite(o.frequency_penalty))
    fail_usage(cat("--frequency-penalty must be a finite number, got ", o.frequency_penalty));
  if (o.repeat_last_n < -1) fail_usage(cat("--repeat-last-n must be >= -1, got ", o.repeat_last_n));
}

void Sampler::accept(int32_t token) {
  if (!opts_.penalises()) return;
  if (opts_.repeat_last_n < 0 || static_cast<int64_t>(window_.size()) < opts_.repeat_last_n) {
    window_.push_back(token);
  } else {  // full: the oldest leaves
    int32_t& old = window_[window_next_];
    if (--counts_[old] == 0) counts_.erase(old);
    old = token;
    window_next_ = (window_next_ + 1) % window_.size();
  }
  ++counts_[token];
}

int32_t argmax(const float* logits, int64_t V, const uint8_t* reserved) {
  int64_t best = -1;
  for (int64_t i = 0; i < V; ++i)
    if ((!reserved || !reserved[i]) && (best < 0 || logits[i] > logits[best])) best = i;
  return static_cast<int32_t>(best);
}

Sampler::Sampler(const SamplerOptions& opts, uint64_t seed) : opts_(opts), rng_(seed) { validate(opts); }

int32_t Sampler::sample(const float* logits, int64_t V, const uint8_t* reserved) {
  cand_.clear();
  if (opts_.penalises() && !counts_.empty()) {
    penalised_.assign(logits, logits + V);
    const auto rp = static_cast<float>(opts_.repeat_penalty), fp = static_cast<float>(opts_.frequency_penalty),
               pp = static_cast<float>(opts_.presence_penalty);
    for (const auto& [id, count] : counts_) {
      if (id < 0 || id >= V) continue;
      float& l = penalised_[static_cast<size_t>(id)];
      l = l > 0 ? l / rp : l * rp;
      l -= static_cast<float>(count) * fp + pp;
    }
    logits = penalised_.data();
  }
  logits_ = logits;
  if (opts_.temperature == 0) {
    const int32_t id = argmax(logits, V, reserved);
    if (id < 0) fail_data("every token id is reserved: nothing to sample");
    cand_.push_back({id, 1.0});
    return id;
  }
  // Candidates by logit, most likely first (ties: lower id first), sorted only as far as needed.
  work_.clear();
  for (int64_t i = 0; i < V; ++i)
    if (!reserved || !reserved[i]) work_.push_back({logits[i], static_cast<int32_t>(i), 0.0});
  if (work_.empty()) fail_data("every token id is reserved: nothing to sample");
  auto before = [](const Candidate& a, const Candidate& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  };
  const auto n = static_cast<int64_t>(work_.size());  // the ids that may be drawn
  int64_t k = opts_.top_k > 0 ? std::min(opts_.top_k, n) : n;
  const double inv_t = 1.0 / opts_.temperature;
  const float top = std::max_element(work_.begin(), work_.end(), [](const Candidate& a, const Candidate& b) {
                      return a.logit < b.logit;
                    })->logit;
  // Softmax normaliser over the top-k set; each exponential is computed once, kept with its
  // candidate for the cuts and the draw.
  double z = 0;
  if (k < n) {
    std::nth_element(work_.begin(), work_.begin() + (k - 1), work_.end(), before);
    work_.resize(static_cast<size_t>(k));
  }
  for (auto& w : work_) z += (w.weight = std::exp((static_cast<double>(w.logit) - top) * inv_t));  // relative to the most likely
  // Sorted prefix: grows until it holds top_p of the mass (or everything).
  int64_t sorted = 0, keep = k;
  if (opts_.top_p < 1) {
    double mass = 0;
    int64_t m = std::min<int64_t>(k, 64);
    while (true) {
      std::partial_sort(work_.begin() + sorted, work_.begin() + m, work_.end(), before);
      for (; sorted < m; ++sorted) {
        mass += work_[static_cast<size_t>(sorted)].weight / z;
        if (mass >= opts_.top_p) break;
      }
      if (sorted < m) {  // reached top_p at index `sorted`
        keep = sorted + 1;
        break;
      }
      if (m == k) break;
      m = std::min(k, m * 4);
    }
  }
  if (keep < static_cast<int64_t>(work_.size())) {
    if (sorted < keep) std::partial_sort(work_.begin(), work_.begin() + keep, work_.end(), before);
    work_.resize(static_cast<size_t>(keep));
  } else if (k < n) {
    std::sort(work_.begin(), work_.end(), before);  // a fixed order: the draw must not depend on nth_element
  }  // else: every token, in id order
  double total = 0;
  cand_.reserve(work_.size());
  for (const auto& w : work_) {
    if (w.weight < opts_.min_p) continue;  // min-p: below min_p times the most likely token's probability
    cand_.push_back({w.id, w.weight});
    total += w.weight;
  }
  for (auto& c : cand_) c.second /= total;
  const double u = static_cast<double>(rng_.uniform());
  double acc = 0;
  for (const auto& c : cand_) {
    acc += c.second;
    if (u < acc) return c.first;
  }
  return cand_.back().first;
}

}  // namespace lm
