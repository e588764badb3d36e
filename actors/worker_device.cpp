#include "actors/worker_device.hpp"

#include <cstdlib>
#include <unistd.h>
#include <vector>

#include <cblas.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "runtime/error.hpp"
#include "transport/gloo_collective.hpp"
#include "transport/rendezvous_client.hpp"
#include "transport/rendezvous_store.hpp"
#include "transport/shm_collective.hpp"
#include "transport/tcp_collective.hpp"

#ifdef CAFEX_HAVE_CUDA
#include "runtime/models/cuda/cuda_check.hpp"
#include "runtime/models/cuda/cuda_memory.hpp"
#include "transport/nccl_collective.hpp"
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

/// Whether every rank of the TP group `group` runs on this rank's node: each rank
/// publishes its node id on the rendezvous store and reads its peers', so all of them
/// come to the same answer.
caf::expected<bool> group_on_one_node(rendezvous_client& store, const std::string& group,
                                      const worker_state& st,
                                      std::chrono::milliseconds timeout) {
  auto key = [&](int r) { return group + "/node/" + std::to_string(r); };
  std::vector<char> mine(st.node_id.begin(), st.node_id.end());
  if (auto err = store.set(key(st.tp_rank()), mine, timeout))
    return err;
  for (int r = 0; r < st.tp_size; ++r) {
    auto theirs = store.get(key(r), timeout);
    if (!theirs)
      return theirs.error();
    if (*theirs != mine)
      return false;
  }
  return true;
}

/// The group over one shared-memory segment: rank 0 creates it and publishes its name,
/// the others map it, rank 0 removes the name once all of them have.
caf::expected<std::unique_ptr<collective>> open_shm(worker_state& st, rendezvous_client& store,
                                                    const std::string& group,
                                                    std::chrono::milliseconds timeout) {
  shm_collective_options o;
  o.rank = st.tp_rank();
  o.size = st.tp_size;
  o.timeout = timeout;
  const auto key = group + "/shm";
  if (o.rank == 0) {
    o.name = shm_collective_name(static_cast<int>(getpid()), group);
    auto g = shm_collective::create(o);
    if (!g)
      return g.error();
    if (auto err = store.set(key, std::vector<char>(o.name.begin(), o.name.end()), timeout))
      return err;
    // Each peer says on the store that it mapped the segment: a store wait ends at once
    // when a later generation fences this rendezvous (a peer died during a recovery's
    // rebuild), where waiting on the segment itself would hold this rank to `timeout`.
    std::vector<std::string> mapped;
    for (int r = 1; r < o.size; ++r)
      mapped.push_back(key + "/mapped/" + std::to_string(r));
    if (auto err = store.wait(mapped, timeout))
      return err;
    if (auto err = (*g)->wait_mapped())
      return err;
    return std::unique_ptr<collective>(std::move(*g));
  }
  auto name = store.get(key, timeout);
  if (!name)
    return name.error();
  o.name.assign(name->begin(), name->end());
  auto g = shm_collective::open(o);
  if (!g)
    return g.error();
  if (auto err = store.set(key + "/mapped/" + std::to_string(o.rank), {'1'}, timeout))
    return err;
  return std::unique_ptr<collective>(std::move(*g));
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
  const auto timeout = std::chrono::milliseconds(st.init_timeout_ms);
  const auto group = group_name("tp", st);
  if (st.tp_transport != "gloo") {
    rendezvous_client_options co;
    co.generation = static_cast<uint32_t>(st.comm_generation);
    auto store = rendezvous_client::connect(*addr, timeout, co);
    if (!store)
      return store.error();
    bool shm = st.tp_transport == "shm";
    if (st.tp_transport == "auto") {
      auto one_node = group_on_one_node(**store, group, st, timeout);
      if (!one_node)
        return one_node.error();
      shm = *one_node && st.tp_size <= shm_collective::max_ranks;
    }
    if (shm) {
      auto g = open_shm(st, **store, group, timeout);
      if (!g)
        return g.error();
      spdlog::info("rank {}: TP group {} over shared memory ({})", st.rank, group,
                   st.tp_transport == "shm" ? "--tp-transport shm"
                                            : "every rank on this node");
      st.tp_group->rebind(std::move(*g));
      return caf::none;
    }
    tcp_collective_options opts;
    opts.group = group;
    opts.rank = st.tp_rank();
    opts.size = st.tp_size;
    opts.bind_host = st.node_ip;
    opts.timeout = timeout;
    auto g = make_tcp_collective(**store, opts);
    if (!g)
      return g.error();
    spdlog::info("rank {}: TP group {} over the TCP mesh ({})", st.rank, group,
                 st.tp_transport == "tcp" ? "--tp-transport tcp" : "ranks on several nodes");
    st.tp_group->rebind(std::move(*g));
    return caf::none;
  }
  gloo_options opts;
  opts.store = *addr;
  opts.group = group;
  opts.rank = st.tp_rank();
  opts.size = st.tp_size;
  opts.bind_host = st.node_ip;
  opts.timeout = timeout;
  // A later rebuild (a recovery that started again) fences this rendezvous off.
  opts.generation = static_cast<uint32_t>(st.comm_generation);
  auto g = make_gloo_collective(opts);
  if (!g)
    return g.error();
  spdlog::info("rank {}: TP group {} over Gloo (--tp-transport gloo)", st.rank, group);
  st.tp_group->rebind(std::move(*g));
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
  if (st.local_rank < 0 || count <= 0)
    return make_error(errc::invalid_argument,
                      fmt::format("{}: local rank {} but this process sees {} GPU(s) "
                                  "(CUDA_VISIBLE_DEVICES={}): give each node's workers the "
                                  "node's full GPU list and one local rank per GPU",
                                  who, st.local_rank, count, cvd ? cvd : "<unset>"));
  // More local ranks than GPUs: the workers share GPUs (--gpus-per-worker below 1), so
  // the ranks take the visible GPUs in turn.
  const int device = st.local_rank % count;
  if (device != st.local_rank)
    spdlog::info("{}: {} GPU(s) visible for more workers: sharing GPU {}", who, count, device);
  if (auto err = CAFEX_CHECK(cudaSetDevice(device)))
    return with_context(fmt::format("{}: selecting GPU {}", who, device), err);
  st.cuda_device = device;
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
