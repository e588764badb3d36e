#include "runtime/os/process_state.hpp"

#include <dirent.h>
#include <fstream>
#include <string>
#include <thread>

namespace cafex {

bool all_threads_stopped(pid_t pid) {
  const std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr)
    return false;
  bool all = true;
  int seen = 0;
  while (auto* e = ::readdir(d)) {
    if (e->d_name[0] == '.')
      continue;
    std::ifstream stat(dir + "/" + e->d_name + "/stat");
    std::string line;
    if (!std::getline(stat, line))
      continue; // the thread ended meanwhile
    // "tid (comm) state ...": comm may hold spaces and parentheses, the state follows the
    // last ')'.
    auto rp = line.rfind(')');
    ++seen;
    all = all && rp != std::string::npos && rp + 2 < line.size() && line[rp + 2] == 'T';
  }
  ::closedir(d);
  return seen > 0 && all;
}

bool wait_stopped(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (all_threads_stopped(pid))
      return true;
    if (std::chrono::steady_clock::now() >= deadline)
      return false;
    std::this_thread::sleep_for(std::chrono::milliseconds{1}); // polling /proc
  }
}

} // namespace cafex
