// init_device: bind the worker to its device and open its communicators (the TP group
// through the rendezvous store at distributed_init_method).
#pragma once

#include <caf/error.hpp>

#include "actors/worker_methods.hpp"

namespace cafex {

caf::error open_device(worker_state& st);

} // namespace cafex
