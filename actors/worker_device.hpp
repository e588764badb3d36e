// init_device: bind the worker to its device and open its communicators (the TP group
// through the rendezvous store at distributed_init_method): Gloo on cpu, NCCL on cuda.
#pragma once

#include <caf/error.hpp>

#include "actors/worker_methods.hpp"

namespace cafex {

/// Picks the device and opens the TP group. On cuda, as vLLM's GPU worker does: the GPU
/// is `local_rank` within this process's CUDA_VISIBLE_DEVICES (update_environment_variables
/// set the node's full list before CUDA started), and TP groups larger than one are NCCL
/// communicators created through the rendezvous store.
caf::error open_device(worker_state& st);

/// Makes the worker's GPU current on the calling thread (actor methods run on any
/// scheduler thread); nothing to do on cpu.
caf::error bind_device(const worker_state& st);

} // namespace cafex
