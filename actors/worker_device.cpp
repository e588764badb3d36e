#include "actors/worker_device.hpp"

#include <cstdlib>

#include <cblas.h>
#include <fmt/format.h>

#include "runtime/error.hpp"
#include "transport/gloo_collective.hpp"
#include "transport/rendezvous_store.hpp"

#ifdef CAFEX_HAVE_CUDA
#include "runtime/models/cuda/cuda_check.hpp"
#include "runtime/models/cuda/cuda_memory.hpp"
#include "transport/nccl_collective.hpp"
#include "transport/rendezvous_client.hpp"
#endif

namespace cafex {

namespace {

/// "tp0" for stage 0's group at start, "tp0/g2" after the second rebuild.
std::string group_name(const char* kind, const worker_state& st) {
  auto name = kind + std::to_string(st.pp_rank());
  if (st.comm_generation > 0)
    name += "/g" + std::to_string(st.comm_generation);
  return name;
}

caf::error open_cpu(worker_state& st) {
  // One BLAS thread per worker: several workers share this node's cores.
  openblas_set_num_threads(1);
  if (st.tp_size == 1) {
    st.tp_group->rebind(std::make_unique<solo_collective>());
    return caf::none;
  }
  auto addr = parse_store_url(st.distributed_init_method);
  if (!addr)
    return addr.error();
  gloo_options opts;
  opts.store = *addr;
  opts.group = group_name("tp", st);
  opts.rank = st.tp_rank();
  opts.size = st.tp_size;
  opts.bind_host = st.node_ip;
  opts.timeout = std::chrono::milliseconds(st.init_timeout_ms);
  // A later rebuild (a recovery that started again) fences this rendezvous off.
  opts.generation = static_cast<uint32_t>(st.comm_generation);
  auto group = make_gloo_collective(opts);
  if (!group)
    return group.error();
  st.tp_group->rebind(std::move(*group));
  return caf::none;
}

#ifdef CAFEX_HAVE_CUDA
caf::error open_cuda(worker_state& st) {
  const char* cvd = std::getenv("CUDA_VISIBLE_DEVICES"); // for the message only
  auto who = fmt::format("rank {} (local rank {}) on node {}", st.rank, st.local_rank,
                         st.node_id);
  // The first CUDA call of the process: CUDA_VISIBLE_DEVICES is read now.
  int count = 0;
  if (auto err = CAFEX_CHECK(cudaGetDeviceCount(&count)))
    return with_context(fmt::format("{}: no usable CUDA device (CUDA_VISIBLE_DEVICES={})", who,
                                    cvd ? cvd : "<unset>"),
                        err);
  if (st.local_rank < 0 || st.local_rank >= count)
    return make_error(errc::invalid_argument,
                      fmt::format("{}: local rank {} but this process sees {} GPU(s) "
                                  "(CUDA_VISIBLE_DEVICES={}): give each node's workers the "
                                  "node's full GPU list and one local rank per GPU",
                                  who, st.local_rank, count, cvd ? cvd : "<unset>"));
  if (auto err = CAFEX_CHECK(cudaSetDevice(st.local_rank)))
    return with_context(fmt::format("{}: selecting GPU {}", who, st.local_rank), err);
  st.cuda_device = st.local_rank;
  if (st.tp_size == 1) {
    st.tp_group->rebind(std::make_unique<solo_collective>());
    return caf::none;
  }
  auto addr = parse_store_url(st.distributed_init_method);
  if (!addr)
    return addr.error();
  const auto timeout = std::chrono::milliseconds(st.init_timeout_ms);
  // The store is needed only while the communicator forms; a later rebuild (a recovery
  // that started again) fences this rendezvous off.
  rendezvous_client_options co;
  co.generation = static_cast<uint32_t>(st.comm_generation);
  auto store = rendezvous_client::connect(*addr, timeout, co);
  if (!store)
    return with_context(fmt::format("{}: reaching the rendezvous store at {}", who,
                                    addr->to_string()),
                        store.error());
  nccl_options opts;
  opts.group = group_name("nccl/tp", st);
  opts.rank = st.tp_rank();
  opts.size = st.tp_size;
  opts.device = st.cuda_device;
  opts.timeout = timeout;
  auto group = make_nccl_collective(**store, opts);
  if (!group)
    return with_context(who, group.error());
  st.tp_group->rebind(std::move(*group));
  return caf::none;
}
#endif

} // namespace

caf::error open_device(worker_state& st) {
  if (st.device == "cpu")
    return open_cpu(st);
  if (st.device == "cuda") {
#ifdef CAFEX_HAVE_CUDA
    return open_cuda(st);
#else
    return make_error(errc::invalid_argument,
                      "rank " + std::to_string(st.rank)
                        + ": this build has no CUDA device support; use --device cpu");
#endif
  }
  return make_error(errc::invalid_argument,
                    "unknown device '" + st.device + "'; use cpu or cuda");
}

caf::error bind_device(const worker_state& st) {
#ifdef CAFEX_HAVE_CUDA
  if (st.device == "cuda" && st.cuda_device >= 0)
    if (auto err = CAFEX_CHECK(cudaSetDevice(st.cuda_device)))
      return with_context("rank " + std::to_string(st.rank), err);
#endif
  return caf::none;
}

} // namespace cafex
