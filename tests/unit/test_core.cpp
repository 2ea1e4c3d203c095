#include <gtest/gtest.h>

#include <omp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "core/blas.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "core/threads.h"
#include "io/stream.h"

namespace lm {
namespace {

TEST(DType, NamesRoundTrip) {
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::I32, DType::I64, DType::U8, DType::Bool}) {
    auto back = dtype_from_name(dtype_name(t));
    ASSERT_TRUE(back.has_value());
    EXPECT_EQ(*back, t);
  }
  EXPECT_FALSE(dtype_from_name("F8_E4M3").has_value());
  EXPECT_EQ(dtype_size(DType::BF16), 2u);
}

TEST(DType, HalfConversionIsExactOnRepresentableValues) {
  // Every finite half value converts to float and back unchanged.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7c00u) == 0x7c00u && (h & 0x3ffu)) continue;  // NaN payloads
    EXPECT_EQ(f32_to_f16(f16_to_f32(static_cast<uint16_t>(h))), h) << std::hex << h;
  }
}

TEST(DType, HalfRoundsToNearestEven) {
  EXPECT_EQ(f32_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);  // rounds up to inf
  EXPECT_EQ(f32_to_f16(1.0f + 0x1.0p-11f), 0x3c00);  // tie, even mantissa kept
  EXPECT_EQ(f32_to_f16(1.0f + 3 * 0x1.0p-11f), 0x3c02);  // tie, rounds to even
  EXPECT_EQ(f32_to_f16(0x1.0p-24f), 0x0001);  // smallest subnormal
  EXPECT_EQ(f32_to_f16(0x1.0p-25f), 0x0000);  // tie to even zero
  EXPECT_EQ(f16_to_f32(0x0001), 0x1.0p-24f);
  EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(NAN))));
}

TEST(DType, BFloat16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(f32_to_bf16(1.0f + 0x1.0p-8f), 0x3f80);      // tie, even kept
  EXPECT_EQ(f32_to_bf16(1.0f + 3 * 0x1.0p-8f), 0x3f82);  // tie, rounds up to even
  EXPECT_EQ(bf16_to_f32(0x3f80), 1.0f);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
}

TEST(Tensor, ZerosAndCast) {
  Tensor t = Tensor::zeros(DType::F32, {2, 3});
  EXPECT_EQ(t.numel(), 6);
  EXPECT_EQ(t.nbytes(), 24u);
  float* p = t.data_mut<float>();
  for (int i = 0; i < 6; ++i) p[i] = 0.5f * i;
  Tensor h = t.cast(DType::F16);
  Tensor back = h.to_f32();
  for (int i = 0; i < 6; ++i) EXPECT_EQ(back.data<float>()[i], 0.5f * i);
}

// A large tensor starts on a 2 MiB boundary (transparent huge pages), reads as zeros, and
// holds memory only where it has been touched: a KV cache sized for the whole context costs the
// positions used.
TEST(Tensor, LargeZerosAreAlignedZeroAndTakenWhenTouched) {
  const int64_t n = int64_t{64} << 20 >> 2;  // 64 MiB of floats
  auto resident_pages = [](const void* p, size_t bytes) {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    std::vector<unsigned char> in((bytes + page - 1) / page);
    EXPECT_EQ(mincore(const_cast<void*>(p), bytes, in.data()), 0);
    size_t count = 0;
    for (unsigned char c : in) count += c & 1;
    return count * page;
  };
  Tensor t = Tensor::zeros(DType::F32, {n});
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw()) % (size_t{2} << 20), 0u);
  EXPECT_LT(resident_pages(t.raw(), t.nbytes()), size_t{8} << 20) << "the allocation touched its pages";
  float* p = t.data_mut<float>();
  p[n - 1] = 3.0f;
  float sum = 0;
  for (int64_t i = 0; i < n; i += 1024) sum += p[i];
  EXPECT_EQ(sum, 0.0f);
  EXPECT_EQ(p[n - 1], 3.0f);
  Tensor small = Tensor::zeros(DType::F32, {1000});
  for (int64_t i = 0; i < 1000; ++i) EXPECT_EQ(small.data<float>()[i], 0.0f);
}

TEST(Tensor, ViewsAreReadOnly) {
  float data[4] = {1, 2, 3, 4};
  Tensor v = Tensor::view(DType::F32, {4}, data, nullptr);
  EXPECT_FALSE(v.writable());
  EXPECT_THROW(v.raw_mut(), Error);
}

TEST(Tensor, ShapeOverflowIsADataError) {
  try {
    shape_numel({1ll << 40, 1ll << 40});
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Data);
    EXPECT_EQ(exit_code_for(e.kind()), 1);
  }
}

TEST(Rng, DeterministicAndResumable) {
  Rng a(42), b(42);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(a.next_u64(), b.next_u64());
  a.normal();  // leaves a spare in the state
  Rng c;
  c.set_state(a.state());
  for (int i = 0; i < 10; ++i) EXPECT_EQ(a.normal(), c.normal());
  Rng d(43);
  EXPECT_NE(Rng(42).next_u64(), d.next_u64());
}

TEST(Rng, UniformAndNormalMoments) {
  Rng r(7);
  double sum = 0, sum2 = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    const float u = r.uniform();
    ASSERT_GE(u, 0.0f);
    ASSERT_LT(u, 1.0f);
    const double z = r.normal();
    sum += z;
    sum2 += z * z;
  }
  EXPECT_NEAR(sum / n, 0.0, 0.01);
  EXPECT_NEAR(sum2 / n, 1.0, 0.02);
  for (int i = 0; i < 1000; ++i) EXPECT_LT(r.below(7), 7u);
}

