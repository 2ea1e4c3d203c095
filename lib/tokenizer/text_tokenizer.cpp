#include "tokenizer/text_tokenizer.h"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "core/threads.h"

namespace lm {

// ---------------------------------------------------------------- documents

namespace {

class FileDocuments final : public DocumentSource {
 public:
  explicit FileDocuments(const std::vector<std::string>& paths) : paths_(paths) {}
  ByteSource* next() override {
    if (i_ >= paths_.size()) return nullptr;
    src_ = open_raw_input(paths_[i_++]);  // bytes as they are: a compressed file is tokenized compressed
    return src_.get();
  }

 private:
  std::vector<std::string> paths_;
  size_t i_ = 0;
  std::unique_ptr<ByteSource> src_;
};

// Lines of one input, each handed out as a ByteSource that ends at the line break.
class LineDocuments final : public DocumentSource {
 public:
  explicit LineDocuments(const std::vector<std::string>& paths) : paths_(paths), buf_(kCapacity) {
    line_.owner = this;
  }
  LineDocuments(const LineDocuments&) = delete;
  LineDocuments& operator=(const LineDocuments&) = delete;

  ByteSource* next() override {
    for (;;) {
      if (!src_) {
        if (i_ >= paths_.size()) return nullptr;
        src_ = open_raw_input(paths_[i_++]);
        pos_ = end_ = 0;
        eof_ = false;
      }
      if (line_.open) drain();  // the previous line was not read to its end
      if (pos_ == end_) fill();
      if (pos_ < end_) {
        line_.open = true;
        return &line_;
      }
      src_.reset();  // this input is done
    }
  }

 private:
  static constexpr size_t kCapacity = size_t{1} << 20;

  struct Line final : ByteSource {
    LineDocuments* owner = nullptr;
    bool open = false;
    size_t read_some(void* dst, size_t n) override { return owner->read_line(dst, n); }
    const std::string& name() const override { return owner->src_->name(); }
  };

  void fill() {
    pos_ = end_ = 0;
    if (eof_) return;
    end_ = src_->read_full(buf_.data(), kCapacity);
    if (end_ < kCapacity) eof_ = true;
  }
  size_t read_line(void* dst, size_t n) {
    if (!line_.open || n == 0) return 0;
    if (pos_ == end_) fill();
    if (pos_ == end_) {
      line_.open = false;
      return 0;
    }
    const size_t k = std::min(n, end_ - pos_);
    const void* nl = std::memchr(buf_.data() + pos_, '\n', k);
    const size_t take = nl ? static_cast<size_t>(static_cast<const uint8_t*>(nl) - (buf_.data() + pos_)) : k;
    std::memcpy(dst, buf_.data() + pos_, take);
    pos_ += take;
    if (nl) {
      ++pos_;  // the line break
      line_.open = false;
      if (take == 0) return 0;
    }
    return take;
  }
  void drain() {
    uint8_t scratch[4096];
    while (line_.open) read_line(scratch, sizeof(scratch));
  }

  std::vector<std::string> paths_;
  size_t i_ = 0;
  std::unique_ptr<ByteSource> src_;
  std::vector<uint8_t> buf_;
  size_t pos_ = 0, end_ = 0;
  bool eof_ = false;
  Line line_;
};

class SingleDocument final : public DocumentSource {
 public:
  explicit SingleDocument(ByteSource& src) : src_(&src) {}
  ByteSource* next() override {
    ByteSource* s = src_;
    src_ = nullptr;
    return s;
  }

 private:
  ByteSource* src_;
};

}  // namespace

std::unique_ptr<DocumentSource> file_documents(const std::vector<std::string>& paths) {
  return std::make_unique<FileDocuments>(paths);
}
std::unique_ptr<DocumentSource> line_documents(const std::vector<std::string>& paths) {
  return std::make_unique<LineDocuments>(paths);
}
std::unique_ptr<DocumentSource> single_document(ByteSource& src) { return std::make_unique<SingleDocument>(src); }

// ---------------------------------------------------------------- the pipeline

namespace {

// Documents' tokens into records: BOS first, chunks of max_seq_len, EOS by the mode.
class Assembler {
 public:
  Assembler(RecordSink& out, const EncodeOptions& opts, const TokenizerSpec& spec, int32_t collapsed_unk,
            EncodeStats& stats)
      : out_(out), seq_(opts.max_seq_len), eos_mode_(opts.eos), stats_(stats), unk_(collapsed_unk) {
    if (seq_ == 0 || seq_ > tokstream::kMaxRecordTokens)
      fail_usage(cat("max_seq_len ", seq_, " is outside 1..", tokstream::kMaxRecordTokens));
    if (opts.add_bos && spec.bos_id < 0) fail_usage(cat("the ", spec.kind_name(), " tokenizer has no BOS token"));
    if (opts.eos == EosMode::Always && spec.eos_id < 0)
      fail_usage(cat("the ", spec.kind_name(), " tokenizer has no EOS token"));
    bos_ = opts.add_bos ? spec.bos_id : -1;
    eos_ = spec.eos_id;
    rec_.reserve(std::min<size_t>(seq_, size_t{1} << 16));
  }

