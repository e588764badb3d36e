// `--worker-profiler`: wrapping worker processes in a profiler, as vLLM's
// ray_workers_use_nsight does through Ray's runtime_env {"nsight": {"t":
// "cuda,cudnn,cublas", "o": "'worker_process_%p'", "cuda-graph-trace": "node"}}. Pure
// functions: the node agent finds the profiler (find_executable) and wraps the argv it
// is about to spawn.
#pragma once

#include <string>
#include <vector>

#include <caf/expected.hpp>

namespace cafex {

enum class worker_profiler {
  none, ///< workers run as they are (the default)
  nsys, ///< Nsight Systems: one report per worker process, worker_process_<pid>.nsys-rep
};

/// "none" (or empty) and "nsys"; errc::invalid_argument naming the accepted values.
caf::expected<worker_profiler> parse_worker_profiler(const std::string& text);

/// "none" / "nsys".
const char* to_string(worker_profiler p);

/// The program a profiler is started as ("nsys"); empty for none.
std::string profiler_program(worker_profiler p);

/// `argv` wrapped for `p`: unchanged for none; for nsys
///   <nsys_path> profile -t cuda,cudnn,cublas -o worker_process_%p
///     --cuda-graph-trace=node <argv...>
/// (nsys expands %p to the worker's pid; reports land in the worker's working
/// directory). `nsys_path` is where nsys was found on the node, empty when it was not:
/// then errc::invalid_argument saying to install Nsight Systems or drop the flag.
/// errc::invalid_argument for an empty argv.
caf::expected<std::vector<std::string>> wrap_worker_argv(worker_profiler p,
                                                         const std::vector<std::string>& argv,
                                                         const std::string& nsys_path);

/// The first executable `name` in the ':'-separated `path_list` (the value of PATH, given
/// by the caller); a name with a '/' is checked as it is. Empty when none is found.
std::string find_executable(const std::string& name, const std::string& path_list);

} // namespace cafex