TEST(Blas, SgemmMatchesNaive) {
  const int M = 5, N = 7, K = 3;
  std::vector<float> A(M * K), B(N * K), C(M * N, 0.0f);
  for (int i = 0; i < M * K; ++i) A[i] = 0.1f * i - 0.3f;
  for (int i = 0; i < N * K; ++i) B[i] = 0.05f * i + 0.2f;
  sgemm(false, true, M, N, K, 1.0f, A.data(), B.data(), 0.0f, C.data());  // C = A @ B^T
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      float ref = 0;
      for (int k = 0; k < K; ++k) ref += A[m * K + k] * B[n * K + k];
      EXPECT_NEAR(C[m * N + n], ref, 1e-5f);
    }
}

// Counts how often parallel_chunks hands out each item, and which thread ran it.
struct ChunkLog {
  std::vector<std::atomic<int>> count;
  std::vector<int> thread;
  explicit ChunkLog(int64_t n) : count(static_cast<size_t>(n)), thread(static_cast<size_t>(n), -1) {}
  void run(int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      count[static_cast<size_t>(i)]++;
      thread[static_cast<size_t>(i)] = omp_get_thread_num();
    }
  }
  bool each_once() const {
    for (const auto& c : count)
      if (c.load() != 1) return false;
    return true;
  }
};

TEST(Threads, ParallelChunksRunsEveryItemOnce) {
  const int saved = thread_count();
  for (int threads : {1, 2, 3, 5}) {
    set_threads(threads);
    for (int64_t n : {0, 1, 7, 1000, 100003})
      for (int64_t chunk : {0, 1, 3, 64, 1 << 20}) {
        ChunkLog log(n);
        parallel_chunks(n, chunk, [&](int64_t lo, int64_t hi) {
          EXPECT_LT(lo, hi);
          EXPECT_LE(hi - lo, std::max<int64_t>(chunk, 1));
          log.run(lo, hi);
        });
        EXPECT_TRUE(log.each_once()) << threads << " threads, n " << n << ", chunk " << chunk;
      }
  }
  // Inside a parallel region every caller runs its whole range itself.
  set_threads(2);
#pragma omp parallel
  {
    ChunkLog log(500);
    parallel_chunks(500, 8, [&](int64_t lo, int64_t hi) { log.run(lo, hi); });
    EXPECT_TRUE(log.each_once());
  }
  set_threads(saved);
}

// More threads than parallel_chunks keeps shares for in its frame: the shares go on the heap.
TEST(Threads, ParallelChunksWithManyThreads) {
  const int saved = thread_count();
  set_threads(20);
  for (int64_t chunk : {1, 7}) {
    ChunkLog log(1000);
    parallel_chunks(1000, chunk, [&](int64_t lo, int64_t hi) { log.run(lo, hi); });
    EXPECT_TRUE(log.each_once()) << chunk;
  }
  set_threads(saved);
}

// Two user threads (two models decoding at once) each run their own parallel_chunks calls:
// neither sees the other's shares.
TEST(Threads, ParallelChunksFromTwoUserThreadsAtOnce) {
  auto work = [](bool* ok) {
    omp_set_num_threads(2);  // a new thread starts from OpenMP's defaults
    for (int rep = 0; rep < 200 && *ok; ++rep) {
      ChunkLog log(3000);
      parallel_chunks(3000, 16, [&](int64_t lo, int64_t hi) { log.run(lo, hi); });
      *ok = log.each_once();
    }
  };
  bool ok1 = true, ok2 = true;
  std::thread a(work, &ok1), b(work, &ok2);
  a.join();
  b.join();
  EXPECT_TRUE(ok1);
  EXPECT_TRUE(ok2);
}

TEST(Threads, ParallelChunksMovesWorkOffASlowThread) {
  const int saved = thread_count();
  set_threads(2);
  const int64_t n = 400;
  ChunkLog log(n);
  parallel_chunks(n, 4, [&](int64_t lo, int64_t hi) {
    if (omp_get_thread_num() == 0) std::this_thread::sleep_for(std::chrono::microseconds(500));
    log.run(lo, hi);
  });
  EXPECT_TRUE(log.each_once());
  // Thread 0 owns [0, 200) but sleeps on every chunk: thread 1 takes much of it from the back.
  int64_t taken = 0;
  for (int64_t i = 0; i < n / 2; ++i) taken += log.thread[static_cast<size_t>(i)] == 1;
  EXPECT_GT(taken, n / 8);
  set_threads(saved);
}

TEST(Stream, ZstdRoundTripIsDetectedOnRead) {
  std::vector<uint8_t> packed;
  {
    auto sink = zstd_sink(memory_sink(&packed), 3);
    std::string text(100000, 'x');
    for (size_t i = 0; i < text.size(); i += 7) text[i] = static_cast<char>('a' + i % 26);
    sink->write(text.data(), text.size());
    sink->finish();
  }
  ASSERT_TRUE(is_zstd_magic(packed.data(), packed.size()));
  // Concatenated frames decode as the concatenation.
  std::vector<uint8_t> twice = packed;
  twice.insert(twice.end(), packed.begin(), packed.end());
  auto src = auto_decompress(memory_source(twice.data(), twice.size(), "mem"));
  std::vector<uint8_t> buf(1 << 20);
  size_t n = src->read_full(buf.data(), buf.size());
  EXPECT_EQ(n, 200000u);
}

}  // namespace
}  // namespace lm