  void begin() {
    pos_ = 0;
    rec_.clear();
    last_ = -1;
    if (bos_ >= 0) push(static_cast<uint32_t>(bos_));
  }
  void add(const uint32_t* t, size_t n) {
    size_t i = 0;
    if (unk_ >= 0) {  // runs of unknown tokens are one token, also across segments
      for (; i < n; ++i) {
        if (t[i] == static_cast<uint32_t>(unk_) && last_ == unk_) continue;
        push(t[i]);
      }
      return;
    }
    while (i < n) {
      if (rec_.size() == seq_) flush();
      const size_t k = std::min(n - i, seq_ - rec_.size());
      rec_.insert(rec_.end(), t + i, t + i + k);
      i += k;
    }
    if (n) last_ = static_cast<int64_t>(t[n - 1]);
  }
  void end() {
    const size_t k = rec_.size();
    const bool eos = eos_ >= 0 && (eos_mode_ == EosMode::Always || (eos_mode_ == EosMode::Soma && k > 0 && k < seq_));
    if (eos) push(static_cast<uint32_t>(eos_));
    if (!rec_.empty()) flush();
    ++stats_.documents;
  }

 private:
  void push(uint32_t t) {
    if (rec_.size() == seq_) flush();
    rec_.push_back(t);
    last_ = t;
  }
  void flush() {
    out_.write_record(rec_.data(), rec_.size(), pos_);
    ++stats_.records;
    stats_.tokens += rec_.size();
    pos_ += rec_.size();
    rec_.clear();
  }

  RecordSink& out_;
  size_t seq_;
  EosMode eos_mode_;
  EncodeStats& stats_;
  int64_t unk_;
  int32_t bos_ = -1, eos_ = -1;
  std::vector<uint32_t> rec_;
  uint64_t pos_ = 0;
  int64_t last_ = -1;
};

struct Segment {
  size_t offset, length;
  bool begin, end;  // first / last segment of its document
};

struct Job {
  std::string text;
  std::vector<Segment> segments;
  std::vector<uint32_t> tokens;
  std::vector<size_t> ends;  // tokens of segment i end at ends[i]
  void clear() {
    text.clear();
    segments.clear();
    tokens.clear();
    ends.clear();
  }
};

constexpr size_t kReadBlock = size_t{256} << 10;  // raw bytes read at a time
constexpr size_t kJobBytes = size_t{256} << 10;   // prepared text per job

// The reading thread (the caller) prepares text and cuts it into jobs; worker threads
// encode jobs from a queue; the reading thread puts finished jobs into records in input
// order. A ring of 2 x threads + 2 job slots bounds the memory. With one thread there are
// no workers: each job is encoded where it is made.
class Pipeline {
 public:
  Pipeline(const TextTokenizer& tok, const EncodeOptions& opts, RecordSink& out, EncodeStats& stats)
      : tok_(tok),
        threads_(std::max(1, opts.threads > 0 ? opts.threads : thread_count())),
        asm_(out, opts, tok.spec(), tok.collapsed_unknown(), stats),
        stats_(stats),
        preparer_(tok.make_preparer()) {
    slots_.resize(threads_ == 1 ? 1 : static_cast<size_t>(threads_) * 2 + 2);
    if (threads_ == 1) {
      inline_encoder_ = tok.make_encoder();
      return;
    }
    std::vector<std::unique_ptr<TextTokenizer::Encoder>> encoders;
    for (int i = 0; i < threads_; ++i) encoders.push_back(tok.make_encoder());
    for (auto& e : encoders) workers_.emplace_back([this, enc = std::move(e)]() mutable { work(*enc); });
  }
  ~Pipeline() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    work_cv_.notify_all();
    for (auto& t : workers_) t.join();
  }
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  void document(ByteSource& src) {
    preparer_->reset();
    raw_.resize(kReadBlock + 64);
    pending_.clear();
    size_t tail = 0, search_from = 0;
    bool begin = true;
    for (;;) {
      const size_t want = raw_.size() - tail;
      const size_t got = src.read_full(raw_.data() + tail, want);
      stats_.bytes += got;
      const bool eof = got < want;
      const size_t have = tail + got;
      const size_t used = preparer_->prepare(raw_.data(), have, eof, pending_);
      tail = have - used;
      if (tail) std::memmove(raw_.data(), raw_.data() + used, tail);
      if (tail + kReadBlock > raw_.size()) raw_.resize(tail + kReadBlock);
      if (eof) {
        segment(pending_.data(), pending_.size(), begin, true);
        break;
      }
      if (pending_.size() >= kJobBytes) {
        const size_t cut = tok_.last_cut(pending_, search_from);
        if (cut > 0) {
          segment(pending_.data(), cut, begin, false);
          begin = false;
          pending_.erase(0, cut);
          search_from = 0;
        } else {
          search_from = pending_.size() > 8 ? pending_.size() - 8 : 0;  // only the new text next time
        }
      }
    }
  }

