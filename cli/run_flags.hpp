// The cluster and model flags `cafex run` shares with other programs that start an
// executor (the example host service, benchmarks).
#pragma once

#include "cafex/executor.hpp"
#include "cli/args.hpp"

namespace cafex::cli {

/// A parser with every executor flag plus --steps, --batch and --json.
arg_parser run_parser();

/// Adds every executor flag (cluster, model, timeouts; what executor_options_from reads)
/// to `p`, for programs with their own parser (cafex-serve). Returns `p`.
arg_parser& add_executor_flags(arg_parser& p);

/// Options from parsed flags; throws usage_error with what to fix.
executor_options executor_options_from(const parsed_args& args);

/// The cluster part of those flags (--nodes, --cluster-config, credentials, timeouts),
/// for commands that reach node agents without starting an executor (cafex status).
void cluster_flags_from(const parsed_args& args, cluster_options& into);

} // namespace cafex::cli
