#include "processes.hpp"

#include "runtime/os/process_state.hpp"

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <fstream>
#include <iterator>
#include <set>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sstream>
#include <stdexcept>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace cafex::test {

namespace {

std::vector<char*> c_argv(const std::vector<std::string>& argv) {
  std::vector<char*> out;
  for (auto& a : argv)
    out.push_back(const_cast<char*>(a.c_str()));
  out.push_back(nullptr);
  return out;
}

} // namespace

command_result run_command(const std::vector<std::string>& argv,
                           std::chrono::milliseconds timeout) {
  command_result res;
  int out_pipe[2], err_pipe[2];
  if (pipe(out_pipe) != 0 || pipe(err_pipe) != 0)
    throw std::runtime_error("pipe failed");
  auto args = c_argv(argv);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out_pipe[1], 1);
    dup2(err_pipe[1], 2);
    close(out_pipe[0]);
    close(err_pipe[0]);
    execv(args[0], args.data());
    _exit(127);
  }
  close(out_pipe[1]);
  close(err_pipe[1]);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  int open_fds = 2;
  char buf[4096];
  while (open_fds > 0) {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now())
                .count();
    if (ms <= 0) {
      res.timed_out = true;
      kill(pid, SIGKILL);
      break;
    }
    if (poll(fds, 2, static_cast<int>(ms)) <= 0)
      continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP)))
        continue;
      auto n = read(fds[i].fd, buf, sizeof(buf));
      if (n <= 0) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      } else {
        (i == 0 ? res.out : res.err).append(buf, static_cast<size_t>(n));
      }
    }
  }
  for (auto& f : fds)
    if (f.fd >= 0)
      close(f.fd);
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFEXITED(status) && !res.timed_out)
    res.exit_code = WEXITSTATUS(status);
  return res;
}

pid_t start_background(const std::vector<std::string>& argv, const std::string& out_file,
                       const std::string& err_file) {
  auto args = c_argv(argv);
  pid_t pid = fork();
  if (pid == 0) {
    int fd = open(out_file.empty() ? "/dev/null" : out_file.c_str(),
                  O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    if (!err_file.empty()) {
      int efd = open(err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(efd, 2);
    }
    execv(args[0], args.data());
    _exit(127);
  }
  return pid;
}

static std::vector<pid_t> all_pids() {
  std::vector<pid_t> out;
  DIR* d = opendir("/proc");
  if (!d)
    return out;
  while (auto* e = readdir(d)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (*end == '\0' && pid > 0)
      out.push_back(static_cast<pid_t>(pid));
  }
  closedir(d);
  return out;
}

pid_t worker_pid(int rank) {
  const std::string flag = std::string("--rank") + '\0' + std::to_string(rank) + '\0';
  for (auto pid : children_of(getpid())) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline");
    std::string cmd((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (cmd.find(flag) != std::string::npos)
      return pid;
  }
  return -1;
}

bool wait_stopped(pid_t pid, std::chrono::milliseconds timeout) {
  return cafex::wait_stopped(pid, timeout);
}

std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> out;
  for (auto pid : all_pids()) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(stat, line))
      continue;
    // Fields after the command (which may hold spaces) start after the last ')'.
    auto rp = line.rfind(')');
    if (rp == std::string::npos)
      continue;
    std::istringstream rest(line.substr(rp + 2));
    char state;
    pid_t ppid;
    rest >> state >> ppid;
    if (ppid == parent && state != 'Z')
      out.push_back(pid);
  }
  return out;
}

std::vector<pid_t> processes_matching(const std::string& needle) {
  std::vector<pid_t> out;
  for (auto pid : all_pids()) {
    if (pid == getpid())
      continue;
    std::ifstream cmd("/proc/" + std::to_string(pid) + "/cmdline");
    std::string s((std::istreambuf_iterator<char>(cmd)), std::istreambuf_iterator<char>());
    for (auto& c : s)
      if (c == '\0')
        c = ' ';
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(stat, line);
    auto rp = line.rfind(')');
    bool zombie = rp != std::string::npos && rp + 2 < line.size() && line[rp + 2] == 'Z';
    if (!zombie && s.find(needle) != std::string::npos)
      out.push_back(pid);
  }
  return out;
}

std::vector<uint16_t> listening_ports(pid_t pid) {
  std::set<std::string> inodes;
  auto fd_dir = "/proc/" + std::to_string(pid) + "/fd";
  if (DIR* d = opendir(fd_dir.c_str())) {
    while (dirent* e = readdir(d)) {
      char target[256];
      auto n = readlink((fd_dir + "/" + e->d_name).c_str(), target, sizeof(target) - 1);
      if (n <= 0)
        continue;
      std::string t(target, static_cast<size_t>(n));
      if (t.rfind("socket:[", 0) == 0)
        inodes.insert(t.substr(8, t.size() - 9));
    }
    closedir(d);
  }
  std::vector<uint16_t> out;
  for (const char* table : {"/net/tcp", "/net/tcp6"}) {
    std::ifstream in("/proc/" + std::to_string(pid) + table);
    std::string line;
    std::getline(in, line); // header
    while (std::getline(in, line)) {
      std::istringstream f(line);
      std::string sl, local, remote, state, queues, timer, retr, uid, timeout, inode;
      f >> sl >> local >> remote >> state >> queues >> timer >> retr >> uid >> timeout
        >> inode;
      if (state != "0A" || inodes.count(inode) == 0) // 0A: LISTEN
        continue;
      auto colon = local.rfind(':');
      out.push_back(static_cast<uint16_t>(std::stoul(local.substr(colon + 1), nullptr, 16)));
    }
  }
  return out;
}

bool port_speaks_first(uint16_t port, std::chrono::milliseconds within) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    if (fd >= 0)
      ::close(fd);
    return false;
  }
  bool spoke = wait_until(
    [&] {
      pollfd p{fd, POLLIN, 0};
      char c;
      return ::poll(&p, 1, 20) > 0 && ::recv(fd, &c, 1, MSG_DONTWAIT | MSG_PEEK) > 0;
    },
    within);
  ::close(fd);
  return spoke;
}

int open_fds(pid_t pid) {
  auto fd_dir = "/proc/" + std::to_string(pid) + "/fd";
  DIR* d = opendir(fd_dir.c_str());
  if (d == nullptr)
    return -1;
  int n = 0;
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.')
      ++n;
  closedir(d);
  return n;
}

long status_kib(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field + ":", 0) == 0)
      return std::stol(line.substr(field.size() + 1));
  return -1;
}

long rss_kib(pid_t pid) {
  return status_kib(pid, "VmRSS");
}

long cpu_ticks(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line))
    return -1;
  auto rp = line.rfind(')');
  std::istringstream rest(line.substr(rp + 2));
  std::string field;
  long utime = 0, stime = 0;
  // Fields 3.. after the command: state is field 3, utime 14, stime 15.
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14)
      utime = std::stol(field);
    if (i == 15)
      stime = std::stol(field);
  }
  return utime + stime;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

bool wait_until(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond())
      return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return cond();
}

void become_subreaper() {
  prctl(PR_SET_CHILD_SUBREAPER, 1);
}

void reap_zombies() {
  while (waitpid(-1, nullptr, WNOHANG) > 0) {
  }
}

std::string binary_from_env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0')
    throw std::runtime_error(std::string(name) + " is not set; run the tests through ctest");
  return v;
}

} // namespace cafex::test
