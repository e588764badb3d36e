// The worker process: `cafex worker ...`, or a host program's own worker executable that
// registers extra methods and calls worker_main.
#pragma once

#include "actors/worker_methods.hpp"

namespace cafex {

/// Runs a worker process: connects to the node agent named on the command line,
/// registers, serves until the agent or driver goes away. Returns the exit code.
/// `argv[first]` is the first flag after the subcommand.
int worker_main(int argc, char** argv, int first, const method_table& extra = {});

} // namespace cafex
