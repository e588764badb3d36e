#include "actors/worker_device.hpp"

#include <cblas.h>

#include "runtime/error.hpp"
#include "transport/gloo_collective.hpp"
#include "transport/rendezvous_store.hpp"

namespace cafex {

caf::error open_device(worker_state& st) {
  if (st.device == "cuda")
    return make_error(errc::invalid_argument,
                      "rank " + std::to_string(st.rank)
                        + ": this build has no CUDA device support; use --device cpu");
  if (st.device != "cpu")
    return make_error(errc::invalid_argument, "unknown device '" + st.device
                                                + "'; use cpu or cuda");
  // One BLAS thread per worker: several workers share this node's cores.
  openblas_set_num_threads(1);
  if (st.tp_size == 1) {
    st.tp_group = std::make_unique<solo_collective>();
    return caf::none;
  }
  auto addr = parse_store_url(st.distributed_init_method);
  if (!addr)
    return addr.error();
  gloo_options opts;
  opts.store = *addr;
  opts.group = "tp" + std::to_string(st.pp_rank());
  opts.rank = st.tp_rank();
  opts.size = st.tp_size;
  opts.bind_host = st.node_ip;
  opts.timeout = std::chrono::milliseconds(st.init_timeout_ms);
  auto group = make_gloo_collective(opts);
  if (!group)
    return group.error();
  st.tp_group = std::move(*group);
  return caf::none;
}

} // namespace cafex
