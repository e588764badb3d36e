// cafex's NCCL all-reduce (TP) and send/recv (PP), through nccl_collective, against raw
// NCCL calls on the same GPUs in the same run. One process, one thread per GPU; sizes
// 1 MiB .. --max-mib; int64 sums like the model's TP reduction. Per size and operation:
// warm-up, then --iters operations enqueued back to back, each bracketed by CUDA events;
// the table shows the median event time, the bus bandwidth (nccl-tests formula:
// all-reduce busbw = bytes / t * 2 (n - 1) / n; send/recv busbw = bytes / t) and the
// wall-clock average per operation (host overhead included).
//
//   nccl_bandwidth [--max-mib 1024] [--iters 20] [--warmup 5] [--gpus N] [--csv FILE]
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nccl.h>

#include "runtime/models/cuda/cuda_check.hpp"
#include "runtime/models/cuda/cuda_memory.hpp"
#include "runtime/error.hpp"
#include "transport/nccl_collective.hpp"
#include "transport/rendezvous_client.hpp"
#include "transport/rendezvous_server.hpp"
#include "bench/flags.hpp"

using namespace cafex;
using namespace std::chrono_literals;

namespace {

struct options {
  size_t max_mib = 1024;
  int iters = 20;
  int warmup = 5;
  int gpus = 0; // 0: all visible
  std::string csv;
};

// All ranks meet here between phases, so every phase starts together.
class barrier {
public:
  explicit barrier(int n) : n_(n) {}
  void arrive_and_wait() {
    std::unique_lock<std::mutex> lock{mx_};
    auto gen = gen_;
    if (++count_ == n_) {
      count_ = 0;
      ++gen_;
      cv_.notify_all();
      return;
    }
    cv_.wait(lock, [&] { return gen != gen_; });
  }

private:
  std::mutex mx_;
  std::condition_variable cv_;
  int n_;
  int count_ = 0;
  uint64_t gen_ = 0;
};

enum op_kind { raw_allreduce, cafex_allreduce, raw_p2p, cafex_p2p, op_count };
const char* op_names[] = {"raw all-reduce", "cafex all-reduce", "raw send/recv",
                          "cafex send/recv"};

struct timing {
  double median_us = 0.0;
  double wall_us = 0.0;
};

[[noreturn]] void die(int rank, const std::string& what, const caf::error& err) {
  std::fprintf(stderr, "nccl_bandwidth: rank %d: %s: %s\n", rank, what.c_str(),
               describe(err).c_str());
  std::exit(1);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

} // namespace

int main(int argc, char** argv) {
  options opt;
  cli::arg_parser flags("nccl_bandwidth",
                        "NCCL all-reduce and send/recv bandwidth against cafex's");
  flags.flag({{"--max-mib"}, "N", "largest message in MiB", "1024"})
    .flag({{"--iters"}, "N", "timed iterations per size", "20"})
    .flag({{"--warmup"}, "N", "untimed iterations per size", "5"})
    .flag({{"--gpus"}, "N", "GPUs to use (0: every visible one)", "0"})
    .flag({{"--csv"}, "FILE", "write the rows there", ""});
  bench::parse_flags(flags, argc, argv, [&](const cli::parsed_args& a) {
    opt.max_mib = static_cast<size_t>(a.get_int("--max-mib", 1024, 1, 1 << 20));
    opt.iters = static_cast<int>(a.get_int("--iters", 20, 1, 1000000));
    opt.warmup = static_cast<int>(a.get_int("--warmup", 5, 0, 1000000));
    opt.gpus = static_cast<int>(a.get_int("--gpus", 0, 0, 1024));
    opt.csv = a.get("--csv");
  });
  const int visible = cuda_device_count();
  const int n = opt.gpus > 0 ? std::min(opt.gpus, visible) : visible;
  if (n < 2) {
    std::printf("nccl_bandwidth: skipped: needs 2 GPUs, this machine has %d\n", visible);
    return 0;
  }
  std::vector<size_t> sizes;
  for (size_t mib = 1; mib <= opt.max_mib; mib *= 2)
    sizes.push_back(mib << 20);
  int version = 0;
  ncclGetVersion(&version);
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  std::printf("nccl_bandwidth: %d x %s, NCCL %d, int64 sum, %d iterations after %d warm-up, "
              "NCCL_NVLS_ENABLE=%s\n",
              n, prop.name, version, opt.iters, opt.warmup,
              std::getenv("NCCL_NVLS_ENABLE") ? std::getenv("NCCL_NVLS_ENABLE") : "<unset>");

  rendezvous_server srv;
  if (auto err = srv.start())
    die(-1, "starting the rendezvous server", err);
  ncclUniqueId raw_id;
  if (auto err = CAFEX_CHECK(ncclGetUniqueId(&raw_id)))
    die(-1, "ncclGetUniqueId", err);
  barrier sync{n};
  // results[rank][size][op]
  std::vector<std::vector<std::vector<timing>>> results(
    n, std::vector<std::vector<timing>>(sizes.size(), std::vector<timing>(op_count)));

  auto rank_main = [&](int rank) {
    if (auto err = CAFEX_CHECK(cudaSetDevice(rank)))
      die(rank, "cudaSetDevice", err);
    auto store = rendezvous_client::connect(srv.address(), 10s);
    if (!store)
      die(rank, "connecting to the store", store.error());
    nccl_options o;
    o.group = "bench/all";
    o.rank = rank;
    o.size = n;
    o.device = rank;
    o.timeout = 120s;
    auto cafex_comm = make_nccl_collective(**store, o);
    if (!cafex_comm)
      die(rank, "make_nccl_collective", cafex_comm.error());
    auto& cx = **cafex_comm;
    ncclComm_t raw = nullptr;
    if (auto err = CAFEX_CHECK(ncclCommInitRank(&raw, n, raw_id, rank)))
      die(rank, "ncclCommInitRank", err);
    device_buffer buf;
    cuda_stream stream;
    if (auto err = buf.reserve(sizes.back()))
      die(rank, "allocating the buffer", err);
    if (auto err = CAFEX_CHECK(cudaMemset(buf.data(), 0, sizes.back())))
      die(rank, "cudaMemset", err);
    if (auto err = stream.create())
      die(rank, "creating the stream", err);
    std::vector<cuda_event> start(opt.iters), stop(opt.iters);
    for (int i = 0; i < opt.iters; ++i)
      if (auto err = start[i].create(); err || (err = stop[i].create()))
        die(rank, "creating events", err);
    auto s = stream.get();

    // Enqueues one operation of kind `op`; p2p runs rank 0 -> rank 1 only.
    auto enqueue = [&](op_kind op, size_t bytes) -> caf::error {
      const size_t count = bytes / sizeof(int64_t);
      switch (op) {
        case raw_allreduce:
          return CAFEX_CHECK(
            ncclAllReduce(buf.data(), buf.data(), count, ncclInt64, ncclSum, raw, s));
        case cafex_allreduce: return cx.enqueue_all_reduce_sum(buf.as<int64_t>(), count, s);
        case raw_p2p:
          if (rank == 0)
            return CAFEX_CHECK(ncclSend(buf.data(), bytes, ncclUint8, 1, raw, s));
          return CAFEX_CHECK(ncclRecv(buf.data(), bytes, ncclUint8, 0, raw, s));
        case cafex_p2p:
          if (rank == 0)
            return cx.enqueue_send(buf.data(), bytes, 1, s);
          return cx.enqueue_recv(buf.data(), bytes, 0, s);
        default: return caf::none;
      }
    };
    // Raw NCCL waits like cafex does (polled, bounded) so neither side blocks forever.
    auto finish = [&](op_kind op) -> caf::error {
      if (op == cafex_allreduce || op == cafex_p2p)
        return cx.wait(s);
      return wait_stream(s, 120s, "raw NCCL");
    };

    for (size_t si = 0; si < sizes.size(); ++si) {
      const size_t bytes = sizes[si];
      for (int op = 0; op < op_count; ++op) {
        const auto kind = static_cast<op_kind>(op);
        const bool p2p = kind == raw_p2p || kind == cafex_p2p;
        sync.arrive_and_wait();
        if (p2p && rank > 1)
          continue;
        for (int i = 0; i < opt.warmup; ++i) {
          if (auto err = enqueue(kind, bytes))
            die(rank, op_names[op], err);
          if (auto err = finish(kind))
            die(rank, op_names[op], err);
        }
        auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < opt.iters; ++i) {
          if (auto err = CAFEX_CHECK(cudaEventRecord(start[i].get(), s)))
            die(rank, "cudaEventRecord", err);
          if (auto err = enqueue(kind, bytes))
            die(rank, op_names[op], err);
          if (auto err = CAFEX_CHECK(cudaEventRecord(stop[i].get(), s)))
            die(rank, "cudaEventRecord", err);
        }
        if (auto err = finish(kind))
          die(rank, op_names[op], err);
        auto wall = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now()
                                                              - t0)
                      .count();
        std::vector<double> us(opt.iters);
        for (int i = 0; i < opt.iters; ++i) {
          float ms = 0.0f;
          if (auto err = CAFEX_CHECK(cudaEventElapsedTime(&ms, start[i].get(), stop[i].get())))
            die(rank, "cudaEventElapsedTime", err);
          us[i] = ms * 1000.0;
        }
        results[rank][si][op] = timing{median(us), wall / opt.iters};
      }
    }
    sync.arrive_and_wait();
    ncclCommDestroy(raw);
  };
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r)
    threads.emplace_back(rank_main, r);
  for (auto& t : threads)
    t.join();

  // The slowest rank's median is the operation's time (all ranks finish together).
  auto time_of = [&](size_t si, int op) {
    timing t;
    const int ranks = op >= raw_p2p ? 2 : n;
    for (int r = 0; r < ranks; ++r) {
      t.median_us = std::max(t.median_us, results[r][si][op].median_us);
      t.wall_us = std::max(t.wall_us, results[r][si][op].wall_us);
    }
    return t;
  };
  const double ar_factor = 2.0 * (n - 1) / n;
  auto busbw = [&](size_t bytes, int op, double us) {
    const double algbw = static_cast<double>(bytes) / (us * 1e-6) / 1e9; // GB/s
    return op <= cafex_allreduce ? algbw * ar_factor : algbw;
  };
  std::printf("\n%10s | %-33s | %-33s | %-33s\n", "", "all-reduce busbw GB/s (median us)",
              "send/recv busbw GB/s (median us)", "wall us/op: AR raw, cafex; p2p raw, cafex");
  std::printf("%10s | %10s %10s %9s | %10s %10s %9s |\n", "size", "raw", "cafex", "cafex/raw",
              "raw", "cafex", "cafex/raw");
  std::ofstream csv;
  if (!opt.csv.empty()) {
    csv.open(opt.csv);
    csv << "gpus,bytes,op,median_us,busbw_gbs,wall_us\n";
  }
  double ratio_256 = 0.0, p2p_ratio_256 = 0.0;
  for (size_t si = 0; si < sizes.size(); ++si) {
    const size_t bytes = sizes[si];
    timing t[op_count];
    double bw[op_count];
    for (int op = 0; op < op_count; ++op) {
      t[op] = time_of(si, op);
      bw[op] = busbw(bytes, op, t[op].median_us);
      if (csv)
        csv << n << ',' << bytes << ',' << op_names[op] << ',' << t[op].median_us << ','
            << bw[op] << ',' << t[op].wall_us << '\n';
    }
    const double ar_ratio = bw[cafex_allreduce] / bw[raw_allreduce];
    const double p2p_ratio = bw[cafex_p2p] / bw[raw_p2p];
    if (bytes == (size_t{256} << 20)) {
      ratio_256 = ar_ratio;
      p2p_ratio_256 = p2p_ratio;
    }
    std::printf("%6zu MiB | %10.1f %10.1f %8.1f%% | %10.1f %10.1f %8.1f%% | %8.0f %8.0f; "
                "%8.0f %8.0f\n",
                bytes >> 20, bw[raw_allreduce], bw[cafex_allreduce], 100.0 * ar_ratio,
                bw[raw_p2p], bw[cafex_p2p], 100.0 * p2p_ratio, t[raw_allreduce].wall_us,
                t[cafex_allreduce].wall_us, t[raw_p2p].wall_us, t[cafex_p2p].wall_us);
  }
  if (ratio_256 > 0.0)
    std::printf("\n256 MiB: cafex all-reduce at %.1f%% of raw NCCL bus bandwidth, send/recv "
                "at %.1f%% (goal: >= 95%%)\n",
                100.0 * ratio_256, 100.0 * p2p_ratio_256);
  return 0;
}