  void finish() {
    if (filling_) submit();
    while (in_flight_ > 0) assemble_oldest();
  }

 private:
  enum class State { Free, Queued, Done };
  struct Slot {
    Job job;
    State state = State::Free;
    std::exception_ptr error;
  };

  void segment(const char* p, size_t n, bool begin, bool end) {
    if (!filling_) {
      if (in_flight_ == slots_.size()) assemble_oldest();  // the ring is full
      filling_ = &slots_[next_];
      filling_->job.clear();
    }
    Job& job = filling_->job;
    job.segments.push_back({job.text.size(), n, begin, end});
    job.text.append(p, n);
    if (job.text.size() >= kJobBytes) submit();
  }

  void submit() {
    Slot* slot = filling_;
    filling_ = nullptr;
    const size_t index = next_;
    next_ = (next_ + 1) % slots_.size();
    ++in_flight_;
    if (threads_ == 1) {
      encode_job(slot->job, *inline_encoder_);
      slot->state = State::Done;
      assemble_oldest();
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      slot->state = State::Queued;
      queue_.push_back(index);
    }
    work_cv_.notify_one();
  }

  void work(TextTokenizer::Encoder& enc) {
    for (;;) {
      size_t index;
      {
        std::unique_lock<std::mutex> lock(mu_);
        work_cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stopping
        index = queue_.front();
        queue_.pop_front();
      }
      Slot& slot = slots_[index];
      try {
        encode_job(slot.job, enc);
      } catch (...) {
        slot.error = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        slot.state = State::Done;
      }
      done_cv_.notify_all();
    }
  }

  static void encode_job(Job& job, TextTokenizer::Encoder& enc) {
    for (const Segment& s : job.segments) {
      if (s.length) enc.encode(std::string_view(job.text).substr(s.offset, s.length), job.tokens);
      job.ends.push_back(job.tokens.size());
    }
  }

  // Waits for the oldest job in flight and puts its tokens into records.
  void assemble_oldest() {
    Slot& slot = slots_[oldest_];
    if (threads_ > 1) {
      std::unique_lock<std::mutex> lock(mu_);
      done_cv_.wait(lock, [&slot] { return slot.state == State::Done; });
    }
    if (slot.error) std::rethrow_exception(slot.error);
    const Job& job = slot.job;
    size_t from = 0;
    for (size_t i = 0; i < job.segments.size(); ++i) {
      const Segment& s = job.segments[i];
      if (s.begin) asm_.begin();
      asm_.add(job.tokens.data() + from, job.ends[i] - from);
      from = job.ends[i];
      if (s.end) asm_.end();
    }
    slot.state = State::Free;
    oldest_ = (oldest_ + 1) % slots_.size();
    --in_flight_;
  }

  const TextTokenizer& tok_;
  int threads_;
  Assembler asm_;
  EncodeStats& stats_;
  std::unique_ptr<TextTokenizer::Preparer> preparer_;
  std::unique_ptr<TextTokenizer::Encoder> inline_encoder_;
  std::vector<Slot> slots_;
  Slot* filling_ = nullptr;             // the job being filled (slot next_)
  size_t next_ = 0, oldest_ = 0, in_flight_ = 0;
  std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  std::deque<size_t> queue_;
  bool stop_ = false;
  std::vector<std::thread> workers_;
  std::vector<uint8_t> raw_;
  std::string pending_;
};

}  // namespace

void encode_text_documents(const TextTokenizer& tok, DocumentSource& docs, const EncodeOptions& opts, RecordSink& out,
                           EncodeStats& stats) {
  Pipeline p(tok, opts, out, stats);
  while (ByteSource* src = docs.next()) p.document(*src);
  p.finish();
}

void TextTokenizer::encode_document(ByteSource& src, const EncodeOptions& opts, RecordSink& out, EncodeStats& stats) {
  const auto docs = single_document(src);
  encode_text_documents(*this, *docs, opts, out, stats);
}

void TextTokenizer::make_sequence(const uint32_t* tokens, size_t n, uint64_t start, size_t max_seq_len,
                                  Sequence& out) const {
  const TokenizerSpec& s = spec();
  const uint32_t pad = static_cast<uint32_t>(s.pad_id >= 0 ? s.pad_id : s.eos_id >= 0 ? s.eos_id : 0);
  const size_t len = std::max(n, max_seq_len);
  out.token_ids.assign(tokens, tokens + n);
  out.token_ids.resize(len, pad);
  out.pos_ids.resize(len);
  for (size_t i = 0; i < len; ++i) out.pos_ids[i] = start + std::min(i, n);
  out.targets.assign(out.token_ids.begin() + (len ? 1 : 0), out.token_ids.end());
  if (len) out.targets.push_back(pad);
}

}  // namespace lm
