#include "transport/local_token.hpp"

#include <cerrno>
#include <cstdlib>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/error.hpp"
#include "runtime/os/errno_text.hpp"
#include "transport/link_security.hpp"

namespace cafex {

namespace {

caf::expected<std::string> runtime_dir() {
  const char* xdg = std::getenv("XDG_RUNTIME_DIR"); // NOLINT(concurrency-mt-unsafe)
  std::string dir = xdg != nullptr && *xdg == '/' ? std::string(xdg) + "/cafex"
                                                  : "/tmp/cafex-" + std::to_string(::getuid());
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    return make_error(errc::unauthorized,
                      "cannot create " + dir + " for the node token: " + errno_text(errno));
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0)
    return make_error(errc::unauthorized, "cannot inspect " + dir + ": " + errno_text(errno));
  if (!S_ISDIR(st.st_mode) || st.st_uid != ::getuid() || (st.st_mode & 077) != 0)
    return make_error(errc::unauthorized,
                      dir
                        + " is not a directory private to this user (mode 0700, owned "
                          "by uid "
                        + std::to_string(::getuid())
                        + "), so no token is kept there; remove it, or give the agent and "
                          "the drivers --token-file");
  return dir;
}

} // namespace

bool is_loopback_host(const std::string& host) {
  return host.rfind("127.", 0) == 0 || host == "localhost";
}

caf::expected<std::string> local_token_path(uint16_t port) {
  auto dir = runtime_dir();
  if (!dir)
    return dir.error();
  return *dir + "/node-" + std::to_string(port) + ".token";
}

caf::expected<std::string> write_local_token(uint16_t port, const std::string& token) {
  auto path = local_token_path(port);
  if (!path)
    return path.error();
  auto tmp = *path + ".tmp" + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0)
    return make_error(errc::unauthorized, "cannot write " + tmp + ": " + errno_text(errno));
  auto line = token + "\n";
  bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  ok = ::close(fd) == 0 && ok;
  if (!ok || ::rename(tmp.c_str(), path->c_str()) != 0) {
    ::unlink(tmp.c_str());
    return make_error(errc::unauthorized, "cannot write " + *path + ": " + errno_text(errno));
  }
  return *path;
}

caf::expected<std::string> read_local_token(uint16_t port) {
  auto path = local_token_path(port);
  if (!path)
    return path.error();
  if (::access(path->c_str(), R_OK) != 0)
    return make_error(errc::unauthorized,
                      "the node agent on port " + std::to_string(port)
                        + " requires a cluster token, and this host has none for it (" + *path
                        + " is missing): pass the agent's --token-file, or start the agent "
                          "on this host without --token-file");
  auto tok = read_token_file(*path);
  if (!tok)
    return make_error(errc::unauthorized, describe(tok.error()));
  return tok;
}

void remove_local_token(uint16_t port) {
  auto path = local_token_path(port);
  if (path)
    ::unlink(path->c_str());
}

} // namespace cafex
