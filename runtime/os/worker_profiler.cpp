#include "runtime/os/worker_profiler.hpp"

#include <unistd.h>

#include <sys/stat.h>

#include "runtime/error.hpp"

namespace cafex {

caf::expected<worker_profiler> parse_worker_profiler(const std::string& text) {
  if (text.empty() || text == "none")
    return worker_profiler::none;
  if (text == "nsys")
    return worker_profiler::nsys;
  return make_error(errc::invalid_argument,
                    "--worker-profiler must be none or nsys, got '" + text + "'");
}

const char* to_string(worker_profiler p) {
  switch (p) {
    case worker_profiler::none: return "none";
    case worker_profiler::nsys: return "nsys";
  }
  return "unknown";
}

std::string profiler_program(worker_profiler p) {
  return p == worker_profiler::nsys ? "nsys" : "";
}

caf::expected<std::vector<std::string>> wrap_worker_argv(worker_profiler p,
                                                         const std::vector<std::string>& argv,
                                                         const std::string& nsys_path) {
  if (argv.empty())
    return make_error(errc::invalid_argument, "wrap_worker_argv: the worker command is empty");
  if (p == worker_profiler::none)
    return argv;
  if (nsys_path.empty())
    return make_error(errc::invalid_argument,
                      "--worker-profiler nsys: nsys (Nsight Systems) is not on this node's "
                      "PATH: install Nsight Systems there, put its bin directory on PATH, "
                      "or drop --worker-profiler");
  // The options Ray's nsight plugin passes for vLLM's ray_workers_use_nsight.
  std::vector<std::string> out{nsys_path,
                               "profile",
                               "-t",
                               "cuda,cudnn,cublas",
                               "-o",
                               "worker_process_%p",
                               "--cuda-graph-trace=node"};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

std::string find_executable(const std::string& name, const std::string& path_list) {
  auto runnable = [](const std::string& path) {
    struct stat sb;
    return stat(path.c_str(), &sb) == 0 && S_ISREG(sb.st_mode)
           && access(path.c_str(), X_OK) == 0;
  };
  if (name.empty())
    return {};
  if (name.find('/') != std::string::npos)
    return runnable(name) ? name : std::string{};
  size_t start = 0;
  for (;;) {
    auto end = path_list.find(':', start);
    auto dir = path_list.substr(start,
                                end == std::string::npos ? std::string::npos : end - start);
    if (dir.empty())
      dir = "."; // POSIX: an empty PATH entry means the current directory
    auto candidate = dir + "/" + name;
    if (runnable(candidate))
      return candidate;
    if (end == std::string::npos)
      return {};
    start = end + 1;
  }
}

} // namespace cafex
