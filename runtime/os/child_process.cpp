#include "runtime/os/child_process.hpp"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include "runtime/error.hpp"
#include "runtime/os/errno_text.hpp"

extern char** environ;

namespace cafex {

std::string self_executable() {
  char buf[4096];
  auto n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0)
    return "cafex";
  buf[n] = '\0';
  return buf;
}

std::string exit_status::describe() const {
  if (!signaled)
    return "exit code " + std::to_string(code);
  // sigdescr_np: strsignal's text without its shared buffer (MT-safe, glibc 2.32).
  const char* text = sigdescr_np(code);
  return "signal " + std::to_string(code) + " (" + (text ? text : "unknown signal") + ")";
}

child_process::child_process(child_process&& other) noexcept
  : pid_(other.pid_), status_(other.status_) {
  other.pid_ = -1;
}

child_process& child_process::operator=(child_process&& other) noexcept {
  if (this != &other) {
    if (running())
      terminate();
    pid_ = other.pid_;
    status_ = other.status_;
    other.pid_ = -1;
  }
  return *this;
}

child_process::~child_process() {
  if (running())
    terminate();
}

caf::expected<child_process>
child_process::spawn(const std::vector<std::string>& argv,
                     const std::map<std::string, std::string>& extra_env,
                     const std::vector<int>& inherit) {
  if (argv.empty())
    return make_error(errc::invalid_argument, "cannot spawn a process without a program");
  // Everything the child touches is built before fork: only async-signal-safe calls
  // may run between fork and exec in a multi-threaded parent.
  std::vector<std::string> env_store;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv = *e;
    auto name = kv.substr(0, kv.find('='));
    if (extra_env.count(name) == 0)
      env_store.push_back(std::move(kv));
  }
  for (const auto& [k, v] : extra_env)
    env_store.push_back(k + "=" + v);
  std::vector<char*> cargv;
  cargv.reserve(argv.size() + 1);
  for (const auto& a : argv)
    cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  std::vector<char*> cenv;
  cenv.reserve(env_store.size() + 1);
  for (const auto& e : env_store)
    cenv.push_back(const_cast<char*>(e.c_str()));
  cenv.push_back(nullptr);
  std::vector<int> high(inherit.size(), -1);
  // A pipe with O_CLOEXEC tells the parent whether exec succeeded.
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0)
    return make_error(errc::spawn_failed, std::string("pipe2 failed: ") + errno_text(errno));
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    int err = errno;
    close(fds[0]);
    close(fds[1]);
    return make_error(errc::spawn_failed, std::string("fork failed: ") + errno_text(err));
  }
  if (pid == 0) {
    close(fds[0]);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
      _exit(127);
    // Unblock every signal: CAF or the host may have masked some in this thread.
    sigset_t none;
    sigemptyset(&none);
    // The forked child has one thread, and sigprocmask is async-signal-safe.
    sigprocmask(SIG_SETMASK, &none, nullptr); // NOLINT(concurrency-mt-unsafe)
    // Inherited descriptors go to 3, 4, ...: first each one above that range (a source
    // may sit where another one goes), then into place; dup2 clears close-on-exec.
    const int n_inherit = static_cast<int>(inherit.size());
    auto fail = [&](int err) {
      ssize_t ignored = write(fds[1], &err, sizeof(err));
      (void) ignored;
      _exit(127);
    };
    if (fds[1] < 3 + n_inherit && (fds[1] = fcntl(fds[1], F_DUPFD_CLOEXEC, 3 + n_inherit)) < 0)
      _exit(127);
    for (int i = 0; i < n_inherit; ++i) {
      auto& h = high[static_cast<size_t>(i)];
      h = fcntl(inherit[static_cast<size_t>(i)], F_DUPFD_CLOEXEC, 3 + n_inherit);
      if (h < 0)
        fail(errno);
    }
    for (int i = 0; i < n_inherit; ++i)
      if (dup2(high[static_cast<size_t>(i)], 3 + i) < 0)
        fail(errno);
    // Nothing else crosses exec: not a descriptor some library opened without
    // close-on-exec (Asio's listening and accepted sockets are such), which would give
    // the child the agent's front door or a driver's connection.
    const int status_fd = 3 + n_inherit;
    if (fds[1] != status_fd) {
      if (dup3(fds[1], status_fd, O_CLOEXEC) < 0)
        _exit(127);
      fds[1] = status_fd;
    }
    if (close_range(static_cast<unsigned>(status_fd + 1), ~0U, 0) != 0) {
      rlimit lim{};
      int top = getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < 65536
                  ? static_cast<int>(lim.rlim_cur)
                  : 65536;
      for (int fd = status_fd + 1; fd < top; ++fd)
        close(fd);
    }
    execve(cargv[0], cargv.data(), cenv.data());
    int err = errno;
    ssize_t ignored = write(fds[1], &err, sizeof(err));
    (void) ignored;
    _exit(127);
  }
  close(fds[1]);
  int exec_errno = 0;
  ssize_t n;
  do {
    n = read(fds[0], &exec_errno, sizeof(exec_errno));
  } while (n < 0 && errno == EINTR);
  close(fds[0]);
  child_process child;
  child.pid_ = pid;
  if (n > 0) {
    int status = 0;
    waitpid(pid, &status, 0);
    child.pid_ = -1;
    return make_error(errc::spawn_failed, "cannot execute '" + argv[0]
                                            + "': " + errno_text(exec_errno)
                                            + "; check the worker program path");
  }
  return child;
}

std::optional<exit_status> child_process::try_wait() {
  if (status_ || pid_ <= 0)
    return status_;
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    exit_status st;
    if (WIFSIGNALED(status)) {
      st.signaled = true;
      st.code = WTERMSIG(status);
    } else {
      st.code = WEXITSTATUS(status);
    }
    status_ = st;
  } else if (r < 0 && errno == ECHILD) {
    status_ = exit_status{false, -1};
  }
  return status_;
}

void child_process::signal(int sig) {
  if (running())
    ::kill(pid_, sig);
}

exit_status child_process::terminate(std::chrono::milliseconds grace) {
  if (auto st = try_wait())
    return *st;
  ::kill(pid_, SIGTERM);
  ::kill(pid_, SIGCONT); // a stopped child must run to handle SIGTERM
  auto deadline = std::chrono::steady_clock::now() + grace;
  // Polling waitpid is the portable way to wait with a deadline for one child.
  while (std::chrono::steady_clock::now() < deadline) {
    if (auto st = try_wait())
      return *st;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ::kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  status_ = exit_status{true, SIGKILL};
  return *status_;
}

} // namespace cafex
